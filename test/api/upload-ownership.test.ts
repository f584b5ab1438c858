/**
 * From finding 6 of the security review: with auth on, an upload session
 * belongs to the principal that opened it (another user with push rights on
 * the same repository gets BLOB_UPLOAD_UNKNOWN for every method, as for a
 * session that does not exist), and one user cannot hold more than
 * limits.uploadSessionsPerUser open sessions.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authDir, basic, writeHtpasswd } from '../helpers/auth.js';
import { bytes, errorCode, randomBlob, withQuery } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

for (const limited of [false, true]) describe(`upload sessions with auth on${limited ? ', capped' : ''}`, () => {
  let server: TestServer;
  const alice = basic('alice', 'alice-pw');
  const bob = basic('bob', 'bob-pw');
  const call = (auth: string, path: string, init: RequestInit = {}) =>
    fetch(server.url + path, { ...init, headers: { authorization: auth, ...((init.headers as Record<string, string>) ?? {}) } });
  const start = async (auth: string) => {
    const res = await call(auth, '/v2/team/app/blobs/uploads/', { method: 'POST' });
    assert.equal(res.status, 202, await res.clone().text());
    return res.headers.get('location')!;
  };

  before(async () => {
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw', bob: 'bob-pw' });
    writeFileSync(
      join(dir, 'berth.yaml'),
      `auth:
  htpasswd: ${join(dir, 'htpasswd')}
  rules:
    - { repositories: ["team/**"], users: [alice, bob], actions: [pull, push, delete] }
${limited ? 'limits:\n  uploadSessionsPerUser: 3\n' : ''}`,
    );
    server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
  });
  after(async () => {
    assert.deepEqual(server.loggedErrors(), []);
    await server.stop();
  });

  if (!limited) it("are unknown to another user, whatever the method, and stay intact for their owner", async () => {
    const b = randomBlob(2048);
    const location = await start(alice);
    const first = b.data.subarray(0, 1024);
    assert.equal((await call(alice, location, { method: 'PATCH', body: bytes(first), headers: { 'content-type': 'application/octet-stream' } })).status, 202);

    const attempts: [string, RequestInit][] = [
      ['GET', {}],
      ['PATCH', { body: bytes(Buffer.from('bob was here')), headers: { 'content-type': 'application/octet-stream' } }],
      ['PUT', { body: bytes(b.data.subarray(1024)), headers: { 'content-type': 'application/octet-stream' } }],
      ['DELETE', {}],
    ];
    for (const [method, init] of attempts) {
      const path = method === 'PUT' ? withQuery(location, `digest=${b.digest}`) : location;
      const res = await call(bob, path, { method, ...init });
      assert.equal(res.status, 404, `${method} by another user`);
      if (method !== 'GET') assert.equal(await errorCode(res), 'BLOB_UPLOAD_UNKNOWN');
      assert.equal(res.headers.get('range'), null, 'nothing about the session leaks');
    }
    const status = await call(alice, location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-1023', "the owner's bytes are untouched");
    const done = await call(alice, withQuery(location, `digest=${b.digest}`), { method: 'PUT', body: bytes(b.data.subarray(1024)), headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(done.status, 201);
  });

  if (limited) it('are capped per user, with a clear error, and free again when one ends', async () => {
    const open = [await start(alice), await start(alice), await start(alice)];
    const over = await call(alice, '/v2/team/app/blobs/uploads/', { method: 'POST' });
    assert.equal(over.status, 429);
    const body = (await over.json()) as { errors: { code: string; message: string }[] };
    assert.equal(body.errors[0]!.code, 'TOOMANYREQUESTS');
    assert.match(body.errors[0]!.message, /at most 3 per user/);
    // A mount that falls back to an upload opens a session too.
    assert.equal((await call(alice, `/v2/team/app/blobs/uploads/?mount=${randomBlob(10).digest}&from=team/other`, { method: 'POST' })).status, 429);
    // Another user has a count of its own.
    await start(bob);
    assert.equal((await call(alice, open[0]!, { method: 'DELETE' })).status, 204);
    await start(alice);
  });
});
