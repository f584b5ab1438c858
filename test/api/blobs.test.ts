/**
 * Blobs over HTTP: GET and HEAD (with ranges), per-repository visibility,
 * cross-repository mount, DELETE (and with deletes disabled), and storage
 * of one copy per digest however many repositories hold it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { blobFiles, blobSize, assertError } from '../helpers/data-dir.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { blob, bytes, randomBlob, RegistryClient, withQuery, type Blob } from '../helpers/registry-client.js';




async function body(res: Response): Promise<Buffer> {
  return Buffer.from(await res.arrayBuffer());
}

async function assertReadable(client: RegistryClient, repo: string, b: Blob): Promise<void> {
  const res = await client.getBlob(repo, b.digest);
  assert.equal(res.status, 200, `GET ${b.digest} in ${repo}`);
  assert.deepEqual(await body(res), b.data);
}

async function headStatus(client: RegistryClient, repo: string, digest: string): Promise<number> {
  const res = await client.fetch(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
  await res.arrayBuffer();
  return res.status;
}

async function catalog(client: RegistryClient): Promise<string[]> {
  const res = await client.fetch('/v2/_catalog');
  assert.equal(res.status, 200);
  return ((await res.json()) as { repositories: string[] }).repositories;
}

function noErrorsLogged(server: TestServer): void {
  assert.deepEqual(server.loggedErrors(), [], 'the server logged errors');
}

describe('blobs', () => {
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    server = await startServer();
    client = new RegistryClient(server.url);
  });
  after(async () => {
    const s = server;
    await s.stop();
    noErrorsLogged(s);
  });

  describe('GET and HEAD', () => {
    const b = randomBlob(100);
    before(async () => {
      await client.pushBlob('blobs/read', b);
    });

    it('HEAD of an unknown blob is 404 with the Content-Length GET would send, and keeps the connection open', async () => {
      const unknown = randomBlob(10).digest;
      const get = await client.fetch(`/v2/blobs/read/blobs/${unknown}`);
      const getBody = await body(get);
      assert.equal(get.status, 404);
      // Node's client cannot find the end of a HEAD response without a length
      // and closes the connection: every missing layer would cost a reconnect.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const sockets = new Set<unknown>();
      try {
        for (let i = 0; i < 3; i++) {
          const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
            const req = http.request(`${server.url}/v2/blobs/read/blobs/${unknown}`, { method: 'HEAD', agent }, resolve);
            req.on('socket', (s) => sockets.add(s));
            req.on('error', reject).end();
          });
          res.resume();
          await new Promise((r) => res.on('end', r));
          assert.equal(res.statusCode, 404);
          assert.equal(res.headers['content-length'], String(getBody.length));
        }
        assert.equal(sockets.size, 1, 'the three HEADs shared one connection');
      } finally {
        agent.destroy();
      }
    });

    it('GET is 200 with Content-Length, Docker-Content-Digest, Content-Type and the bytes', async () => {
      const res = await client.getBlob('blobs/read', b.digest);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), '100');
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      assert.equal(res.headers.get('content-type'), 'application/octet-stream');
      assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
      assert.deepEqual(await body(res), b.data);
    });

    it('HEAD is 200 with the same headers and no body', async () => {
      const res = await client.fetch(`/v2/blobs/read/blobs/${b.digest}`, { method: 'HEAD' });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), '100');
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      assert.equal(res.headers.get('content-type'), 'application/octet-stream');
      assert.equal((await res.arrayBuffer()).byteLength, 0);
    });

    it('Range bytes=0-9 is 206 with Content-Range and the first ten bytes', async () => {
      const res = await client.fetch(`/v2/blobs/read/blobs/${b.digest}`, { headers: { Range: 'bytes=0-9' } });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-range'), 'bytes 0-9/100');
      assert.equal(res.headers.get('content-length'), '10');
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      assert.deepEqual(await body(res), b.data.subarray(0, 10));
    });

    it('Range bytes=10- is 206 with the rest of the blob', async () => {
      const res = await client.fetch(`/v2/blobs/read/blobs/${b.digest}`, { headers: { Range: 'bytes=10-' } });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-range'), 'bytes 10-99/100');
      assert.equal(res.headers.get('content-length'), '90');
      assert.deepEqual(await body(res), b.data.subarray(10));
    });

    it('Range bytes=-5 is 206 with the last five bytes', async () => {
      const res = await client.fetch(`/v2/blobs/read/blobs/${b.digest}`, { headers: { Range: 'bytes=-5' } });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-range'), 'bytes 95-99/100');
      assert.equal(res.headers.get('content-length'), '5');
      assert.deepEqual(await body(res), b.data.subarray(95));
    });

    it('a Range whose end is past the blob is clamped to it', async () => {
      const res = await client.fetch(`/v2/blobs/read/blobs/${b.digest}`, { headers: { Range: 'bytes=90-1000' } });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-range'), 'bytes 90-99/100');
      assert.deepEqual(await body(res), b.data.subarray(90));
    });

    it('a malformed or multi-range Range is ignored: 200 with the whole blob', async () => {
      for (const range of ['bytes=0-1,5-6', 'bytes=5-2', 'items=0-9', 'bytes=a-b', 'bytes=-']) {
        const res = await client.fetch(`/v2/blobs/read/blobs/${b.digest}`, { headers: { Range: range } });
        assert.equal(res.status, 200, range);
        assert.equal(res.headers.get('content-range'), null);
        assert.deepEqual(await body(res), b.data, range);
      }
    });

    it('Range bytes=<size>- is 416 with Content-Range bytes */<size>', async () => {
      for (const range of ['bytes=100-', 'bytes=150-160', 'bytes=-0']) {
        const res = await client.fetch(`/v2/blobs/read/blobs/${b.digest}`, { headers: { Range: range } });
        assert.equal(res.headers.get('content-range'), 'bytes */100', range);
        await assertError(res, 416, 'SIZE_INVALID');
      }
    });

    it('a zero-length blob is 200 with Content-Length 0, and any range of it is 416', async () => {
      const empty = blob(Buffer.alloc(0));
      await client.pushBlob('blobs/read', empty);
      const res = await client.getBlob('blobs/read', empty.digest);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), '0');
      assert.equal((await res.arrayBuffer()).byteLength, 0);
      const ranged = await client.fetch(`/v2/blobs/read/blobs/${empty.digest}`, { headers: { Range: 'bytes=0-' } });
      assert.equal(ranged.status, 416);
      await ranged.arrayBuffer();
    });

    it('an unknown blob is 404 BLOB_UNKNOWN on GET and 404 with no body on HEAD', async () => {
      const unknown = randomBlob(10).digest;
      await assertError(await client.getBlob('blobs/read', unknown), 404, 'BLOB_UNKNOWN');
      const head = await client.fetch(`/v2/blobs/read/blobs/${unknown}`, { method: 'HEAD' });
      assert.equal(head.status, 404);
      assert.equal((await head.arrayBuffer()).byteLength, 0);
      // In a repository that does not exist at all, too.
      await assertError(await client.getBlob('blobs/never-created', unknown), 404, 'BLOB_UNKNOWN');
    });

    it('a blob pushed to repository a is 404 BLOB_UNKNOWN through repository b', async () => {
      const only = randomBlob(64);
      await client.pushBlob('blobs/a', only);
      await client.pushBlob('blobs/b', randomBlob(64)); // b exists, but does not hold `only`
      await assertReadable(client, 'blobs/a', only);
      await assertError(await client.getBlob('blobs/b', only.digest), 404, 'BLOB_UNKNOWN');
      assert.equal(await headStatus(client, 'blobs/b', only.digest), 404);
      const ranged = await client.fetch(`/v2/blobs/b/blobs/${only.digest}`, { headers: { Range: 'bytes=0-9' } });
      await assertError(ranged, 404, 'BLOB_UNKNOWN');
    });
  });

  describe('cross-repository mount', () => {
    it('POST ?mount=&from= of a blob the source holds is 201, and the blob is readable in the target', async () => {
      const b = randomBlob(2000);
      await client.pushBlob('mount/src', b);
      assert.equal(await headStatus(client, 'mount/dst', b.digest), 404);
      const res = await client.fetch(`/v2/mount/dst/blobs/uploads/?mount=${b.digest}&from=mount/src`, { method: 'POST' });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get('location'), `/v2/mount/dst/blobs/${b.digest}`);
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      assert.equal(res.headers.get('docker-upload-uuid'), null);
      await assertReadable(client, 'mount/dst', b);
      await assertReadable(client, 'mount/src', b);
      assert.ok((await catalog(client)).includes('mount/dst'));
      assert.equal((await blobFiles(server, b.digest)).length, 1, 'a mount does not copy');
    });

    it('a mount from a repository that does not hold the blob is a 202 upload, which then works', async () => {
      const b = randomBlob(500);
      await client.pushBlob('mount/holder', b);
      await client.pushBlob('mount/other', randomBlob(10));
      for (const from of ['mount/other', 'mount/does-not-exist']) {
        const res = await client.fetch(`/v2/mount/target2/blobs/uploads/?mount=${b.digest}&from=${from}`, { method: 'POST' });
        assert.equal(res.status, 202, from);
        const location = res.headers.get('location')!;
        assert.match(location, /^\/v2\/mount\/target2\/blobs\/uploads\/[A-Za-z0-9_-]+$/);
        assert.equal(res.headers.get('docker-upload-uuid'), location.split('/').pop());
        assert.equal(res.headers.get('range'), '0-0');
        assert.equal(await headStatus(client, 'mount/target2', b.digest), 404, 'not mounted');
        const put = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', body: bytes(b.data) });
        assert.equal(put.status, 201);
        await assertReadable(client, 'mount/target2', b);
        // Undo, so the second source is tested from the same starting point.
        assert.equal((await client.fetch(`/v2/mount/target2/blobs/${b.digest}`, { method: 'DELETE' })).status, 202);
      }
      assert.equal((await blobFiles(server, b.digest)).length, 1);
    });

    it('a mount without from of a known blob is 201', async () => {
      const b = randomBlob(300);
      await client.pushBlob('mount/known', b);
      const res = await client.fetch(`/v2/mount/nofrom/blobs/uploads/?mount=${b.digest}`, { method: 'POST' });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get('location'), `/v2/mount/nofrom/blobs/${b.digest}`);
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      await assertReadable(client, 'mount/nofrom', b);
    });

    it('a mount of an unknown blob (with or without from) is a 202 upload and creates no repository', async () => {
      const b = randomBlob(300);
      const before = await catalog(client);
      for (const query of [`mount=${b.digest}`, `mount=${b.digest}&from=mount/src`]) {
        const res = await client.fetch(`/v2/mount/unknown/blobs/uploads/?${query}`, { method: 'POST' });
        assert.equal(res.status, 202, query);
        assert.match(res.headers.get('location')!, /^\/v2\/mount\/unknown\/blobs\/uploads\/[A-Za-z0-9_-]+$/);
        assert.ok(res.headers.get('docker-upload-uuid'));
      }
      assert.equal(await headStatus(client, 'mount/unknown', b.digest), 404);
      assert.deepEqual(await catalog(client), before);
    });
  });

  describe('DELETE', () => {
    it('DELETE is 202; the blob is then 404 in that repository but still readable in another that holds it', async () => {
      const b = randomBlob(1000);
      await client.pushBlob('del/one', b);
      await client.pushBlob('del/two', b);
      const res = await client.fetch(`/v2/del/one/blobs/${b.digest}`, { method: 'DELETE' });
      assert.equal(res.status, 202);
      await assertError(await client.getBlob('del/one', b.digest), 404, 'BLOB_UNKNOWN');
      assert.equal(await headStatus(client, 'del/one', b.digest), 404);
      await assertReadable(client, 'del/two', b);
      // A second DELETE finds nothing to delete.
      await assertError(await client.fetch(`/v2/del/one/blobs/${b.digest}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
      // Pushing it again to the first repository brings it back.
      await client.pushBlob('del/one', b);
      await assertReadable(client, 'del/one', b);
    });

    it('DELETE of an unknown blob is 404 BLOB_UNKNOWN', async () => {
      const unknown = randomBlob(10).digest;
      await assertError(await client.fetch(`/v2/del/one/blobs/${unknown}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
      await assertError(await client.fetch(`/v2/del/nowhere/blobs/${unknown}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
    });

    it('DELETE in one repository of a blob held only by another is 404 and leaves it there', async () => {
      const b = randomBlob(100);
      await client.pushBlob('del/owner', b);
      await assertError(await client.fetch(`/v2/del/one/blobs/${b.digest}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
      await assertReadable(client, 'del/owner', b);
    });
  });

  describe('storage', () => {
    it('the same blob pushed to 3 repositories, 3 different ways, is stored once', async () => {
      const b = randomBlob(50_000);
      await client.pushBlob('store/one', b);
      await client.pushBlobChunked('store/two', b, 20_000);
      const location = await client.startUpload('store/three');
      assert.equal((await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', body: bytes(b.data) })).status, 201);
      // Again into a repository that already holds it.
      await client.pushBlob('store/one', b);
      const files = await blobFiles(server, b.digest);
      assert.equal(files.length, 1, `stored files: ${files.join(', ')}`);
      assert.equal(await blobSize(server, files[0]!), b.size);
      for (const repo of ['store/one', 'store/two', 'store/three']) await assertReadable(client, repo, b);
    });
  });
});

describe('blobs with deletes disabled', () => {
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    server = await startServer({ args: ['--no-deletes'] });
    client = new RegistryClient(server.url);
  });
  after(async () => {
    const s = server;
    await s.stop();
    noErrorsLogged(s);
  });

  it('DELETE of a blob is 405 UNSUPPORTED and the blob is still there', async () => {
    const b = randomBlob(200);
    await client.pushBlob('nodel/app', b);
    await assertError(await client.fetch(`/v2/nodel/app/blobs/${b.digest}`, { method: 'DELETE' }), 405, 'UNSUPPORTED');
    await assertReadable(client, 'nodel/app', b);
    assert.equal(await headStatus(client, 'nodel/app', b.digest), 200);
    assert.equal((await blobFiles(server, b.digest)).length, 1);
  });
});
