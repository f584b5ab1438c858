/**
 * Hardening with auth on: failed-login rate limiting per (client, user) that
 * decays and cannot lock a user out from elsewhere; X-Forwarded-For believed
 * only from trusted proxies; htpasswd reloaded on change; no secret in the
 * logs; security headers; the request-head limit; concurrent uploads per
 * client; the quick start (--htpasswd alone); admin endpoints.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authDir, basic, getToken, writeHtpasswd } from '../helpers/auth.js';
import { makeImage, RegistryClient } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function authed(server: TestServer, auth: string): RegistryClient {
  const c = new RegistryClient(server.url);
  c.fetch = (path, init = {}) => fetch(server.url + path, { redirect: 'manual', ...init, headers: { authorization: auth, ...((init.headers as Record<string, string>) ?? {}) } });
  return c;
}

describe('hardening', () => {
  let server: TestServer;
  let dir: string;
  const get = (path: string, headers: Record<string, string> = {}) => fetch(server.url + path, { headers });

  before(async () => {
    dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw', root: 'root-pw' });
    writeFileSync(
      join(dir, 'berth.yaml'),
      `auth:
  htpasswd: ${join(dir, 'htpasswd')}
  failedLogins: 5
  failedLoginDecay: 30s
  rules:
    - { repositories: ["**"], users: ["*"], actions: [pull, push, delete] }
  admins: { users: [root] }
proxy:
  trusted: [127.0.0.1]
limits:
  maxHeaderBytes: 8192
  uploadsPerClient: 2
`,
    );
    server = await startServer({ args: ['--config', join(dir, 'berth.yaml'), '--log-level', 'trace'], env: { BERTH_GC_ENABLED: 'false' } });
  });
  after(async () => {
    assert.deepEqual(server.loggedErrors(), []);
    await server.stop();
  });

  it('rate limits failed logins per (client, user), decaying, without locking the user out elsewhere', async () => {
    const attacker = { 'x-forwarded-for': '10.0.0.66' };
    for (let i = 0; i < 5; i++) assert.equal((await get('/v2/', { ...attacker, authorization: basic('alice', `guess-${i}`) })).status, 401);
    const limited = await get('/v2/', { ...attacker, authorization: basic('alice', 'guess-5') });
    assert.equal(limited.status, 429);
    assert.match(limited.headers.get('retry-after') ?? '', /^\d+$/);
    // Even the right password is not checked from the attacker's address now…
    assert.equal((await get('/v2/', { ...attacker, authorization: basic('alice', 'alice-pw') })).status, 429);
    // …but alice from her own address is not affected, nor another user from the attacker's.
    assert.equal((await get('/v2/', { 'x-forwarded-for': '10.0.0.7', authorization: basic('alice', 'alice-pw') })).status, 200);
    assert.equal((await get('/v2/', { ...attacker, authorization: basic('root', 'root-pw') })).status, 200);
    // The token endpoint shares the limit.
    assert.equal((await fetch(`${server.url}/auth/token?service=berth`, { headers: { ...attacker, authorization: basic('alice', 'x') } })).status, 429);
    // The score decays (by a factor e per 30 s here): the lockout ends by
    // itself, when Retry-After said (the decay is slow enough that a loaded
    // machine cannot lift the lockout before the checks above).
    await sleep(Number(limited.headers.get('retry-after')) * 1000 + 300);
    assert.equal((await get('/v2/', { ...attacker, authorization: basic('alice', 'alice-pw') })).status, 200);
  });

  it('reloads the htpasswd file when it changes', async () => {
    assert.equal((await get('/v2/', { authorization: basic('bob', 'bob-pw') })).status, 401);
    assert.equal((await get('/v2/', { authorization: basic('alice', 'alice-pw') })).status, 200);
    writeHtpasswd(join(dir, 'htpasswd'), { bob: 'bob-pw', root: 'root-pw' });
    await sleep(1200);
    assert.equal((await get('/v2/', { authorization: basic('bob', 'bob-pw') })).status, 200, 'a user added to the file can log in');
    assert.equal((await get('/v2/', { authorization: basic('alice', 'alice-pw') })).status, 401, 'a removed user cannot, even with a cached check');
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw', root: 'root-pw' });
    await sleep(1200);
  });

  it('stops accepting a changed password within seconds, even where the login was cached', async () => {
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw', root: 'root-pw' });
    await sleep(1500);
    assert.equal((await get('/v2/', { authorization: basic('alice', 'alice-pw') })).status, 200, 'checked and cached');
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'new-alice-pw', root: 'root-pw' });
    await sleep(2500);
    // No other login in between: the file is watched, not re-read by the next uncached check.
    assert.equal((await get('/v2/', { authorization: basic('alice', 'alice-pw') })).status, 401, 'the old password is refused');
    assert.equal((await get('/v2/', { authorization: basic('alice', 'new-alice-pw') })).status, 200);
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw', root: 'root-pw' });
    await sleep(2500);
    assert.equal((await get('/v2/', { authorization: basic('alice', 'alice-pw') })).status, 200);
  });

  it('without auth.token.realm, sends no remote client to a realm named by its request headers', async () => {
    const spoofed = { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' };
    const res = await get('/v2/a/b/tags/list', spoofed);
    assert.equal(res.status, 401);
    const challenge = res.headers.get('www-authenticate') ?? '';
    assert.ok(!challenge.includes('evil.example'), challenge);
    assert.match(challenge, /^Basic realm="berth"/, 'a remote client is asked for Basic credentials');
    // A loopback client still gets a token realm (local tools, tests).
    assert.match((await get('/v2/')).headers.get('www-authenticate') ?? '', /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/auth\/token"/);
  });

  it('opens /v2/ to no anonymous token when no rule grants anonymous access', async () => {
    const anonymous = await getToken(server.url, undefined, []);
    const res = await get('/v2/', { authorization: `Bearer ${anonymous}` });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
    const alice = await getToken(server.url, basic('alice', 'alice-pw'), []);
    assert.equal((await get('/v2/', { authorization: `Bearer ${alice}` })).status, 200);
  });

  it('writes no secret to the logs, even at trace level', async () => {
    const token = await getToken(server.url, basic('alice', 'alice-pw'), ['repository:a/b:pull,push']);
    await authed(server, `Bearer ${token}`).pushImage('a/b', makeImage(), 'v1');
    await get('/v2/a/b/tags/list', { authorization: basic('alice', 'wrong-password-xyz') });
    await get('/v2/a/b/tags/list', { authorization: `Bearer ${token.slice(0, -3)}abc` });
    const out = server.output();
    assert.match(out, /"msg":"request"/, 'the request log is on');
    for (const secret of ['alice-pw', 'wrong-password-xyz', Buffer.from('alice:alice-pw').toString('base64'), token, token.split('.')[2]!]) {
      assert.ok(!out.includes(secret), `the log contains a secret: ${secret.slice(0, 12)}…`);
    }
  });

  it('sends security headers on every response', async () => {
    for (const res of [await get('/v2/'), await get('/healthz'), await get('/v2/a/b/tags/list', { authorization: basic('alice', 'alice-pw') }), await get('/nothing')]) {
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    }
    const token = await fetch(`${server.url}/auth/token?service=berth`, { headers: { authorization: basic('alice', 'alice-pw') } });
    assert.equal(token.headers.get('cache-control'), 'no-store');
  });

  it('refuses a request head over the limit with 431', async () => {
    const res = await new Promise<number>((resolve, reject) => {
      const { hostname, port } = new URL(server.url);
      const req = request({ host: hostname, port: Number(port), path: '/v2/', headers: { 'x-big': 'x'.repeat(9000) }, agent: false }, (r) => {
        r.resume();
        resolve(r.statusCode!);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(res, 431);
  });

  it('caps concurrent uploads per client and frees the slots when they end', async () => {
    const auth = basic('alice', 'alice-pw');
    const c = authed(server, auth);
    const { hostname, port } = new URL(server.url);
    const open: ReturnType<typeof request>[] = [];
    for (let i = 0; i < 2; i++) {
      const location = await c.startUpload('up/load');
      const req = request({ host: hostname, port: Number(port), method: 'PATCH', path: location, headers: { authorization: auth, 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }, agent: false });
      req.on('error', () => {});
      req.write(Buffer.alloc(1024));
      open.push(req);
    }
    await sleep(300);
    const third = await c.fetch('/v2/up/load/blobs/uploads/', { method: 'POST' });
    assert.equal(third.status, 429);
    assert.equal((await c.fetch('/v2/up/load/tags/list')).status !== 429, true, 'reads are not limited');
    // Another user from the same address has its own slots.
    assert.equal((await authed(server, basic('root', 'root-pw')).fetch('/v2/up/load/blobs/uploads/', { method: 'POST' })).status, 202);
    for (const req of open) req.destroy();
    await sleep(300);
    assert.equal((await c.fetch('/v2/up/load/blobs/uploads/', { method: 'POST' })).status, 202);
  });

  it('admin endpoints need an admin', async () => {
    assert.equal((await fetch(`${server.url}/admin/gc?dryRun=1`, { method: 'POST' })).status, 401);
    assert.equal((await fetch(`${server.url}/admin/gc?dryRun=1`, { method: 'POST', headers: { authorization: basic('alice', 'alice-pw') } })).status, 403);
    assert.equal((await fetch(`${server.url}/admin/gc?dryRun=1`, { method: 'POST', headers: { authorization: basic('root', 'root-pw') } })).status, 200);
    assert.equal((await get('/metrics')).status, 401);
    assert.equal((await get('/metrics', { authorization: basic('root', 'root-pw') })).status, 200);
    assert.equal((await get('/healthz')).status, 200, 'health stays public');
  });
});

describe('X-Forwarded-For from an untrusted peer', () => {
  it('is ignored: spoofing it does not escape the failed-login limit', async () => {
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw' });
    writeFileSync(join(dir, 'berth.yaml'), `auth:\n  htpasswd: ${join(dir, 'htpasswd')}\n  failedLogins: 3\n`);
    const server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        statuses.push((await fetch(`${server.url}/v2/`, { headers: { 'x-forwarded-for': `10.1.1.${i}`, authorization: basic('alice', 'nope') } })).status);
      }
      assert.deepEqual(statuses, [401, 401, 401, 429, 429, 429]);
    } finally {
      await server.stop();
    }
  });
});

describe('quick start: berth serve --htpasswd FILE', () => {
  it('every user pulls, pushes and deletes everywhere; anonymous gets 401; admin API on loopback only', async () => {
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), { ann: 'ann-pw', ben: 'ben-pw' });
    const server = await startServer({ args: ['--htpasswd', join(dir, 'htpasswd')], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const res = await fetch(`${server.url}/v2/`);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/auth\/token",service="berth"$/);
      const image = makeImage();
      await authed(server, basic('ann', 'ann-pw')).pushImage('any/where', image, 'v1');
      const token = await getToken(server.url, basic('ben', 'ben-pw'), ['repository:any/where:pull,push,delete']);
      assert.equal((await fetch(`${server.url}/v2/any/where/manifests/v1`, { headers: { authorization: `Bearer ${token}`, accept: image.mediaType } })).status, 200);
      assert.equal((await fetch(`${server.url}/v2/any/where/manifests/v1`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } })).status, 202);
      assert.equal((await fetch(`${server.url}/v2/any/where/tags/list`)).status, 401);
      // No admins configured: the admin API keeps answering loopback clients, as without auth.
      assert.equal((await fetch(`${server.url}/admin/gc?dryRun=1`, { method: 'POST' })).status, 200);
      assert.equal((await fetch(`${server.url}/metrics`)).status, 200);
      // The generated signing key is kept in the data directory, private.
      const { statSync } = await import('node:fs');
      assert.equal(statSync(join(server.dataDir, 'auth', 'token-signing-key.pem')).mode & 0o077, 0);
    } finally {
      await server.stop();
    }
  });
});

describe('Basic-only mode (auth.token.enabled: false)', () => {
  it('challenges with Basic, serves no token endpoint, and accepts Basic credentials', async () => {
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw' });
    writeFileSync(join(dir, 'berth.yaml'), `auth:\n  htpasswd: ${join(dir, 'htpasswd')}\n  token:\n    enabled: false\n`);
    const server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const res = await fetch(`${server.url}/v2/a/b/tags/list`);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="berth"/);
      assert.equal((await fetch(`${server.url}/auth/token?service=berth`, { headers: { authorization: basic('alice', 'alice-pw') } })).status, 404);
      await authed(server, basic('alice', 'alice-pw')).pushImage('a/b', makeImage(), 'v1');
      assert.equal((await authed(server, basic('alice', 'alice-pw')).fetch('/v2/a/b/tags/list')).status, 200);
      // A self-made token is not accepted: no key signs or verifies Berth tokens in this mode.
      assert.equal((await fetch(`${server.url}/v2/`, { headers: { authorization: 'Bearer a.b.c' } })).status, 401);
      assert.ok(!(await import('node:fs')).existsSync(join(server.dataDir, 'auth')), 'no signing key generated');
    } finally {
      await server.stop();
    }
  });
});

describe('limits without auth', () => {
  it('applies limits.maxHeaderBytes, and adds nothing else to the responses', async () => {
    const dir = authDir();
    writeFileSync(join(dir, 'berth.yaml'), 'limits:\n  maxHeaderBytes: 4096\n');
    const server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const status = (headers: Record<string, string>) =>
        new Promise<{ status: number; frame: unknown }>((resolve, reject) => {
          const { hostname, port } = new URL(server.url);
          const req = request({ host: hostname, port: Number(port), path: '/v2/', headers, agent: false }, (r) => {
            r.resume();
            resolve({ status: r.statusCode!, frame: r.headers['x-frame-options'] });
          });
          req.on('error', reject);
          req.end();
        });
      assert.equal((await status({ 'x-big': 'x'.repeat(5000) })).status, 431);
      const ok = await status({});
      assert.equal(ok.status, 200, 'auth stays off');
      assert.equal(ok.frame, undefined);
    } finally {
      await server.stop();
    }
  });
});
