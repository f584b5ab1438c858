/**
 * The pull-through cache with real clients and real upstreams on loopback:
 * - a second Berth with auth on as upstream (the Docker token flow, as
 *   dockerd does it), with credentials from a file, and `--proxy URL` with
 *   credentials from the environment;
 * - skopeo and podman pulling through a prefixed namespace of a
 *   docker-registry upstream;
 * - a dockerd of its own with Berth as its `registry-mirrors`, pulling an
 *   image that exists only upstream.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authDir, basic, writeHtpasswd } from '../helpers/auth.js';
import { buildImage, clientUnavailableReason, podmanEnv, requireClient, run, uniqueName, type BuiltImage } from '../helpers/clients.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { pushBlobTo, pushManifestTo, startCountingRelay, startDistribution, type CountingRelay, type DistributionRegistry } from '../helpers/upstreams.js';
import { MANIFEST_ACCEPT } from './support.js';

async function pushBuilt(url: string, repo: string, img: BuiltImage, tag: string, headers: Record<string, string> = {}): Promise<void> {
  await pushBlobTo(url, repo, img.configBytes, img.config.digest, headers);
  for (const l of img.layers) await pushBlobTo(url, repo, l.blob, l.descriptor.digest, headers);
  await pushManifestTo(url, repo, tag, img.manifestBytes, img.manifest.mediaType, headers);
}

async function pullOverHttp(url: string, repo: string, tag: string, img: BuiltImage): Promise<string | null> {
  const m = await fetch(`${url}/v2/${repo}/manifests/${tag}`, { headers: { Accept: MANIFEST_ACCEPT } });
  const body = await m.text();
  assert.equal(m.status, 200, body);
  assert.equal(m.headers.get('docker-content-digest'), img.manifest.digest);
  for (const d of [img.config.digest, ...img.layers.map((l) => l.descriptor.digest)]) {
    const b = await fetch(`${url}/v2/${repo}/blobs/${d}`);
    const bytes = Buffer.from(await b.arrayBuffer());
    assert.equal(b.status, 200);
    assert.equal(`sha256:${(await import('node:crypto')).createHash('sha256').update(bytes).digest('hex')}`, d);
  }
  return m.headers.get('x-berth-cache');
}

describe('pull-through from a Berth with auth on (token flow)', () => {
  const USERS = { writer: 'writer-secret-1', mirror: 'mirror-secret-2' };
  let upstream: TestServer;
  let relay: CountingRelay;
  let cache: TestServer | undefined;
  let flagCache: TestServer | undefined;
  const img = buildImage({ layers: ['hello from upstream', 'second layer'] });

  before(async () => {
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), USERS);
    writeFileSync(
      join(dir, 'upstream.yaml'),
      `auth:\n  htpasswd: ${join(dir, 'htpasswd')}\n  rules:\n    - { repositories: ["**"], users: [writer], actions: [pull, push] }\n    - { repositories: ["**"], users: [mirror], actions: [pull] }\n`,
    );
    upstream = await startServer({ args: ['--config', join(dir, 'upstream.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    await pushBuilt(upstream.url, 'corp/app', img, 'v1', { Authorization: basic('writer', USERS.writer) });
    relay = await startCountingRelay(upstream.url);
    writeFileSync(join(dir, 'mirror-password'), `${USERS.mirror}\n`);
    writeFileSync(join(dir, 'cache.yaml'), `mirrors:\n  - url: ${relay.url}\n    prefix: corp.example\n    username: mirror\n    passwordFile: ${join(dir, 'mirror-password')}\n`);
    cache = await startServer({ args: ['--config', join(dir, 'cache.yaml')] });
  });
  after(async () => {
    await cache?.stop();
    await flagCache?.stop();
    await relay?.close();
    await upstream?.stop();
  });

  it('fetches with a token from the realm the challenge names, credentials from a file', async () => {
    assert.equal(await pullOverHttp(cache!.url, 'corp.example/corp/app', 'v1', img), 'miss');
    assert.ok(relay.requests.some((r) => r.startsWith('GET /auth/token?') && r.includes('scope=repository%3Acorp%2Fapp%3Apull')), relay.requests.join('\n'));
    // The token is reused: one token request for the whole pull.
    assert.equal(relay.requests.filter((r) => r.startsWith('GET /auth/token?')).length, 1, relay.requests.join('\n'));
  });

  it('`--proxy URL` mirrors every name, with credentials from the environment (and without them, a clear error)', async () => {
    flagCache = await startServer({ args: ['--proxy', upstream.url], env: { BERTH_PROXY_USERNAME: 'mirror', BERTH_PROXY_PASSWORD: USERS.mirror } });
    assert.equal(await pullOverHttp(flagCache.url, 'corp/app', 'v1', img), 'miss');
    const anonymous = await startServer({ args: ['--proxy', upstream.url] });
    try {
      const res = await fetch(`${anonymous.url}/v2/corp/app/manifests/v1`, { headers: { Accept: MANIFEST_ACCEPT } });
      const body = await res.text();
      assert.equal(res.status, 502, body);
      assert.match(body, /upstream .* could not be used: upstream answered 401/);
    } finally {
      await anonymous.stop();
    }
  });
});

describe('skopeo and podman pull through a prefixed namespace', () => {
  let upstream: DistributionRegistry | undefined;
  let cache: TestServer | undefined;
  let work: string;
  const img = buildImage({ layers: ['skopeo through the cache', Buffer.alloc(200_000, 7)] });

  before(async () => {
    if (clientUnavailableReason('docker-registry')) return;
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-pt-'));
    upstream = await startDistribution();
    await pushBuilt(upstream.url, 'tools/app', img, 'v1');
    writeFileSync(join(work, 'cache.yaml'), `mirrors:\n  - url: ${upstream.url}\n    prefix: ref.local\n`);
    cache = await startServer({ args: ['--config', join(work, 'cache.yaml')] });
  });
  after(async () => {
    await cache?.stop();
    await upstream?.stop(true);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('skopeo copy', async (t) => {
    if (!requireClient(t, 'skopeo') || !requireClient(t, 'docker-registry')) return;
    const dest = join(work, 'oci');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${cache!.host}/ref.local/tools/app:v1`, `oci:${dest}:v1`]);
    const index = JSON.parse(readFileSync(join(dest, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    assert.equal(index.manifests[0]!.digest, img.manifest.digest);
  });

  it('podman pull', async (t) => {
    if (!requireClient(t, 'podman') || !requireClient(t, 'docker-registry')) return;
    const ref = `${cache!.host}/ref.local/tools/app:v1`;
    const env = podmanEnv();
    try {
      await run('podman', ['pull', '--tls-verify=false', ref], { env, timeoutMs: 180_000 });
      const inspect = await run('podman', ['image', 'inspect', '--format', '{{.Digest}}', ref], { env });
      assert.equal(inspect.stdout.trim(), img.manifest.digest);
    } finally {
      await run('podman', ['rmi', '-f', ref], { env, allowFailure: true });
    }
  });
});

describe('dockerd with Berth as its registry-mirrors', () => {
  let upstream: DistributionRegistry | undefined;
  let cache: TestServer | undefined;
  let dockerd: ChildProcess | undefined;
  let dir: string;
  let socket: string;
  const name = uniqueName('mirrored');
  const img = buildImage({ layers: ['pulled by dockerd through its mirror'] });

  before(async () => {
    if (clientUnavailableReason('docker-registry') || clientUnavailableReason('docker') || process.getuid?.() !== 0) return;
    upstream = await startDistribution();
    // dockerd asks its mirror for Docker Hub names: `NAME` is `library/NAME`.
    await pushBuilt(upstream.url, `library/${name}`, img, 'v1');
    cache = await startServer({ args: ['--proxy', upstream.url] });
    dir = mkdtempSync('/tmp/bd-');
    socket = join(dir, 'd.sock');
    writeFileSync(join(dir, 'daemon.json'), '{}');
    dockerd = spawn(
      'dockerd',
      [
        `--config-file=${join(dir, 'daemon.json')}`,
        `--host=unix://${socket}`,
        `--data-root=${join(dir, 'data')}`,
        `--exec-root=${join(dir, 'x')}`,
        `--pidfile=${join(dir, 'pid')}`,
        '--storage-driver=vfs',
        '--iptables=false',
        '--ip-forward=false',
        '--ip-masq=false',
        '--bridge=none',
        `--registry-mirror=${cache.url}`,
        `--insecure-registry=${cache.host}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    dockerd.stderr!.on('data', (d) => (log += d));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const r = await run('docker', ['-H', `unix://${socket}`, 'version', '--format', '{{.Server.Version}}'], { allowFailure: true, timeoutMs: 10_000 });
      if (r.code === 0) break;
      if (dockerd.exitCode !== null || Date.now() > deadline) throw new Error(`second dockerd did not start: ${log.slice(-2000)}`);
      await new Promise((res) => setTimeout(res, 500));
    }
  });
  after(async () => {
    if (dockerd && dockerd.exitCode === null) {
      const exited = new Promise((r) => dockerd!.once('exit', r));
      dockerd.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    }
    await cache?.stop();
    await upstream?.stop(true);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('docker pull of an image that exists only upstream', async (t) => {
    if (!requireClient(t, 'docker') || !requireClient(t, 'docker-registry')) return;
    if (!dockerd) return void t.skip('a second dockerd needs root');
    const pulled = await run('docker', ['-H', `unix://${socket}`, 'pull', `${name}:v1`], { timeoutMs: 180_000 });
    assert.match(pulled.stdout, new RegExp(img.manifest.digest));
    // It came through Berth, which now holds it: a GET by digest is answered from the cache, not from upstream.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const m = await fetch(`${cache!.url}/v2/library/${name}/manifests/${img.manifest.digest}`, { headers: { Accept: MANIFEST_ACCEPT } });
      await m.arrayBuffer();
      assert.equal(m.status, 200);
      if (m.headers.get('x-berth-cache') === 'hit') break;
      assert.ok(Date.now() < deadline, 'the pulled image was not stored by Berth');
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.match(cache!.output(), /listening/);
  });
});
