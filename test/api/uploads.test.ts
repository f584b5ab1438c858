/**
 * Blob uploads over HTTP, as the OCI conformance suite pushes them: session
 * lifecycle, monolithic, POST+PUT, chunked and streamed PATCH, strict
 * offsets, digest verification, and the guarantees Berth adds on top:
 * uploads survive a restart or a crash, and a request cut off mid-body
 * leaves no partial blob and no moved offset.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, rmSync, statSync, truncateSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { blobFiles, assertError, uploadFiles, uploadStored } from '../helpers/data-dir.js';
import { makeDataDir, removeStorage, startServer, TEST_STORAGE, testStore, type TestServer } from '../helpers/server.js';
import { blob, bytes, randomBlob, RegistryClient, withQuery, type Blob } from '../helpers/registry-client.js';

const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function sha512(data: Buffer): string {
  return `sha512:${createHash('sha512').update(data).digest('hex')}`;
}




function uploadIdOf(location: string): string {
  const m = /\/blobs\/uploads\/([^/?]+)/.exec(location);
  assert.ok(m, `not an upload location: ${location}`);
  return m[1]!;
}

async function patch(client: RegistryClient, location: string, data: Buffer, range?: [number, number]): Promise<Response> {
  const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
  if (range) headers['Content-Range'] = `${range[0]}-${range[1]}`;
  return client.fetch(location, { method: 'PATCH', headers, body: bytes(data) });
}

async function uploadRange(client: RegistryClient, location: string): Promise<string | null> {
  const res = await client.fetch(location);
  assert.equal(res.status, 204, `upload status: ${res.status}`);
  return res.headers.get('range');
}

async function assertBlobContent(client: RegistryClient, repo: string, b: Blob): Promise<void> {
  const res = await client.getBlob(repo, b.digest);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('docker-content-digest'), b.digest);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), b.data);
}

async function assertNoBlob(client: RegistryClient, repo: string, digest: string): Promise<void> {
  const res = await client.fetch(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
  assert.equal(res.status, 404, `HEAD ${digest} in ${repo}`);
}

/**
 * Opens a raw connection, sends `head` and `partial` body bytes of a request
 * that declares more, waits until the server has received them (`arrived`),
 * then cuts the connection.
 */
/**
 * Sends a request head and part of its body, waits until the server has
 * them (`arrived`, watching storage; without it, a fixed time, for bodies the
 * server holds in memory until they are whole), then resets the connection.
 */
async function cutOff(server: TestServer, head: string, partial: Buffer, arrived?: () => boolean): Promise<void> {
  const { hostname, port } = new URL(server.url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(head);
  socket.write(partial);
  if (TEST_STORAGE === 's3' || !arrived) {
    // Bytes short of a part (S3), or a small body that arrives whole, are held
    // in memory until the request ends: there is nothing in storage to watch,
    // so give the server time to receive them.
    await sleep(400);
    socket.destroy();
    await sleep(300);
    return;
  }
  const deadline = Date.now() + 5000;
  while (!arrived!()) {
    if (Date.now() > deadline) throw new Error('the partial body never reached storage');
    await sleep(10);
  }
  socket.destroy();
  // Let the server see the reset and finish (and clean up after) the request.
  await sleep(200);
}

function requestHead(method: string, path: string, host: string, headers: Record<string, string | number>): string {
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return lines.join('\r\n') + '\r\n\r\n';
}

function fileSize(path: string): number {
  return existsSync(path) ? statSync(path).size : -1;
}

describe('uploads', () => {
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    server = await startServer();
    client = new RegistryClient(server.url);
  });
  after(async () => {
    const errors = server.loggedErrors();
    await server.stop();
    assert.deepEqual(errors, [], 'the server logged errors');
  });

  describe('session lifecycle', () => {
    it('POST starts an upload: 202 with Location, Docker-Upload-UUID and Range 0-0', async () => {
      const res = await client.fetch('/v2/up/session/blobs/uploads/', { method: 'POST' });
      assert.equal(res.status, 202);
      const location = res.headers.get('location')!;
      assert.match(location, /^\/v2\/up\/session\/blobs\/uploads\/[A-Za-z0-9_-]+$/);
      assert.equal(res.headers.get('docker-upload-uuid'), uploadIdOf(location));
      assert.equal(res.headers.get('range'), '0-0');
      // The upload's file is created by its first byte, not by POST: nothing on disk yet.
      assert.equal(await uploadStored(server, uploadIdOf(location)), false);
    });

    it('two POSTs start two distinct uploads', async () => {
      const a = await client.startUpload('up/session');
      const b = await client.startUpload('up/session');
      assert.notEqual(a, b);
    });

    it('GET of an upload is 204 with Range and Location, and Range follows the bytes received', async () => {
      const location = await client.startUpload('up/session');
      let res = await client.fetch(location);
      assert.equal(res.status, 204);
      assert.equal(res.headers.get('range'), '0-0');
      assert.equal(res.headers.get('location'), location);
      assert.equal(res.headers.get('docker-upload-uuid'), uploadIdOf(location));
      assert.equal((await res.arrayBuffer()).byteLength, 0);
      assert.equal((await patch(client, location, Buffer.alloc(10, 1), [0, 9])).status, 202);
      res = await client.fetch(location);
      assert.equal(res.status, 204);
      assert.equal(res.headers.get('range'), '0-9');
      assert.equal(res.headers.get('location'), location);
    });

    it('DELETE of an upload is 204, then the upload is unknown and its bytes are gone', async () => {
      const location = await client.startUpload('up/session');
      assert.equal((await patch(client, location, Buffer.alloc(100, 7), [0, 99])).status, 202);
      const res = await client.fetch(location, { method: 'DELETE' });
      assert.equal(res.status, 204);
      await assertError(await client.fetch(location), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await client.fetch(location, { method: 'DELETE' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await patch(client, location, Buffer.alloc(5)), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.equal(await uploadStored(server, uploadIdOf(location)), false);
    });

    it('an unknown upload id is 404 BLOB_UPLOAD_UNKNOWN for GET, PATCH, PUT and DELETE', async () => {
      const b = randomBlob(64);
      for (const id of ['0b4ca2b3-0000-4000-8000-000000000000', 'not-an-upload']) {
        const location = `/v2/up/session/blobs/uploads/${id}`;
        await assertError(await client.fetch(location), 404, 'BLOB_UPLOAD_UNKNOWN');
        await assertError(await patch(client, location, b.data), 404, 'BLOB_UPLOAD_UNKNOWN');
        await assertError(await patch(client, location, b.data, [0, b.size - 1]), 404, 'BLOB_UPLOAD_UNKNOWN');
        await assertError(
          await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', body: bytes(b.data) }),
          404,
          'BLOB_UPLOAD_UNKNOWN',
        );
        await assertError(await client.fetch(location, { method: 'DELETE' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      }
      await assertNoBlob(client, 'up/session', b.digest);
    });

    it('an upload id used under another repository name is 404, and the upload is untouched', async () => {
      const b = randomBlob(64);
      const location = await client.startUpload('up/owner');
      assert.equal((await patch(client, location, b.data.subarray(0, 32), [0, 31])).status, 202);
      const foreign = location.replace('/v2/up/owner/', '/v2/up/other/');
      assert.notEqual(foreign, location);
      await assertError(await client.fetch(foreign), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await patch(client, foreign, b.data.subarray(32), [32, 63]), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(
        await client.fetch(withQuery(foreign, `digest=${b.digest}`), { method: 'PUT', body: bytes(b.data.subarray(32)) }),
        404,
        'BLOB_UPLOAD_UNKNOWN',
      );
      await assertError(await client.fetch(foreign, { method: 'DELETE' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertNoBlob(client, 'up/other', b.digest);
      // The owner's upload kept its offset and still completes.
      assert.equal(await uploadRange(client, location), '0-31');
      const res = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', body: bytes(b.data.subarray(32)) });
      assert.equal(res.status, 201);
      await assertBlobContent(client, 'up/owner', b);
      await assertNoBlob(client, 'up/other', b.digest);
    });

    it('a finished upload is gone: GET and PUT of it again are 404 BLOB_UPLOAD_UNKNOWN', async () => {
      const b = randomBlob(128);
      const location = await client.startUpload('up/session');
      const put = withQuery(location, `digest=${b.digest}`);
      assert.equal((await client.fetch(put, { method: 'PUT', body: bytes(b.data) })).status, 201);
      await assertError(await client.fetch(location), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await client.fetch(put, { method: 'PUT', body: bytes(b.data) }), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.equal(await uploadStored(server, uploadIdOf(location)), false);
      assert.equal((await blobFiles(server, b.digest)).length, 1);
    });
  });

  describe('pushing', () => {
    it('monolithic POST ?digest= is 201 with the blob Location and Docker-Content-Digest', async () => {
      const b = randomBlob(4096);
      const res = await client.fetch(`/v2/up/mono/blobs/uploads/?digest=${b.digest}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: bytes(b.data),
      });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get('location'), `/v2/up/mono/blobs/${b.digest}`);
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      await assertBlobContent(client, 'up/mono', b);
      const location = res.headers.get('location')!;
      assert.equal((await client.fetch(location, { method: 'HEAD' })).status, 200);
    });

    it('POST then PUT ?digest= with the whole body is 201', async () => {
      const b = randomBlob(5000);
      const location = await client.startUpload('up/postput');
      const res = await client.fetch(withQuery(location, `digest=${b.digest}`), {
        method: 'PUT',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: bytes(b.data),
      });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get('location'), `/v2/up/postput/blobs/${b.digest}`);
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      await assertBlobContent(client, 'up/postput', b);
    });

    it('chunked PATCH with Content-Range: each chunk 202 with Range 0-<end>, then PUT without body', async () => {
      const b = randomBlob(25_000);
      const location = await client.startUpload('up/chunked');
      const size = 10_000;
      for (let start = 0; start < b.size; start += size) {
        const end = Math.min(start + size, b.size) - 1;
        const res = await patch(client, location, b.data.subarray(start, end + 1), [start, end]);
        assert.equal(res.status, 202, await res.clone().text());
        assert.equal(res.headers.get('range'), `0-${end}`);
        assert.equal(res.headers.get('location'), location);
        assert.equal(res.headers.get('docker-upload-uuid'), uploadIdOf(location));
        assert.equal(await uploadRange(client, location), `0-${end}`);
      }
      await assertNoBlob(client, 'up/chunked', b.digest);
      const res = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', headers: { 'Content-Length': '0' } });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get('location'), `/v2/up/chunked/blobs/${b.digest}`);
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      await assertBlobContent(client, 'up/chunked', b);
    });

    it('chunked PATCH, then the last chunk in the PUT body (with and without Content-Range)', async () => {
      for (const withRange of [true, false]) {
        const b = randomBlob(3000);
        const location = await client.startUpload('up/chunked');
        assert.equal((await patch(client, location, b.data.subarray(0, 1000), [0, 999])).status, 202);
        assert.equal((await patch(client, location, b.data.subarray(1000, 2000), [1000, 1999])).status, 202);
        const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
        if (withRange) headers['Content-Range'] = '2000-2999';
        const res = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', headers, body: bytes(b.data.subarray(2000)) });
        assert.equal(res.status, 201, `withRange=${withRange}: ${await res.clone().text()}`);
        assert.equal(res.headers.get('docker-content-digest'), b.digest);
        await assertBlobContent(client, 'up/chunked', b);
      }
    });

    it('streamed PATCH without Content-Range: one stream, then PUT', async () => {
      const b = randomBlob(70_000);
      const location = await client.startUpload('up/streamed');
      const res = await patch(client, location, b.data);
      assert.equal(res.status, 202);
      assert.equal(res.headers.get('range'), `0-${b.size - 1}`);
      assert.equal(res.headers.get('location'), location);
      const put = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' });
      assert.equal(put.status, 201);
      await assertBlobContent(client, 'up/streamed', b);
    });

    it('streamed PATCH without Content-Range: several streams append in order', async () => {
      const b = randomBlob(9000);
      const location = await client.startUpload('up/streamed');
      for (const [start, end] of [[0, 2999], [3000, 5999], [6000, 8999]] as const) {
        const res = await patch(client, location, b.data.subarray(start, end + 1));
        assert.equal(res.status, 202);
        assert.equal(res.headers.get('range'), `0-${end}`);
      }
      const put = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' });
      assert.equal(put.status, 201);
      await assertBlobContent(client, 'up/streamed', b);
    });

    it('chunked transfer encoding (no Content-Length) works for monolithic POST, PATCH and PUT', async () => {
      const stream = (data: Buffer) =>
        ({
          body: new ReadableStream({
            start(c) {
              for (let i = 0; i < data.length; i += 1000) c.enqueue(data.subarray(i, i + 1000));
              c.close();
            },
          }),
          duplex: 'half',
        }) as unknown as RequestInit;
      const b = randomBlob(5000);
      const mono = await client.fetch(`/v2/up/te/blobs/uploads/?digest=${b.digest}`, { method: 'POST', ...stream(b.data) });
      assert.equal(mono.status, 201, await mono.clone().text());
      await assertBlobContent(client, 'up/te', b);
      const c = randomBlob(5000);
      const location = await client.startUpload('up/te');
      const res = await client.fetch(location, { method: 'PATCH', ...stream(c.data.subarray(0, 3000)) });
      assert.equal(res.status, 202);
      assert.equal(res.headers.get('range'), '0-2999');
      const put = await client.fetch(withQuery(location, `digest=${c.digest}`), { method: 'PUT', ...stream(c.data.subarray(3000)) });
      assert.equal(put.status, 201, await put.clone().text());
      await assertBlobContent(client, 'up/te', c);
    });

    it('an empty streamed PATCH is 202 and moves nothing', async () => {
      const b = randomBlob(100);
      const location = await client.startUpload('up/streamed');
      assert.equal((await patch(client, location, b.data)).status, 202);
      const res = await patch(client, location, Buffer.alloc(0));
      assert.equal(res.status, 202);
      assert.equal(res.headers.get('range'), '0-99');
      assert.equal((await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' })).status, 201);
      await assertBlobContent(client, 'up/streamed', b);
    });

    it('a chunk that skips ahead is 416 with Range of the current offset; the upload then completes', async () => {
      const b = randomBlob(300);
      const location = await client.startUpload('up/order');
      assert.equal((await patch(client, location, b.data.subarray(0, 100), [0, 99])).status, 202);
      const res = await patch(client, location, b.data.subarray(200, 300), [200, 299]);
      assert.equal(res.headers.get('docker-upload-uuid'), uploadIdOf(location));
      await assertError(res, 416, 'BLOB_UPLOAD_INVALID');
      assert.equal(res.headers.get('range'), '0-99');
      assert.equal(await uploadRange(client, location), '0-99');
      assert.equal((await patch(client, location, b.data.subarray(100, 200), [100, 199])).status, 202);
      assert.equal((await patch(client, location, b.data.subarray(200, 300), [200, 299])).status, 202);
      assert.equal((await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' })).status, 201);
      await assertBlobContent(client, 'up/order', b);
    });

    it('the first chunk sent again is 416 with Range of the current offset, and changes nothing', async () => {
      const b = randomBlob(200);
      const location = await client.startUpload('up/order');
      assert.equal((await patch(client, location, b.data.subarray(0, 100), [0, 99])).status, 202);
      const again = await patch(client, location, Buffer.alloc(100, 0xee), [0, 99]);
      await assertError(again, 416, 'BLOB_UPLOAD_INVALID');
      assert.equal(again.headers.get('range'), '0-99');
      // A chunk that starts before the offset but runs past it is refused too.
      const overlap = await patch(client, location, Buffer.alloc(100, 0xee), [50, 149]);
      await assertError(overlap, 416, 'BLOB_UPLOAD_INVALID');
      assert.equal(overlap.headers.get('range'), '0-99');
      assert.equal((await patch(client, location, b.data.subarray(100), [100, 199])).status, 202);
      assert.equal((await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' })).status, 201);
      await assertBlobContent(client, 'up/order', b);
    });

    it('a PUT whose Content-Range does not start at the offset is 416 and the upload is kept', async () => {
      const b = randomBlob(200);
      const location = await client.startUpload('up/order');
      assert.equal((await patch(client, location, b.data.subarray(0, 100), [0, 99])).status, 202);
      const res = await client.fetch(withQuery(location, `digest=${b.digest}`), {
        method: 'PUT',
        headers: { 'Content-Range': '0-99' },
        body: bytes(b.data.subarray(100)),
      });
      await assertError(res, 416, 'BLOB_UPLOAD_INVALID');
      assert.equal(res.headers.get('range'), '0-99');
      await assertNoBlob(client, 'up/order', b.digest);
      const ok = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', headers: { 'Content-Range': '100-199' }, body: bytes(b.data.subarray(100)) });
      assert.equal(ok.status, 201);
      await assertBlobContent(client, 'up/order', b);
    });

    it('a zero-length blob pushes monolithically and by POST then PUT', async () => {
      const empty = blob(Buffer.alloc(0));
      assert.equal(empty.digest, EMPTY_SHA256);
      const mono = await client.fetch(`/v2/up/empty1/blobs/uploads/?digest=${EMPTY_SHA256}`, { method: 'POST', headers: { 'Content-Length': '0' } });
      assert.equal(mono.status, 201);
      assert.equal(mono.headers.get('docker-content-digest'), EMPTY_SHA256);
      const location = await client.startUpload('up/empty2');
      const put = await client.fetch(withQuery(location, `digest=${EMPTY_SHA256}`), { method: 'PUT', headers: { 'Content-Length': '0' } });
      assert.equal(put.status, 201);
      for (const repo of ['up/empty1', 'up/empty2']) {
        const res = await client.getBlob(repo, EMPTY_SHA256);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('content-length'), '0');
        assert.equal((await res.arrayBuffer()).byteLength, 0);
      }
    });

    it('a sha512 digest on PUT is verified by rehashing, and the blob is served under it', async () => {
      const data = randomBlob(3000).data;
      const digest = sha512(data);
      const location = await client.startUpload('up/sha512');
      assert.equal((await patch(client, location, data.subarray(0, 1000), [0, 999])).status, 202);
      const res = await client.fetch(withQuery(location, `digest=${digest}`), { method: 'PUT', body: bytes(data.subarray(1000)) });
      assert.equal(res.status, 201, await res.clone().text());
      assert.equal(res.headers.get('docker-content-digest'), digest);
      assert.equal(res.headers.get('location'), `/v2/up/sha512/blobs/${digest}`);
      const get = await client.fetch(`/v2/up/sha512/blobs/${digest}`);
      assert.equal(get.status, 200);
      assert.equal(get.headers.get('docker-content-digest'), digest);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), data);
    });

    it('a sha512 digest on monolithic POST works', async () => {
      const data = randomBlob(2000).data;
      const digest = sha512(data);
      const res = await client.fetch(`/v2/up/sha512/blobs/uploads/?digest=${digest}`, { method: 'POST', body: bytes(data) });
      assert.equal(res.status, 201, await res.clone().text());
      assert.equal(res.headers.get('docker-content-digest'), digest);
      const get = await client.fetch(`/v2/up/sha512/blobs/${digest}`);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), data);
    });
  });

  describe('digest verification', () => {
    it('a wrong sha512 on PUT is 400 DIGEST_INVALID and stores nothing', async () => {
      const data = randomBlob(1000).data;
      const wrong = sha512(Buffer.concat([data, Buffer.from('x')]));
      const location = await client.startUpload('up/verify');
      const res = await client.fetch(withQuery(location, `digest=${wrong}`), { method: 'PUT', body: bytes(data) });
      await assertError(res, 400, 'DIGEST_INVALID');
      await assertNoBlob(client, 'up/verify', wrong);
      await assertNoBlob(client, 'up/verify', sha512(data));
      assert.deepEqual(await blobFiles(server, wrong), []);
      assert.deepEqual(await blobFiles(server, sha512(data)), []);
    });

    it('a digest mismatch on PUT is 400 DIGEST_INVALID; nothing is stored under either digest', async () => {
      const b = randomBlob(2048);
      const claimed = randomBlob(2048).digest;
      const location = await client.startUpload('up/verify');
      assert.equal((await patch(client, location, b.data.subarray(0, 1024), [0, 1023])).status, 202);
      const res = await client.fetch(withQuery(location, `digest=${claimed}`), { method: 'PUT', body: bytes(b.data.subarray(1024)) });
      await assertError(res, 400, 'DIGEST_INVALID');
      for (const d of [claimed, b.digest]) {
        await assertNoBlob(client, 'up/verify', d);
        assert.deepEqual(await blobFiles(server, d), [], `no stored file for ${d}`);
      }
      // Whether the upload survives a mismatch is the registry's choice; if it does, it holds exactly the bytes sent.
      const retry = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' });
      if (retry.status === 201) await assertBlobContent(client, 'up/verify', b);
      else await assertError(retry, 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    it('a digest mismatch on monolithic POST is 400 DIGEST_INVALID and leaves no blob and no upload file', async () => {
      const uploadsBefore = await uploadFiles(server);
      const b = randomBlob(2048);
      const claimed = randomBlob(2048).digest;
      const res = await client.fetch(`/v2/up/verify/blobs/uploads/?digest=${claimed}`, { method: 'POST', body: bytes(b.data) });
      await assertError(res, 400, 'DIGEST_INVALID');
      for (const d of [claimed, b.digest]) {
        await assertNoBlob(client, 'up/verify', d);
        assert.deepEqual(await blobFiles(server, d), [], `no stored file for ${d}`);
      }
      assert.deepEqual(await uploadFiles(server), uploadsBefore);
    });

    it('a wrong sha512 on monolithic POST is 400 DIGEST_INVALID and stores nothing', async () => {
      const data = randomBlob(1000).data;
      const wrong = sha512(Buffer.concat([data, Buffer.from('x')]));
      const res = await client.fetch(`/v2/up/verify/blobs/uploads/?digest=${wrong}`, { method: 'POST', body: bytes(data) });
      await assertError(res, 400, 'DIGEST_INVALID');
      await assertNoBlob(client, 'up/verify', wrong);
      assert.deepEqual(await blobFiles(server, wrong), []);
      assert.deepEqual(await blobFiles(server, sha512(data)), []);
    });

    it('a monolithic POST whose body is shorter than its Content-Range is refused and stores nothing', async () => {
      const uploadsBefore = await uploadFiles(server);
      const b = randomBlob(100);
      const res = await client.fetch(`/v2/up/verify/blobs/uploads/?digest=${b.digest}`, {
        method: 'POST',
        headers: { 'Content-Range': '0-199' },
        body: bytes(b.data),
      });
      await assertError(res, 400, 'SIZE_INVALID');
      await assertNoBlob(client, 'up/verify', b.digest);
      assert.deepEqual(await blobFiles(server, b.digest), []);
      assert.deepEqual(await uploadFiles(server), uploadsBefore);
    });
  });

  describe('a request cut off mid-body', () => {

    for (const mode of ['Content-Range', 'streamed', 'chunked transfer'] as const) {
      it(`a PATCH (${mode}) cut off leaves the offset unchanged and the upload completes with the full data`, async () => {
        const b = randomBlob(64 * 1024);
        const location = await client.startUpload('cut/patch');
        const file = join(server.dataDir, 'uploads', uploadIdOf(location));
        assert.equal((await patch(client, location, b.data.subarray(0, 16_384), [0, 16_383])).status, 202);

        const rest = b.data.subarray(16_384);
        const partial = rest.subarray(0, 20_000);
        const headers: Record<string, string | number> = { 'Content-Type': 'application/octet-stream' };
        let sent = partial;
        if (mode === 'chunked transfer') {
          headers['Transfer-Encoding'] = 'chunked';
          sent = Buffer.concat([Buffer.from(`${partial.length.toString(16)}\r\n`), partial, Buffer.from('\r\n')]);
        } else {
          headers['Content-Length'] = rest.length;
          if (mode === 'Content-Range') headers['Content-Range'] = `16384-${b.size - 1}`;
        }
        await cutOff(server, requestHead('PATCH', location, server.host, headers), sent, () => fileSize(file) >= 16_384 + partial.length);

        assert.equal(await uploadRange(client, location), '0-16383');
        await assertNoBlob(client, 'cut/patch', b.digest);
        // A PUT now would finish with the acknowledged bytes only: a mismatch, not the partial data.
        const early = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' });
        await assertError(early, 400, 'DIGEST_INVALID');
        const res = await patch(client, location, rest, [16_384, b.size - 1]);
        assert.equal(res.status, 202, await res.clone().text());
        assert.equal(res.headers.get('range'), `0-${b.size - 1}`);
        assert.equal((await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' })).status, 201);
        await assertBlobContent(client, 'cut/patch', b);
      });
    }

    it('a PUT with the last chunk cut off does not create the blob; the upload completes afterwards', async () => {
      const b = randomBlob(40_000);
      const location = await client.startUpload('cut/put');
      const file = join(server.dataDir, 'uploads', uploadIdOf(location));
      assert.equal((await patch(client, location, b.data.subarray(0, 10_000), [0, 9_999])).status, 202);
      const rest = b.data.subarray(10_000);
      await cutOff(
        server,
        requestHead('PUT', withQuery(location, `digest=${b.digest}`), server.host, { 'Content-Length': rest.length }),
        rest.subarray(0, 15_000),
        () => fileSize(file) >= 25_000,
      );
      assert.equal(await uploadRange(client, location), '0-9999');
      await assertNoBlob(client, 'cut/put', b.digest);
      assert.deepEqual(await blobFiles(server, b.digest), []);
      const res = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', body: bytes(rest) });
      assert.equal(res.status, 201, await res.clone().text());
      await assertBlobContent(client, 'cut/put', b);
    });

    it('a monolithic POST ?digest= cut off creates no blob and leaves no upload file', async () => {
      const b = randomBlob(64 * 1024);
      const before = new Set(await uploadFiles(server));
      await cutOff(
        server,
        requestHead('POST', `/v2/cut/mono/blobs/uploads/?digest=${b.digest}`, server.host, { 'Content-Length': b.size }),
        b.data.subarray(0, 30_000),
      );
      await assertNoBlob(client, 'cut/mono', b.digest);
      assert.deepEqual(await blobFiles(server, b.digest), []);
      assert.deepEqual((await uploadFiles(server)).filter((f) => !before.has(f)), [], 'the aborted upload object is removed');
      await client.pushBlob('cut/mono', b);
      await assertBlobContent(client, 'cut/mono', b);
    });

    it('a monolithic POST cut off after the whole content, but before its declared length, creates no blob', async () => {
      // The bytes received hash to the digest: only the declared length tells the request was incomplete.
      const b = randomBlob(32 * 1024);
      const before = new Set(await uploadFiles(server));
      await cutOff(
        server,
        requestHead('POST', `/v2/cut/exact/blobs/uploads/?digest=${b.digest}`, server.host, { 'Content-Length': b.size + 100 }),
        b.data,
      );
      await assertNoBlob(client, 'cut/exact', b.digest);
      assert.deepEqual(await blobFiles(server, b.digest), []);
      assert.deepEqual((await uploadFiles(server)).filter((f) => !before.has(f)), []);
    });

    it('a first PATCH cut off short of its declared length moves no offset and leaves no upload object; a whole PUT then completes it', async () => {
      const b = randomBlob(8192);
      const location = await client.startUpload('cut/exact');
      const id = uploadIdOf(location);
      const file = join(server.dataDir, 'uploads', id);
      await cutOff(
        server,
        requestHead('PATCH', location, server.host, { 'Content-Length': b.size + 1 }),
        b.data,
        () => fileSize(file) >= b.size,
      );
      assert.equal(await uploadRange(client, location), '0-0');
      // The server cleans up once it sees the reset, which may trail our next request.
      const deadline = Date.now() + 5000;
      while ((await uploadStored(server, id)) && Date.now() < deadline) await sleep(20);
      assert.equal(await uploadStored(server, id), false, 'the refused bytes are removed');
      const put = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' });
      await assertError(put, 400, 'DIGEST_INVALID');
      await assertNoBlob(client, 'cut/exact', b.digest);
      const whole = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', body: bytes(b.data) });
      assert.equal(whole.status, 201, await whole.clone().text());
      await assertBlobContent(client, 'cut/exact', b);
      assert.equal(await uploadStored(server, id), false);
    });
  });

  describe('upload bytes lost behind Berth\'s back (drift)', () => {

    for (const next of ['PUT', 'PATCH'] as const) {
      it(`an upload whose stored bytes are gone answers ${next} with 404 BLOB_UPLOAD_UNKNOWN, never a blob of zeros`, async () => {
        const b = randomBlob(30_000);
        const location = await client.startUpload('drift/gone');
        assert.equal((await patch(client, location, b.data.subarray(0, 20_000), [0, 19_999])).status, 202);
        // Behind Berth's back: the file on disk, the tail object on S3.
        await testStore(server.dataDir).deleteUpload(uploadIdOf(location));
        const rest = b.data.subarray(20_000);
        const res =
          next === 'PUT'
            ? await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', body: bytes(rest) })
            : await patch(client, location, rest, [20_000, b.size - 1]);
        await assertError(res, 404, 'BLOB_UPLOAD_UNKNOWN');
        await assertNoBlob(client, 'drift/gone', b.digest);
        assert.deepEqual(await blobFiles(server, b.digest), []);
        // The session is over: the client starts again, and that works.
        await assertError(await client.fetch(location), 404, 'BLOB_UPLOAD_UNKNOWN');
        await client.pushBlob('drift/gone', b);
        await assertBlobContent(client, 'drift/gone', b);
        // The log is written asynchronously.
        const deadline = Date.now() + 5000;
        while (!server.output().includes('upload bytes missing') && Date.now() < deadline) await sleep(20);
        assert.match(server.output(), /upload bytes missing/);
        assert.doesNotMatch(server.output(), /"level":(50|60)/, 'no error logged: drift is not a bug');
      });
    }

    it('an upload whose file lost its tail is refused at commit instead of padded', { skip: TEST_STORAGE === 's3' && 'the file layout is the filesystem store\'s' }, async () => {
      const b = randomBlob(30_000);
      const location = await client.startUpload('drift/short');
      assert.equal((await patch(client, location, b.data, [0, b.size - 1])).status, 202);
      truncateSync(join(server.dataDir, 'uploads', uploadIdOf(location)), 10_000);
      const res = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT' });
      await assertError(res, 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertNoBlob(client, 'drift/short', b.digest);
      assert.deepEqual(await blobFiles(server, b.digest), []);
    });
  });
});

describe('uploads survive a restart', () => {
  for (const how of ['graceful stop', 'SIGKILL'] as const) {
    it(`an upload started before a ${how} continues on the same data directory`, async () => {
      const dataDir = makeDataDir();
      let server = await startServer({ dataDir });
      try {
        let client = new RegistryClient(server.url);
        const b = randomBlob(60_000);
        const location = await client.startUpload('restart/app');
        assert.ok(location.startsWith('/v2/'), 'Location is a path, valid on any port');
        const first = await patch(client, location, b.data.subarray(0, 20_000), [0, 19_999]);
        assert.equal(first.status, 202);
        const before = server.output();
        if (how === 'SIGKILL') await server.kill();
        else await server.stop();
        assert.doesNotMatch(before, /"level":(50|60)/);

        server = await startServer({ dataDir });
        client = new RegistryClient(server.url);
        assert.equal(await uploadRange(client, location), '0-19999');
        const second = await patch(client, location, b.data.subarray(20_000, 40_000), [20_000, 39_999]);
        assert.equal(second.status, 202);
        assert.equal(second.headers.get('range'), '0-39999');
        // The final chunk in the PUT: the digest is computed over bytes from both processes.
        const put = await client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', body: bytes(b.data.subarray(40_000)) });
        assert.equal(put.status, 201, await put.clone().text());
        await assertBlobContent(client, 'restart/app', b);
        assert.doesNotMatch(server.output(), /"level":(50|60)/);
      } finally {
        await server.stop();
        rmSync(dataDir, { recursive: true, force: true });
        await removeStorage(dataDir);
      }
    });
  }
});
