/**
 * A fuzz test of the HTTP API: random and malformed requests (methods, paths,
 * query strings, headers, Authorization values, bodies, and raw bytes that are
 * not HTTP at all), first with auth on, as callers who may change nothing
 * (anonymous, a read-only user, wrong and forged credentials), then with auth
 * off. Nothing may answer 5xx or crash the server, and with auth on the
 * registry's state must be exactly as before.
 *
 * Budget: BERTH_FUZZ_REQUESTS (default 30000, split between the two phases)
 * and BERTH_FUZZ_SECONDS (default 50), whichever ends first; BERTH_FUZZ_SEED
 * replays a run.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authDir, basic, getToken, writeHtpasswd } from '../helpers/auth.js';
import { listFiles } from '../helpers/data-dir.js';
import { makeImage, RegistryClient, type Image } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

const TOTAL = Number(process.env.BERTH_FUZZ_REQUESTS ?? 30_000);
const SECONDS = Number(process.env.BERTH_FUZZ_SECONDS ?? 50);
const SEED = Number(process.env.BERTH_FUZZ_SEED ?? Date.now() % 1_000_000);
const CONCURRENCY = 24;

/** A small seeded PRNG (mulberry32), so a failing run can be replayed. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => next() < p;
  const str = (n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789-._/:%?&=#~!$@*+,;[]{}<>\\"\' ') => Array.from({ length: n }, () => alphabet[int(alphabet.length)]).join('');
  const buf = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  return { next, int, pick, chance, str, buf };
}
type Rng = ReturnType<typeof rng>;

interface Fixture {
  repos: string[];
  images: Image[];
  uploads: string[];
  /** Authorization values for the phase. */
  auths: (string | undefined)[];
}

function genName(r: Rng, f: Fixture): string {
  if (r.chance(0.5)) return r.pick(f.repos);
  return r.pick([
    () => r.pick(f.repos),
    () => `${r.pick(f.repos)}/${r.str(3, 'abc')}`,
    () => r.str(1 + r.int(20), 'abcdefghijklmnopqrstuvwxyz0123456789._-/'),
    () => r.str(1 + r.int(12)),
    () => 'A'.repeat(1 + r.int(300)),
    () => `${'a/'.repeat(r.int(200))}a`,
    () => r.pick(['..', '../etc', '%2e%2e', 'a//b', '/a', 'a/', '.', '_catalog', 'a%00b', 'é', 'a%2Fb', '%', '%zz', 'a\\b']),
  ])();
}

function genRef(r: Rng, f: Fixture): string {
  const image = r.pick(f.images);
  return r.pick([
    () => 'v1',
    () => image.digest,
    () => image.config.digest,
    () => image.layers[0]!.digest,
    () => `sha256:${randomBytes(32).toString('hex')}`,
    () => `sha512:${r.str(r.int(140), '0123456789abcdef')}`,
    () => `sha256:${r.str(r.int(70), '0123456789abcdefABCDEF')}`,
    () => r.str(r.int(140)),
    () => r.pick(f.uploads),
    () => r.pick(['', '%', '..', 'latest', 'a'.repeat(200), 'md5:abc', ':', 'sha256:']),
  ])();
}

function genQuery(r: Rng, f: Fixture): string {
  if (r.chance(0.4)) return '';
  const parts: string[] = [];
  for (let i = 0, n = 1 + r.int(3); i < n; i++) {
    parts.push(
      r.pick([
        () => `n=${r.pick(['0', '1', '-1', '99999999999', 'x', '1e3', ''])}`,
        () => `last=${encodeURIComponent(genName(r, f))}`,
        () => `digest=${encodeURIComponent(genRef(r, f))}`,
        () => `mount=${encodeURIComponent(genRef(r, f))}&from=${encodeURIComponent(genName(r, f))}`,
        () => `scope=${encodeURIComponent(`repository:${genName(r, f)}:${r.pick(['pull', 'push', '*', 'pull,push,delete', '', 'x'])}`)}`,
        () => `service=${r.pick(['berth', 'other', ''])}`,
        () => `artifactType=${encodeURIComponent(r.str(r.int(30)))}`,
        () => `dryRun=1&grace=${r.pick(['0', '1h', 'x', '-5'])}`,
        () => r.str(r.int(40)),
      ])(),
    );
  }
  return `?${parts.join('&')}`;
}

function genPath(r: Rng, f: Fixture): string {
  const name = genName(r, f);
  const ref = genRef(r, f);
  // Two thirds of the paths are registry endpoints (where authorization is decided), the rest anything.
  const registry = [
    () => `/v2/${name}/tags/list`,
    () => `/v2/${name}/manifests/${ref}`,
    () => `/v2/${name}/blobs/${ref}`,
    () => `/v2/${name}/blobs/uploads/`,
    () => `/v2/${name}/blobs/uploads/${ref}`,
    () => `/v2/${name}/referrers/${ref}`,
  ];
  const path = r.chance(0.66) ? r.pick(registry)() : r.pick([
    () => '/v2/',
    () => '/v2',
    () => '/v2/_catalog',
    ...registry, // the same six, in the same order: a seed still draws the same paths
    () => '/auth/token',
    () => '/auth/jwks.json',
    () => '/admin/gc',
    () => '/metrics',
    () => '/healthz',
    () => `/${r.str(r.int(50))}`,
    () => `/v2/${r.str(r.int(400))}`,
    () => '*',
  ])();
  // Only characters http.request accepts in a path (no spaces or control characters).
  return (path + genQuery(r, f)).replace(/[\s\u0000-\u001f\u007f-\uffff]/g, (c) => encodeURIComponent(c));
}

function genHeaders(r: Rng, f: Fixture): Record<string, string> {
  const h: Record<string, string> = {};
  const auth = r.pick(f.auths);
  if (auth !== undefined) h.authorization = auth;
  if (r.chance(0.2)) h.authorization = r.pick([
    () => `Basic ${r.str(r.int(60), 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=')}`,
    () => `Basic ${Buffer.from(`${r.str(r.int(10))}:${r.str(r.int(10))}`).toString('base64')}`,
    () => `Bearer ${r.str(r.int(300), 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.')}`,
    () => `Bearer ${Buffer.from(JSON.stringify({ alg: r.pick(['none', 'HS256', 'ES256', 'RS256', '']) })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'berth', aud: 'berth', exp: 9999999999, access: [{ type: 'repository', name: r.pick(f.repos), actions: ['*'] }] })).toString('base64url')}.${r.str(r.int(90), 'abc')}`,
    () => r.pick(['Basic', 'Bearer', 'Bearer ', 'Digest x', 'basic Og==', 'Basic Og==', 'NTLM abc', '']),
  ])();
  if (r.chance(0.3)) h['content-type'] = r.pick(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json', 'application/octet-stream', 'text/plain', r.str(r.int(40))]);
  if (r.chance(0.15)) h['content-range'] = r.pick(['0-0', '0-99', '5-2', 'bytes=0-10', '-', r.str(r.int(20), '0123456789-/ ')]);
  if (r.chance(0.1)) h.range = r.pick(['bytes=0-0', 'bytes=-5', 'bytes=10-1', 'bytes=0-', 'bytes=999999999-', r.str(r.int(20))]);
  if (r.chance(0.15)) h.accept = r.pick(['*/*', 'application/vnd.oci.image.index.v1+json', r.str(r.int(100))]);
  if (r.chance(0.05)) h['x-forwarded-for'] = r.pick(['1.2.3.4', '::1', r.str(r.int(30))]);
  if (r.chance(0.05)) h['x-forwarded-proto'] = r.pick(['https', 'gopher', '']);
  if (r.chance(0.03)) h['x-junk'] = 'x'.repeat(r.int(20_000)); // past the head limit sometimes
  if (r.chance(0.05)) h['x-' + r.str(1 + r.int(10), 'abcdefghij')] = r.str(r.int(100), 'abcdefghij0123456789 ;=,');
  return h;
}

function genBody(r: Rng, f: Fixture): Buffer | undefined {
  if (r.chance(0.5)) return undefined;
  return r.pick([
    () => Buffer.alloc(0),
    () => r.buf(r.int(2048)),
    () => r.pick(f.images).manifest,
    () => Buffer.from(JSON.stringify({ schemaVersion: r.pick([1, 2, '2', null]), mediaType: r.str(10), config: { digest: genRef(r, f), size: r.int(10) }, layers: r.chance(0.5) ? [] : 'x' })),
    () => Buffer.from(`{"schemaVersion":2,"layers":[${'{},'.repeat(r.int(100))}{}]}`),
    () => r.buf(64 * 1024 + r.int(64 * 1024)),
  ])();
}

interface Outcome {
  status?: number;
  error?: string;
}

function send(agent: Agent | false, server: TestServer, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<Outcome> {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve) => {
    let req;
    try {
      req = request({ host: hostname, port: Number(port), method, path, headers, agent, timeout: 15_000 }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode }));
        res.on('error', () => resolve({ status: res.statusCode }));
      });
    } catch (e) {
      resolve({ error: `client refused to send: ${(e as Error).message}` });
      return;
    }
    req.on('timeout', () => {
      req.destroy();
      resolve({ error: 'timeout' });
    });
    req.on('error', (e) => resolve({ error: e.message }));
    req.end(body);
  });
}

/** Bytes that are not (quite) HTTP, on a fresh connection; whatever comes back, the server must live. */
function sendRaw(server: TestServer, r: Rng): Promise<Outcome> {
  const { hostname, port } = new URL(server.url);
  const payload = r.pick([
    () => r.buf(1 + r.int(512)),
    () => Buffer.from(`GET /v2/ HTTP/1.1\r\nHost: x\r\n${r.str(r.int(100))}\r\n\r\n`),
    () => Buffer.from(`${r.str(1 + r.int(8), 'ABCDEFGHIJ')} /v2/${r.str(r.int(50))} HTTP/1.1\r\nHost: x\r\n\r\n`),
    () => Buffer.from(`PUT /v2/a/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: ${r.pick(['-1', 'abc', '99999999999999999999', '1, 2'])}\r\n\r\n{}`),
    () => Buffer.from(`POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${r.pick(['zz\r\n', '5\r\nab', 'FFFFFFFFFFFFFFFF\r\n'])}`),
    () => Buffer.from(`GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${'A'.repeat(r.int(40_000))}\r\n\r\n`),
    () => Buffer.from(`GET /v2/ HTTP/9.9\r\n\r\n`),
  ])();
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let head = '';
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve({});
    });
    socket.on('data', (d) => (head += d.toString('latin1')));
    socket.on('error', () => resolve({ status: parseStatus(head) }));
    socket.on('close', () => resolve({ status: parseStatus(head) }));
    socket.end(payload);
  });
}

function parseStatus(head: string): number | undefined {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  return m ? Number(m[1]) : undefined;
}

const METHODS = ['GET', 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO', 'get'];

interface Stats {
  sent: number;
  raw: number;
  statuses: Map<number, number>;
  failures: string[];
  clientErrors: number;
  retried: number;
  /** Connection-level errors by message (resets after a refused head, headers Node will not send…). */
  errorKinds: Map<string, number>;
}

async function fuzz(server: TestServer, f: Fixture, budget: number, deadline: number, seed: number): Promise<Stats> {
  const r = rng(seed);
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const stats: Stats = { sent: 0, raw: 0, statuses: new Map(), failures: [], clientErrors: 0, retried: 0, errorKinds: new Map() };
  let issued = 0;
  const worker = async () => {
    while (issued < budget && Date.now() < deadline) {
      issued++;
      let what: string;
      let out: Outcome;
      if (r.chance(0.05)) {
        what = 'raw bytes';
        out = await sendRaw(server, r);
        stats.raw++;
      } else {
        const method = r.pick(METHODS);
        const path = genPath(r, f);
        const headers = genHeaders(r, f);
        const body = genBody(r, f);
        what = `${method} ${path.slice(0, 200)} auth=${(headers.authorization ?? '').slice(0, 30)} body=${body?.length ?? '-'}`;
        out = await send(agent, server, method, path, headers, body);
        // A keep-alive connection the server closed after an earlier request (Node
        // closes one whose request body was refused unread) fails the next request
        // on it: send that one again on a fresh connection, so every request is answered.
        if (out.error && out.error !== 'timeout' && !out.error.startsWith('client refused')) {
          stats.retried++;
          out = await send(false, server, method, path, headers, body);
        }
      }
      stats.sent++;
      if (out.status !== undefined) stats.statuses.set(out.status, (stats.statuses.get(out.status) ?? 0) + 1);
      if (out.status !== undefined && out.status >= 500) stats.failures.push(`${out.status} for ${what}`);
      if (out.error === 'timeout') stats.failures.push(`no answer in 15 s for ${what}`);
      else if (out.error) {
        stats.clientErrors++;
        const kind = `${out.error.replace(/["'].*$/, '').slice(0, 40)}${process.env.BERTH_FUZZ_DEBUG ? ` [${what.split(' ')[0]}]` : ''}`;
        stats.errorKinds.set(kind, (stats.errorKinds.get(kind) ?? 0) + 1);
        if (process.env.BERTH_FUZZ_DEBUG) console.log('DEBUG', out.error, what.slice(0, 300));
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  agent.destroy();
  return stats;
}

function report(name: string, s: Stats): string {
  const statuses = [...s.statuses.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}:${v}`).join(' ');
  return `${name}: ${s.sent} requests (${s.raw} raw), seed ${SEED}; statuses ${statuses}; resent on a fresh connection ${s.retried}; connection-level errors after that ${s.clientErrors} (${[...s.errorKinds].map(([k, v]) => `${k}: ${v}`).join('; ')})`;
}

async function pushFixture(client: RegistryClient, repos: string[]): Promise<{ images: Image[]; uploads: string[] }> {
  const images: Image[] = [];
  const uploads: string[] = [];
  for (const repo of repos) {
    const image = makeImage();
    await client.pushImage(repo, image, 'v1');
    images.push(image);
    const location = await client.startUpload(repo);
    uploads.push(location.split('/').pop()!);
  }
  return { images, uploads };
}

describe('HTTP fuzz', () => {
  const started = Date.now();
  const deadline = started + SECONDS * 1000;

  describe('with auth on, as callers who may change nothing', () => {
    let server: TestServer;
    let rootClient: RegistryClient;
    const repos = ['public/app', 'team/app', 'x'];
    let fixture: Fixture;

    before(async () => {
      const dir = authDir();
      writeHtpasswd(join(dir, 'htpasswd'), { root: 'root-pw', reader: 'reader-pw' });
      writeFileSync(
        join(dir, 'berth.yaml'),
        `auth:
  htpasswd: ${join(dir, 'htpasswd')}
  rules:
    - { repositories: ["**"], users: [root], actions: ["*"] }
    - { repositories: ["**"], users: [reader], actions: [pull] }
    - { repositories: ["public/**"], anonymous: true, actions: [pull] }
  admins: { users: [root] }
`,
      );
      server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
      rootClient = new RegistryClient(server.url);
      rootClient.fetch = (path, init = {}) => fetch(server.url + path, { redirect: 'manual', ...init, headers: { authorization: basic('root', 'root-pw'), ...((init.headers as Record<string, string>) ?? {}) } });
      const { images, uploads } = await pushFixture(rootClient, repos);
      const readerToken = await getToken(server.url, basic('reader', 'reader-pw'), repos.map((r) => `repository:${r}:pull,push,delete`).concat('registry:catalog:*'));
      const anonToken = await getToken(server.url, undefined, repos.map((r) => `repository:${r}:*`));
      fixture = { repos, images, uploads, auths: [undefined, basic('reader', 'reader-pw'), basic('reader', 'wrong'), basic('root', 'nope'), `Bearer ${readerToken}`, `Bearer ${anonToken}`, 'Bearer x.y.z'] };
    });
    after(async () => {
      await server.stop();
    });

    async function snapshot(): Promise<unknown> {
      const tags: Record<string, unknown> = {};
      for (const repo of repos) tags[repo] = await (await rootClient.fetch(`/v2/${repo}/tags/list`)).json();
      const uploadState: Record<string, string | null> = {};
      for (const [i, id] of fixture.uploads.entries()) uploadState[id] = (await rootClient.fetch(`/v2/${repos[i]}/blobs/uploads/${id}`)).headers.get('range');
      return {
        catalog: await (await rootClient.fetch('/v2/_catalog')).json(),
        tags,
        uploadState,
        blobs: listFiles(join(server.dataDir, 'blobs')),
        uploads: listFiles(join(server.dataDir, 'uploads')),
      };
    }

    it('no 5xx, no crash, and the state is unchanged', async (t) => {
      const before = await snapshot();
      const stats = await fuzz(server, fixture, Math.ceil(TOTAL * 0.6), started + SECONDS * 1000 * 0.6, SEED);
      t.diagnostic(report('auth on', stats));
      assert.deepEqual(stats.failures.slice(0, 20), [], report('auth on', stats));
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200, 'the server still answers');
      assert.deepEqual(await snapshot(), before, 'refused requests changed nothing');
      assert.deepEqual(server.loggedErrors(), []);
      assert.ok(stats.sent >= Math.min(TOTAL * 0.6, 1000), `${stats.sent} requests`);
    });
  });

  describe('with auth off', () => {
    let server: TestServer;
    let fixture: Fixture;

    before(async () => {
      server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
      const repos = ['app', 'team/app'];
      const { images, uploads } = await pushFixture(new RegistryClient(server.url), repos);
      fixture = { repos, images, uploads, auths: [undefined, undefined, basic('a', 'b'), 'Bearer x'] };
    });
    after(async () => {
      await server.stop();
    });

    it('no 5xx and no crash', async (t) => {
      const stats = await fuzz(server, fixture, Math.floor(TOTAL * 0.4), deadline, SEED + 1);
      t.diagnostic(report('auth off', stats));
      assert.deepEqual(stats.failures.slice(0, 20), [], report('auth off', stats));
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200, 'the server still answers');
      assert.deepEqual(server.loggedErrors(), []);
    });
  });
});


