/**
 * Bad input at the edge: invalid repository names, digests, ranges,
 * pagination, unknown endpoints and methods each get the spec's error
 * (never a 5xx), and a refused request changes nothing: no repository, no
 * blob, no upload appears and no upload moves.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { blobKeys, uploadFiles } from '../helpers/data-dir.js';
import { startServer, TEST_METADATA, TEST_STORAGE, type TestServer } from '../helpers/server.js';
import { bytes, makeImage, randomBlob, RegistryClient, withQuery } from '../helpers/registry-client.js';

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * A request with the path exactly as given: fetch would normalize `..` and
 * reject some paths, and those are what these tests are about.
 */
function raw(server: TestServer, method: string, path: string, opts: { headers?: Record<string, string>; body?: Buffer } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port: Number(port), method, path, headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

function codeOf(res: RawResponse): string | undefined {
  try {
    return (JSON.parse(res.body.toString()) as { errors?: { code: string }[] }).errors?.[0]?.code;
  } catch {
    return undefined;
  }
}

function assertRefused(res: RawResponse, status: number, code: string | undefined, what: string): void {
  assert.ok(res.status < 500, `${what}: ${res.status} ${res.body.toString()}`);
  assert.equal(res.status, status, `${what}: ${res.status} ${res.body.toString()}`);
  assert.equal(res.headers['content-type'], 'application/json; charset=utf-8', what);
  if (code !== undefined) assert.equal(codeOf(res), code, `${what}: ${res.body.toString()}`);
}


const BLOB = randomBlob(256);
const OTHER = randomBlob(128);
const UNKNOWN_UPLOAD = '2f1e7c52-0000-4000-8000-000000000000';
const VALID_255 = `${'a'.repeat(100)}/${'b'.repeat(100)}/${'c'.repeat(53)}`;
const TOO_LONG_256 = `${'a'.repeat(100)}/${'b'.repeat(100)}/${'c'.repeat(54)}`;

describe('bad input', () => {
  let server: TestServer;
  let client: RegistryClient;
  /** The upload in `good/app` every refused request must leave alone. */
  let upload: string;

  /** What a refused request must not change. */
  async function snapshot(): Promise<unknown> {
    const res = await client.fetch('/v2/_catalog');
    assert.equal(res.status, 200);
    const status = await client.fetch(upload);
    assert.equal(status.status, 204);
    return {
      catalog: ((await res.json()) as { repositories: string[] }).repositories,
      blobs: await blobKeys(server),
      // Bytes a refused chunk wrote past the acknowledged offset do not count (the next append
      // discards them, the last test proves it): the offset is what the registry promises.
      uploads: await uploadFiles(server),
      uploadRange: status.headers.get('range'),
    };
  }

  before(async () => {
    server = await startServer();
    client = new RegistryClient(server.url);
    const image = makeImage({ layers: 1 });
    await client.pushImage('good/app', image, 'v1');
    await client.pushBlob('good/app', BLOB);
    upload = await client.startUpload('good/app');
    const res = await client.fetch(upload, { method: 'PATCH', headers: { 'Content-Range': '0-9' }, body: bytes(OTHER.data.subarray(0, 10)) });
    assert.equal(res.status, 202);
  });

  after(async () => {
    const s = server;
    await s.stop();
    const errors = s.loggedErrors();
    assert.deepEqual(errors, [], 'the server logged errors');
  });

  describe('refused requests change nothing', () => {
    let before: unknown;
    beforeEach(async () => {
      before = await snapshot();
    });
    afterEach(async () => {
      assert.deepEqual(await snapshot(), before, 'a refused request changed the registry');
    });

    const BAD_NAMES: [string, string][] = [
      ['uppercase', 'Good/app'],
      ['uppercase component', 'good/App'],
      ['.. component', 'good/../app'],
      ['.. as the name', '..'],
      ['. component', 'good/./app'],
      ['percent-encoded ..', 'good/%2e%2e/app'],
      ['empty component', 'good//app'],
      ['trailing slash', 'good/app/'],
      ['leading slash', '/good/app'],
      ['trailing separator', 'good/app-'],
      ['leading separator', '_good/app'],
      ['separator before slash', 'good./app'],
      ['space', 'good/a%20pp'],
      // Not the nested repository good/app: a slash inside a component is no separator.
      ['an encoded slash', 'good%2Fapp'],
      ['an encoded slash in lowercase', 'good%2fapp'],
      ['256 characters', TOO_LONG_256],
    ];

    for (const [label, name] of BAD_NAMES) {
      it(`repository name with ${label} is 400 NAME_INVALID on every endpoint`, async () => {
        const d = BLOB.digest;
        const endpoints: [string, string, Buffer?][] = [
          ['GET', `/v2/${name}/blobs/${d}`],
          ['DELETE', `/v2/${name}/blobs/${d}`],
          ['POST', `/v2/${name}/blobs/uploads/`],
          ['POST', `/v2/${name}/blobs/uploads/?digest=${d}`, BLOB.data],
          ['POST', `/v2/${name}/blobs/uploads/?mount=${d}&from=good/app`],
          ['POST', `/v2/${name}/blobs/uploads/?mount=${d}`],
          ['GET', `/v2/${name}/blobs/uploads/${UNKNOWN_UPLOAD}`],
          ['PATCH', `/v2/${name}/blobs/uploads/${UNKNOWN_UPLOAD}`, OTHER.data],
          ['PUT', `/v2/${name}/blobs/uploads/${UNKNOWN_UPLOAD}?digest=${d}`, BLOB.data],
          ['DELETE', `/v2/${name}/blobs/uploads/${UNKNOWN_UPLOAD}`],
          ['GET', `/v2/${name}/manifests/v1`],
          ['PUT', `/v2/${name}/manifests/v1`, makeImage({ layers: 0 }).manifest],
          ['DELETE', `/v2/${name}/manifests/v1`],
          ['GET', `/v2/${name}/tags/list`],
          ['GET', `/v2/${name}/referrers/${d}`],
        ];
        for (const [method, path, body] of endpoints) {
          const headers: Record<string, string> = body ? { 'Content-Type': 'application/octet-stream' } : {};
          if (path.includes('/manifests/') && body) headers['Content-Type'] = 'application/vnd.oci.image.manifest.v1+json';
          assertRefused(await raw(server, method, path, { headers, body }), 400, 'NAME_INVALID', `${method} ${path.slice(0, 80)}`);
        }
        for (const path of [`/v2/${name}/blobs/${d}`, `/v2/${name}/manifests/v1`]) {
          const head = await raw(server, 'HEAD', path);
          assert.equal(head.status, 400, `HEAD ${path.slice(0, 80)}`);
          assert.equal(head.body.length, 0);
        }
        // The real upload, addressed through the bad name, is refused too.
        const ours = upload.replace('/v2/good/app/', `/v2/${name}/`);
        assertRefused(await raw(server, 'PATCH', ours, { body: OTHER.data.subarray(10) }), 400, 'NAME_INVALID', 'PATCH of a real upload');
        assertRefused(await raw(server, 'DELETE', ours), 400, 'NAME_INVALID', 'DELETE of a real upload');
      });
    }

    const BAD_DIGESTS: [string, string][] = [
      ['an unknown algorithm', `md5:${'a'.repeat(32)}`],
      ['an unknown algorithm with a sha256-length hex', `sha1:${'a'.repeat(64)}`],
      ['an uppercase algorithm', `SHA256:${BLOB.digest.slice(7)}`],
      ['malformed hex', `sha256:${'z'.repeat(64)}`],
      ['uppercase hex', `sha256:${BLOB.digest.slice(7).toUpperCase()}`],
      ['hex too short', `sha256:${'a'.repeat(63)}`],
      ['hex too long', `sha256:${'a'.repeat(65)}`],
      ['a sha256-length sha512', `sha512:${'a'.repeat(64)}`],
      ['no hex', 'sha256:'],
      ['no algorithm', `:${BLOB.digest.slice(7)}`],
      ['no algorithm and no colon', BLOB.digest.slice(7)],
      ['a non-hex character', `sha256:${BLOB.digest.slice(7, 70)}-`],
    ];

    for (const [label, digest] of BAD_DIGESTS) {
      it(`a digest with ${label} is 400 DIGEST_INVALID on blob GET, HEAD, DELETE, POST, PUT and mount`, async () => {
        const e = encodeURIComponent(digest);
        assertRefused(await raw(server, 'GET', `/v2/good/app/blobs/${e}`), 400, 'DIGEST_INVALID', 'GET blob');
        assertRefused(await raw(server, 'DELETE', `/v2/good/app/blobs/${e}`), 400, 'DIGEST_INVALID', 'DELETE blob');
        const head = await raw(server, 'HEAD', `/v2/good/app/blobs/${e}`);
        assert.equal(head.status, 400, 'HEAD blob');
        assert.equal(head.body.length, 0);
        for (const repo of ['good/app', 'fresh/repo']) {
          assertRefused(
            await raw(server, 'POST', `/v2/${repo}/blobs/uploads/?digest=${e}`, { body: BLOB.data }),
            400,
            'DIGEST_INVALID',
            `POST ?digest= in ${repo}`,
          );
          assertRefused(await raw(server, 'POST', `/v2/${repo}/blobs/uploads/?mount=${e}&from=good/app`), 400, 'DIGEST_INVALID', `mount in ${repo}`);
          assertRefused(await raw(server, 'POST', `/v2/${repo}/blobs/uploads/?mount=${e}`), 400, 'DIGEST_INVALID', `mount without from in ${repo}`);
        }
        // PUT of the real upload: with and without a last chunk, it stays where it was.
        assertRefused(await raw(server, 'PUT', withQuery(upload, `digest=${e}`)), 400, 'DIGEST_INVALID', 'PUT without body');
        assertRefused(
          await raw(server, 'PUT', withQuery(upload, `digest=${e}`), { headers: { 'Content-Range': '10-127' }, body: OTHER.data.subarray(10) }),
          400,
          'DIGEST_INVALID',
          'PUT with the last chunk',
        );
        if (digest.includes(':')) {
          assertRefused(await raw(server, 'GET', `/v2/good/app/manifests/${e}`), 400, 'DIGEST_INVALID', 'GET manifest');
        }
      });
    }

    it('PUT of an upload without ?digest= is 400 DIGEST_INVALID and appends nothing', async () => {
      assertRefused(await raw(server, 'PUT', upload), 400, 'DIGEST_INVALID', 'PUT without digest or body');
      assertRefused(
        await raw(server, 'PUT', upload, { headers: { 'Content-Range': '10-127' }, body: OTHER.data.subarray(10) }),
        400,
        'DIGEST_INVALID',
        'PUT without digest, with the last chunk',
      );
      assertRefused(await raw(server, 'PUT', withQuery(upload, 'digest=')), 400, 'DIGEST_INVALID', 'PUT with an empty digest');
    });

    for (const range of ['abc', '10-', '-5', '10-x', '12-3', 'bytes=10-', '10 - 20', '1e1-2e1', '0x0a-0x10']) {
      it(`a malformed Content-Range (${JSON.stringify(range)}) is 416 and appends nothing`, async () => {
        const res = await raw(server, 'PATCH', upload, { headers: { 'Content-Range': range }, body: OTHER.data.subarray(10, 20) });
        assertRefused(res, 416, 'BLOB_UPLOAD_INVALID', `PATCH Content-Range: ${range}`);
        const put = await raw(server, 'PUT', withQuery(upload, `digest=${OTHER.digest}`), {
          headers: { 'Content-Range': range },
          body: OTHER.data.subarray(10),
        });
        assertRefused(put, 416, 'BLOB_UPLOAD_INVALID', `PUT Content-Range: ${range}`);
      });
    }

    it('a Content-Range that disagrees with the body length is 400 SIZE_INVALID and appends nothing', async () => {
      const res = await raw(server, 'PATCH', upload, { headers: { 'Content-Range': '10-29' }, body: OTHER.data.subarray(10, 20) });
      assertRefused(res, 400, 'SIZE_INVALID', 'PATCH with a short body');
      const huge = await raw(server, 'PATCH', upload, { headers: { 'Content-Range': '10-99999999999999999999' }, body: OTHER.data.subarray(10, 20) });
      assert.ok(huge.status === 400 || huge.status === 416, `huge range: ${huge.status} ${huge.body.toString()}`);
    });

    it('a malformed Content-Length is refused with a 4xx', async () => {
      const res = await raw(server, 'PATCH', upload, { headers: { 'Content-Length': 'abc' }, body: Buffer.alloc(0) });
      assert.ok(res.status >= 400 && res.status < 500, `${res.status}`);
    });

    for (const n of ['-1', 'abc', '1.5', '1e3', '0x10', ' 5']) {
      it(`tags/list and _catalog with n=${JSON.stringify(n)} are 400 PAGINATION_NUMBER_INVALID`, async () => {
        const q = encodeURIComponent(n);
        assertRefused(await raw(server, 'GET', `/v2/good/app/tags/list?n=${q}`), 400, 'PAGINATION_NUMBER_INVALID', 'tags');
        assertRefused(await raw(server, 'GET', `/v2/_catalog?n=${q}`), 400, 'PAGINATION_NUMBER_INVALID', 'catalog');
      });
    }

    it('unknown endpoints are 404', async () => {
      for (const [method, path] of [
        ['GET', '/v2/good/app'],
        ['GET', '/v2/good/app/tags'],
        ['GET', '/v2/good/app/tags/list/extra'],
        ['GET', '/v2/good/app/blobs'],
        ['GET', `/v2/good/app/blobs/uploads/${UNKNOWN_UPLOAD}/more`],
        ['GET', '/v2/good/app/manifests'],
        ['PUT', `/v2/good/app/nonsense/${BLOB.digest}`],
        ['GET', '/v2/_catalog/extra'],
        ['GET', '/v3/'],
        ['GET', '/'],
        ['POST', '/v1/repositories/good/app'],
        ['GET', '/v2/good/app/blobs/%zz'],
        ['GET', '/v2/good%/app/tags/list'],
        ['PATCH', `/v2/good/app/blobs/uploads/%E0%A4%A`],
      ] as const) {
        const res = await raw(server, method, path);
        assertRefused(res, 404, 'NAME_UNKNOWN', `${method} ${path}`);
      }
    });

    it('an overlong path is refused with a 4xx and the spec error format', async () => {
      for (const path of [`/v2/${'a'.repeat(10_000)}/tags/list`, `/v2/good/app/blobs/sha256:${'a'.repeat(10_000)}`]) {
        const res = await raw(server, 'GET', path);
        assert.ok(res.status >= 400 && res.status < 500, `${res.status} ${res.body.toString().slice(0, 200)}`);
        assert.ok(codeOf(res), `a JSON error body: ${res.body.toString().slice(0, 200)}`);
      }
    });

    it('a wrong method is 405 UNSUPPORTED with an Allow header', async () => {
      for (const [method, path, allow] of [
        ['PUT', `/v2/good/app/blobs/${BLOB.digest}`, 'GET, HEAD, DELETE'],
        ['POST', `/v2/good/app/blobs/${BLOB.digest}`, 'GET, HEAD, DELETE'],
        ['PATCH', `/v2/good/app/blobs/${BLOB.digest}`, 'GET, HEAD, DELETE'],
        ['POST', '/v2/good/app/manifests/v1', 'GET, HEAD, PUT, DELETE'],
        ['PATCH', '/v2/good/app/manifests/v1', 'GET, HEAD, PUT, DELETE'],
        ['GET', '/v2/good/app/blobs/uploads/', 'POST'],
        ['PUT', '/v2/good/app/blobs/uploads/', 'POST'],
        ['POST', upload, 'GET, PATCH, PUT, DELETE'],
        ['POST', '/v2/good/app/tags/list', 'GET'],
        ['DELETE', '/v2/good/app/tags/list', 'GET'],
        ['DELETE', '/v2/_catalog', 'GET'],
        ['POST', '/v2/', 'GET, HEAD'],
        ['DELETE', '/v2/', 'GET, HEAD'],
      ] as const) {
        const res = await raw(server, method, path, method === 'GET' || method === 'DELETE' ? {} : { body: BLOB.data });
        assertRefused(res, 405, 'UNSUPPORTED', `${method} ${path}`);
        assert.equal(res.headers.allow, allow, `${method} ${path}`);
      }
    });

    it('an upload id with unsafe characters is 404 BLOB_UPLOAD_UNKNOWN, not a file outside uploads/', async () => {
      for (const id of ['..%2F..%2Fmetadata.db', '%2E%2E', '..', 'x%00y']) {
        const path = `/v2/good/app/blobs/uploads/${id}`;
        for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
          const res = await raw(server, method, path, method === 'PATCH' ? { body: OTHER.data } : {});
          assertRefused(res, 404, 'BLOB_UPLOAD_UNKNOWN', `${method} ${path}`);
        }
      }
      if (TEST_METADATA === 'sqlite') assert.ok(existsSync(join(server.dataDir, 'metadata.db')));
      if (TEST_STORAGE === 'fs') assert.ok(existsSync(join(server.dataDir, 'blobs')));
    });
  });

  describe('malformed HTTP', () => {
    function rawBytes(bytes: Buffer): Promise<string> {
      const { hostname, port } = new URL(server.url);
      return new Promise((resolve, reject) => {
        const socket = connect(Number(port), hostname, () => socket.end(bytes));
        let out = '';
        socket.on('data', (d) => (out += d));
        socket.on('end', () => resolve(out));
        socket.on('error', reject);
      });
    }

    it('a request that is not HTTP gets a spec JSON error and the connection closes', async () => {
      for (const bytes of ['FOO / HTTP/1.1\r\nHost: x\r\n\r\n', 'GET / HTTP/1.1\r\nHost: x\r\nX: ' + 'a'.repeat(70_000) + '\r\n\r\n', '\x00\x01\x02 nonsense\r\n\r\n']) {
        const answer = await rawBytes(Buffer.from(bytes, 'latin1'));
        const [head = '', body = ''] = answer.split('\r\n\r\n');
        assert.match(head, /^HTTP\/1\.1 (400|431) /, JSON.stringify(bytes.slice(0, 40)));
        assert.match(head, /connection: close/i);
        assert.equal((JSON.parse(body) as { errors: { code: string }[] }).errors[0]!.code, 'UNSUPPORTED');
      }
    });
  });

  describe('request targets', () => {
    /** One request on its own connection; `Connection: close` makes the server end it after the answer. */
    function rawText(text: string): Promise<string> {
      const { hostname, port } = new URL(server.url);
      return new Promise((resolve, reject) => {
        // write, not end: a client that half-closes first has its pending request aborted by Node.
        const socket = connect(Number(port), hostname, () => socket.write(Buffer.from(text, 'latin1')));
        let out = '';
        socket.on('data', (d) => (out += d));
        socket.on('end', () => resolve(out));
        socket.on('error', reject);
      });
    }

    it('an absolute-form request target is served like the origin form (RFC 9112, 3.2.2)', async () => {
      const { host } = new URL(server.url);
      const base = await rawText(`GET http://${host}/v2/ HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      assert.match(base, /^HTTP\/1\.1 200 /);
      const blob = await rawText(`HEAD http://${host}/v2/good/app/blobs/${BLOB.digest} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      assert.match(blob, /^HTTP\/1\.1 200 /);
      assert.match(blob, new RegExp(`docker-content-digest: ${BLOB.digest}`, 'i'));
      const tags = await rawText(`GET HTTP://${host}/v2/good/app/tags/list?n=1 HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      assert.match(tags, /^HTTP\/1\.1 200 /);
      const unknown = await rawText(`GET http://${host}/v2/good/app/blobs/${OTHER.digest} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      assert.match(unknown, /^HTTP\/1\.1 404 /);
    });
  });

  describe('valid edge cases', () => {
    it('a 255-character repository name works for push and pull', async () => {
      assert.equal(VALID_255.length, 255);
      const b = randomBlob(100);
      await client.pushBlob(VALID_255, b);
      const res = await client.getBlob(VALID_255, b.digest);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), b.data);
      const image = makeImage({ layers: 1 });
      await client.pushImage(VALID_255, image, 'latest');
      const tags = await client.fetch(`/v2/${VALID_255}/tags/list`);
      assert.deepEqual(await tags.json(), { name: VALID_255, tags: ['latest'] });
      const catalog = (await (await client.fetch('/v2/_catalog')).json()) as { repositories: string[] };
      assert.ok(catalog.repositories.includes(VALID_255));
    });

    it('names with the separators the grammar allows work', async () => {
      for (const name of ['a', 'a.b', 'a_b', 'a__b', 'a-b', 'a---b', '0/1/2/3', 'x.y-z__w/v']) {
        const b = randomBlob(16);
        await client.pushBlob(name, b);
        assert.equal((await client.getBlob(name, b.digest)).status, 200, name);
      }
    });

    it('a mount whose from is form-encoded (%2F, as Docker\'s client sends it) mounts from the nested repository', async () => {
      // In a query string %2F is how form encoding writes "/": unlike in the path, it is a separator here.
      const res = await client.fetch(`/v2/good/mounted/blobs/uploads/?mount=${BLOB.digest}&from=good%2Fapp`, { method: 'POST' });
      assert.equal(res.status, 201);
      assert.equal((await client.fetch(`/v2/good/mounted/blobs/${BLOB.digest}`, { method: 'HEAD' })).status, 200);
    });

    it('a mount whose from is not a valid name falls back to a 202 upload', async () => {
      const res = await client.fetch(`/v2/good/app/blobs/uploads/?mount=${OTHER.digest}&from=Bad/..Name`, { method: 'POST' });
      assert.equal(res.status, 202);
      assert.match(res.headers.get('location')!, /^\/v2\/good\/app\/blobs\/uploads\/[A-Za-z0-9_-]+$/);
    });

    it('the upload every refused request left alone still completes with exactly its bytes', async () => {
      const res = await client.fetch(withQuery(upload, `digest=${OTHER.digest}`), {
        method: 'PUT',
        headers: { 'Content-Range': '10-127' },
        body: bytes(OTHER.data.subarray(10)),
      });
      assert.equal(res.status, 201, await res.clone().text());
      const get = await client.getBlob('good/app', OTHER.digest);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), OTHER.data);
    });
  });
});
