/**
 * Two `berth serve` processes on one data directory and one metadata store:
 * the scale-out shape (with BERTH_TEST_METADATA=postgres, two nodes on one
 * PostgreSQL database; by default two processes on one SQLite file). No node
 * may answer from state the other has changed (invariants 1 and 4).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { makeImage, RegistryClient, type Image } from '../helpers/registry-client.js';
import { makeDataDir, startServer, type TestServer } from '../helpers/server.js';

describe('two nodes sharing one metadata store', () => {
  const dataDir = makeDataDir();
  let a: TestServer;
  let b: TestServer;
  let nodeA: RegistryClient;
  let nodeB: RegistryClient;
  before(async () => {
    const env = { BERTH_GC_ENABLED: 'false' };
    a = await startServer({ dataDir, env });
    b = await startServer({ dataDir, env });
    nodeA = new RegistryClient(a.url);
    nodeB = new RegistryClient(b.url);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function assertPullable(client: RegistryClient, repo: string, ref: string, image: Image): Promise<void> {
    const res = await client.fetch(`/v2/${repo}/manifests/${ref}`, { headers: { Accept: image.mediaType } });
    assert.equal(res.status, 200, `manifest ${ref}`);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), image.manifest);
    for (const blob of [image.config, ...image.layers]) {
      const got = await client.getBlob(repo, blob.digest);
      assert.equal(got.status, 200, `blob ${blob.digest}`);
      assert.deepEqual(Buffer.from(await got.arrayBuffer()), blob.data);
    }
  }

  async function tags(client: RegistryClient, repo: string): Promise<string[]> {
    const res = await client.fetch(`/v2/${repo}/tags/list`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { tags: string[] }).tags;
  }

  it('an image pushed through one node is pulled through the other', async () => {
    const image = makeImage({ layers: 2 });
    await nodeA.pushImage('two/app', image, 'v1');
    await assertPullable(nodeB, 'two/app', 'v1', image);
  });

  it("a tag list one node has served changes as soon as the other node changes a tag", async () => {
    const repo = 'two/tags';
    await nodeA.pushImage(repo, makeImage({ layers: 1 }), 'v1');
    assert.deepEqual(await tags(nodeB, repo), ['v1']);
    assert.deepEqual(await tags(nodeB, repo), ['v1']); // served again: now from B's page cache
    await nodeA.pushImage(repo, makeImage({ layers: 1 }), 'v2');
    assert.deepEqual(await tags(nodeB, repo), ['v1', 'v2']);
    assert.equal((await nodeA.fetch(`/v2/${repo}/manifests/v1`, { method: 'DELETE' })).status, 202);
    assert.deepEqual(await tags(nodeB, repo), ['v2']);
  });

  it('after a delete on one node and GC from a third process, the other node says the layers are gone, and a re-push is real', async () => {
    const repo = 'two/gc';
    const image = makeImage({ layers: 3 });
    await nodeA.pushImage(repo, image, 'v1');
    await assertPullable(nodeB, repo, 'v1', image); // B has answered "exists" for everything
    assert.equal((await nodeB.fetch(`/v2/${repo}/manifests/${image.digest}`, { method: 'DELETE' })).status, 202);
    const gc = await berth(['gc', '--data', dataDir, '--grace', '0', '--json']);
    assert.equal(gc.code, 0, gc.stderr);
    assert.ok(JSON.parse(gc.stdout).blobsDeleted >= 4);
    for (const blob of [image.config, ...image.layers]) {
      for (const client of [nodeA, nodeB]) {
        const head = await client.fetch(`/v2/${repo}/blobs/${blob.digest}`, { method: 'HEAD' });
        assert.equal(head.status, 404, 'no node may still claim a collected blob exists');
      }
    }
    await nodeB.pushImage(repo, image, 'v1');
    await assertPullable(nodeA, repo, 'v1', image);
    assert.deepEqual(a.loggedErrors(), []);
    assert.deepEqual(b.loggedErrors(), []);
  });
});
