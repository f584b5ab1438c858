import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startServer, type TestServer } from '../helpers/server.js';
import { errorCode, makeImage, makeIndex, OCI_INDEX, randomBlob, RegistryClient } from '../helpers/registry-client.js';

describe('push and pull', () => {
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    server = await startServer();
    client = new RegistryClient(server.url);
  });
  after(() => server.stop());

  it('GET /v2/ answers 200 with the API version header', async () => {
    const res = await client.fetch('/v2/');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  });

  it('pushes an image monolithically and pulls it back by tag and digest', async () => {
    const image = makeImage({ layers: 3 });
    await client.pushImage('library/app', image, 'v1');
    for (const ref of ['v1', image.digest]) {
      const res = await client.fetch(`/v2/library/app/manifests/${ref}`, { headers: { Accept: image.mediaType } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), image.mediaType);
      assert.equal(res.headers.get('docker-content-digest'), image.digest);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), image.manifest);
    }
    for (const layer of image.layers) {
      const res = await client.getBlob('library/app', layer.digest);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), layer.data);
    }
  });

  it('pushes a blob in chunks and verifies it on PUT', async () => {
    const b = randomBlob(100_000);
    await client.pushBlobChunked('chunks', b, 30_000);
    const res = await client.getBlob('chunks', b.digest);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), b.data);
  });

  it('pushes an index whose children exist, and refuses one whose children do not', async () => {
    const a = makeImage();
    const b = makeImage();
    await client.pushImage('multi', a);
    const missing = makeIndex([a, b]);
    const refused = await client.putManifest('multi', 'latest', missing.manifest, OCI_INDEX);
    assert.equal(refused.status, 400);
    assert.equal(await errorCode(refused), 'MANIFEST_BLOB_UNKNOWN');
    await client.pushImage('multi', b);
    const index = makeIndex([a, b]);
    const res = await client.putManifest('multi', 'latest', index.manifest, OCI_INDEX);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('docker-content-digest'), index.digest);
  });
});
