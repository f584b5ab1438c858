/**
 * The pull-through cache against a real upstream on loopback (Debian's
 * `docker-registry`, CNCF distribution), with a counting relay in front of
 * it so that every upstream request is counted where it arrives.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { clientUnavailableReason } from '../helpers/clients.js';
import { blob, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256, type Blob } from '../helpers/registry-client.js';
import { pauseControl } from '../helpers/pause.js';
import { makeDataDir, startServer, type TestServer } from '../helpers/server.js';
import { pushBlobTo, pushManifestTo, startCountingRelay, startDistribution, type CountingRelay, type DistributionRegistry } from '../helpers/upstreams.js';

const ACCEPT = [OCI_MANIFEST, 'application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');
const MiB = 1024 * 1024;
const TTL = 3100;

interface TestImage {
  config: Blob;
  layers: Blob[];
  manifest: Buffer;
  digest: string;
}

function image(layers: Buffer[]): TestImage {
  const config = blob(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') }));
  const bs = layers.map((l) => blob(l));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: bs.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.size })),
    }),
  );
  return { config, layers: bs, manifest, digest: sha256(manifest) };
}

async function pushUpstream(url: string, repo: string, img: TestImage, tag: string, headers: Record<string, string> = {}): Promise<void> {
  for (const b of [img.config, ...img.layers]) await pushBlobTo(url, repo, b.data, b.digest, headers);
  await pushManifestTo(url, repo, tag, img.manifest, OCI_MANIFEST, headers);
}

async function getDigestOfBody(url: string, signal?: AbortSignal): Promise<{ status: number; digest: string; cache: string | null; length: number }> {
  const res = await fetch(url, { signal });
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    length += chunk.length;
  }
  return { status: res.status, digest: `sha256:${hash.digest('hex')}`, cache: res.headers.get('x-berth-cache'), length };
}

async function manifestOf(url: string, repo: string, ref: string): Promise<{ status: number; digest: string | null; cache: string | null; warning: string | null; body: string }> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${ref}`, { headers: { Accept: ACCEPT } });
  return { status: res.status, digest: res.headers.get('docker-content-digest'), cache: res.headers.get('x-berth-cache'), warning: res.headers.get('warning'), body: await res.text() };
}

/** Waits until Berth has recorded the tag locally (a manifest is stored once its blobs are): a tag GET is then a hit. */
async function waitCached(berth: TestServer, repo: string, ref: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = await manifestOf(berth.url, repo, ref);
    if (m.status === 200 && m.cache === 'hit') return;
    if (Date.now() > deadline) throw new Error(`${repo}:${ref} was not cached in time: ${m.status} ${m.cache} ${m.body}\n${berth.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const noRegistry = clientUnavailableReason('docker-registry');

describe('pull-through cache in front of docker-registry', { skip: noRegistry ?? false }, () => {
  let upstream: DistributionRegistry;
  let relay: CountingRelay;
  let berth: TestServer;
  let big: TestImage;

  before(async () => {
    upstream = await startDistribution();
    relay = await startCountingRelay(upstream.url);
    big = image([randomBytes(64 * MiB), randomBytes(2048)]);
    await pushUpstream(upstream.url, 'team/app', big, 'v1');
    const dataDir = makeDataDir();
    const config = join(dataDir, 'berth.yml');
    writeFileSync(config, `mirrors:\n  - url: ${relay.url}\n    prefix: up\n    tagTtl: 3s\n    checkTimeout: 1s\n`);
    berth = await startServer({ dataDir, args: ['--config', config] });
  });

  after(async () => {
    await berth?.stop();
    await relay?.close();
    await upstream?.stop(true);
  });

  test('16 concurrent GETs of one cold 64 MiB layer make one upstream fetch, and all get the verified bytes', async () => {
    const layer = big.layers[0]!;
    const results = await Promise.all(Array.from({ length: 16 }, () => getDigestOfBody(`${berth.url}/v2/up/team/app/blobs/${layer.digest}`)));
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.length, layer.size);
      assert.equal(r.digest, layer.digest);
    }
    assert.equal(relay.blobGets(layer.digest), 1, `upstream blob GETs: ${relay.requests.join(', ')}`);
    // Now it is a blob of Berth's own: answered without upstream.
    const again = await getDigestOfBody(`${berth.url}/v2/up/team/app/blobs/${layer.digest}`);
    assert.equal(again.cache, 'hit');
    assert.equal(relay.blobGets(layer.digest), 1);
  });

  test('a tag pulls through, is stored with its blobs, and then pulls with the upstream stopped (served stale)', async () => {
    const m = await manifestOf(berth.url, 'up/team/app', 'v1');
    assert.equal(m.status, 200, m.body);
    assert.equal(m.digest, big.digest);
    assert.equal(m.cache, 'miss');
    await waitCached(berth, 'up/team/app', 'v1');
    for (const b of [big.config, ...big.layers]) assert.equal((await getDigestOfBody(`${berth.url}/v2/up/team/app/blobs/${b.digest}`)).digest, b.digest);
    // One fetch per blob in all, though both the background store and clients wanted them.
    for (const b of [big.config, ...big.layers]) assert.equal(relay.blobGets(b.digest), 1, b.digest);

    await upstream.stop();
    try {
      await new Promise((r) => setTimeout(r, TTL)); // past the tag TTL: a re-check is due, and fails
      const stale = await manifestOf(berth.url, 'up/team/app', 'v1');
      assert.equal(stale.status, 200, stale.body);
      assert.equal(stale.digest, big.digest);
      assert.equal(stale.cache, 'stale');
      assert.match(stale.warning ?? '', /110/);
      const byDigest = await manifestOf(berth.url, 'up/team/app', big.digest);
      assert.equal(byDigest.status, 200);
      assert.equal(byDigest.cache, 'hit', 'a digest is never re-checked');
      // Not cached and upstream down: a clear error, not a 500.
      const missing = await manifestOf(berth.url, 'up/team/other', 'v1');
      assert.equal(missing.status, 502, missing.body);
      assert.match(missing.body, /upstream/);
    } finally {
      await upstream.restart();
    }
  });

  test('a rate-limiting (429) or slow upstream: the cached tag is served stale', async () => {
    await new Promise((r) => setTimeout(r, TTL));
    relay.failWith = 429;
    try {
      const m = await manifestOf(berth.url, 'up/team/app', 'v1');
      assert.equal(m.status, 200, m.body);
      assert.equal(m.cache, 'stale');
    } finally {
      relay.failWith = undefined;
    }
    relay.delayMs = 2500; // past checkTimeout (1s)
    try {
      const m = await manifestOf(berth.url, 'up/team/app', 'v1');
      assert.equal(m.status, 200, m.body);
      assert.equal(m.cache, 'stale');
    } finally {
      relay.delayMs = 0;
    }
  });

  test('a tag moved upstream is seen once its TTL has passed', async () => {
    // Confirmed now: within the TTL the cached digest is served without asking upstream.
    let m = await manifestOf(berth.url, 'up/team/app', 'v1');
    assert.equal(m.digest, big.digest);
    assert.equal(m.cache, 'hit', 'confirmed upstream');
    const moved = image([randomBytes(4096)]);
    await pushUpstream(upstream.url, 'team/app', moved, 'v1');
    m = await manifestOf(berth.url, 'up/team/app', 'v1');
    assert.equal(m.digest, big.digest, 'within the TTL');
    assert.equal(m.cache, 'hit');
    await new Promise((r) => setTimeout(r, TTL));
    m = await manifestOf(berth.url, 'up/team/app', 'v1');
    assert.equal(m.status, 200, m.body);
    assert.equal(m.digest, moved.digest, `after the TTL (${m.cache}): ${berth.output().slice(-1500)}`);
    assert.equal(m.cache, 'miss');
    await waitCached(berth, 'up/team/app', 'v1');
    assert.equal((await manifestOf(berth.url, 'up/team/app', 'v1')).digest, moved.digest);
  });

  test('a client that disconnects mid-pull does not abort the fetch the others wait on', async () => {
    const img = image([randomBytes(32 * MiB)]);
    await pushUpstream(upstream.url, 'team/cut', img, 'v1');
    const layer = img.layers[0]!;
    relay.delayMs = 300; // everyone joins before the first byte
    const url = `${berth.url}/v2/up/team/cut/blobs/${layer.digest}`;
    try {
      const quitter = new AbortController();
      const quitting = (async () => {
        const res = await fetch(url, { signal: quitter.signal });
        const reader = res.body!.getReader();
        await reader.read(); // some bytes, then gone
        quitter.abort();
      })().catch(() => undefined);
      const others = Array.from({ length: 3 }, () => getDigestOfBody(url));
      await quitting;
      for (const r of await Promise.all(others)) {
        assert.equal(r.status, 200);
        assert.equal(r.digest, layer.digest);
      }
    } finally {
      relay.delayMs = 0;
    }
    assert.equal(relay.blobGets(layer.digest), 1);
    assert.equal((await getDigestOfBody(url)).cache, 'hit');
  });

  test('blob bytes reach the client while the upstream fetch is still under way', async () => {
    const img = image([randomBytes(8 * MiB)]);
    await pushUpstream(upstream.url, 'team/stream', img, 'v1');
    const layer = img.layers[0]!;
    relay.stallAfter = 1 * MiB;
    const before = relay.bytes;
    try {
      const res = await fetch(`${berth.url}/v2/up/team/stream/blobs/${layer.digest}`);
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      // Upstream is held after 1 MiB: a first chunk can only come from the fetch in flight.
      const firstChunk = await Promise.race([reader.read(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no byte before the fetch ended')), 10_000))]);
      assert.ok(firstChunk.value && firstChunk.value.length > 0);
      assert.ok(relay.bytes - before < layer.size, 'upstream has not sent the whole blob yet');
      relay.release();
      const hash = createHash('sha256').update(firstChunk.value);
      for (let r = await reader.read(); !r.done; r = await reader.read()) hash.update(r.value);
      assert.equal(`sha256:${hash.digest('hex')}`, layer.digest);
    } finally {
      relay.release();
    }
  });

  test('wrong bytes from upstream never become a blob, and no client gets a whole body of them', async () => {
    const img = image([randomBytes(3 * MiB)]);
    await pushUpstream(upstream.url, 'team/bad', img, 'v1');
    const layer = img.layers[0]!;
    const url = `${berth.url}/v2/up/team/bad/blobs/${layer.digest}`;
    relay.corrupt = true;
    try {
      const r = await getDigestOfBody(url).catch((e: Error) => ({ status: 0, digest: '', length: -1, cache: e.message }));
      assert.notEqual(r.length, layer.size, 'the body is cut short');
    } finally {
      relay.corrupt = false;
    }
    // Not stored: the next pull fetches again, and gets the right bytes.
    const r = await getDigestOfBody(url);
    assert.equal(r.digest, layer.digest);
    assert.equal(r.cache, 'miss');
    assert.equal(relay.blobGets(layer.digest), 2);
  });

  test('pushes to a cached namespace are refused; hosted repositories live beside it', async () => {
    const refused = await fetch(`${berth.url}/v2/up/team/app/blobs/uploads/`, { method: 'POST' });
    assert.equal(refused.status, 403);
    assert.match(await refused.text(), /pull-through cache/);
    const img = image([randomBytes(100)]);
    const put = await fetch(`${berth.url}/v2/up/team/app/manifests/x`, { method: 'PUT', headers: { 'Content-Type': OCI_MANIFEST }, body: img.manifest as unknown as BodyInit });
    assert.equal(put.status, 403);
    await pushUpstream(berth.url, 'mine/app', img, 'v1');
    const m = await manifestOf(berth.url, 'mine/app', 'v1');
    assert.equal(m.digest, img.digest);
    assert.equal(m.cache, null);
  });

  test('16 concurrent GETs of a cold tag make one upstream manifest GET', async () => {
    const img = image([randomBytes(1000)]);
    await pushUpstream(upstream.url, 'team/many', img, 'v1');
    const all = await Promise.all(Array.from({ length: 16 }, () => manifestOf(berth.url, 'up/team/many', 'v1')));
    for (const m of all) assert.equal(m.digest, img.digest);
    assert.equal(relay.requests.filter((r) => r === 'GET /v2/team/many/manifests/v1').length, 1, relay.requests.join('\n'));
  });

  test('an index is recorded once its children and their blobs are, and then pulls from the cache', async () => {
    const a = image([randomBytes(3000)]);
    const b = image([randomBytes(3000)]);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          { mediaType: OCI_MANIFEST, digest: a.digest, size: a.manifest.length, platform: { os: 'linux', architecture: 'amd64' } },
          { mediaType: OCI_MANIFEST, digest: b.digest, size: b.manifest.length, platform: { os: 'linux', architecture: 'arm64' } },
        ],
      }),
    );
    await pushUpstream(upstream.url, 'team/multi', a, a.digest);
    await pushUpstream(upstream.url, 'team/multi', b, b.digest);
    await pushManifestTo(upstream.url, 'team/multi', 'v1', index, 'application/vnd.oci.image.index.v1+json');
    const m = await manifestOf(berth.url, 'up/team/multi', 'v1');
    assert.equal(m.digest, sha256(index));
    assert.equal(m.cache, 'miss');
    await waitCached(berth, 'up/team/multi', 'v1');
    for (const img of [a, b]) {
      const child = await manifestOf(berth.url, 'up/team/multi', img.digest);
      assert.equal(child.status, 200);
      assert.equal(child.cache, 'hit', 'stored locally');
      for (const bl of [img.config, ...img.layers]) assert.equal(relay.blobGets(bl.digest), 1);
    }
  });

  test('HEAD of an uncached blob answers upstream\'s size without fetching it', async () => {
    const img = image([randomBytes(777)]);
    await pushUpstream(upstream.url, 'team/head', img, 'v1');
    const layer = img.layers[0]!;
    const res = await fetch(`${berth.url}/v2/up/team/head/blobs/${layer.digest}`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), '777');
    assert.equal(res.headers.get('x-berth-cache'), 'miss');
    assert.equal(relay.blobGets(layer.digest), 0);
    const unknown = await fetch(`${berth.url}/v2/up/team/head/blobs/${sha256('nothing')}`, { method: 'HEAD' });
    assert.equal(unknown.status, 404);
  });

  test('/metrics counts hits, misses, joined requests and upstream bytes', async () => {
    const text = await (await fetch(`${berth.url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name}\\{upstream="up"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.ok(value('berth_proxy_joined_total') >= 15, text);
    assert.ok(value('berth_proxy_upstream_bytes_total') >= 64 * MiB);
    assert.ok(value('berth_proxy_hits_total') >= 1);
    assert.ok(value('berth_proxy_misses_total') >= 1);
    assert.ok(value('berth_proxy_stale_total') >= 1);
  });
});

describe('expiry of cached content', { skip: noRegistry ?? false }, () => {
  let upstream: DistributionRegistry;
  let berth: TestServer;
  const img = image([randomBytes(5000)]);

  before(async () => {
    upstream = await startDistribution();
    await pushUpstream(upstream.url, 'team/old', img, 'v1');
    const dataDir = makeDataDir();
    const config = join(dataDir, 'berth.yml');
    writeFileSync(config, `gc: { interval: 1s }\nmirrors:\n  - url: ${upstream.url}\n    prefix: up\n    expireAfter: 3s\n`);
    berth = await startServer({ dataDir, args: ['--config', config, '--log-level', 'info'] });
  });
  after(async () => {
    await berth?.stop();
    await upstream?.stop(true);
  });

  test('a cached tag nobody pulls within expireAfter is untagged, GC takes its content, and a later pull fetches it again', async () => {
    assert.equal((await manifestOf(berth.url, 'up/team/old', 'v1')).cache, 'miss');
    await waitCached(berth, 'up/team/old', 'v1');
    const tags = async () => ((await (await fetch(`${berth.url}/v2/up/team/old/tags/list`)).json()) as { tags?: string[] }).tags ?? [];
    assert.deepEqual(await tags(), ['v1']);
    // Pulled again within the window: kept.
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await manifestOf(berth.url, 'up/team/old', 'v1')).status, 200);
    await new Promise((r) => setTimeout(r, 2000));
    assert.deepEqual(await tags(), ['v1'], 'pulled 2 s ago: not expired');
    // Then left alone past expireAfter (and a sweep).
    const deadline = Date.now() + 15_000;
    while ((await tags()).length > 0) {
      assert.ok(Date.now() < deadline, 'the tag did not expire');
      await new Promise((r) => setTimeout(r, 300));
    }
    const gc = await fetch(`${berth.url}/admin/gc?grace=0`, { method: 'POST' });
    const report = (await gc.json()) as { manifestsDeleted: number; blobsDeleted: number };
    assert.equal(report.manifestsDeleted, 1, JSON.stringify(report));
    assert.equal(report.blobsDeleted, 2, JSON.stringify(report));
    const again = await manifestOf(berth.url, 'up/team/old', 'v1');
    assert.equal(again.status, 200);
    assert.equal(again.digest, img.digest);
    assert.equal(again.cache, 'miss');
    // The request log says how the cache answered.
    assert.match(berth.output(), /"path":"\/v2\/up\/team\/old\/manifests\/v1"[^\n]*"cache":"miss"/);
    assert.match(berth.output(), /"path":"\/v2\/up\/team\/old\/manifests\/v1"[^\n]*"cache":"hit"/);
  });
});

describe('single flight: a fetch that ends while a request is between its local miss and joining', { skip: noRegistry ?? false }, () => {
  let upstream: DistributionRegistry;
  let relay: CountingRelay;
  let berth: TestServer;
  const pause = pauseControl('pull-through-after-miss');
  const img = image([randomBytes(2 * MiB)]);

  before(async () => {
    upstream = await startDistribution();
    relay = await startCountingRelay(upstream.url);
    await pushUpstream(upstream.url, 'team/race', img, 'v1');
    const dataDir = makeDataDir();
    const config = join(dataDir, 'berth.yml');
    writeFileSync(config, `mirrors:\n  - url: ${relay.url}\n    prefix: up\n`);
    berth = await startServer({ dataDir, args: ['--config', config], env: pause.env });
  });
  after(async () => {
    await berth?.stop();
    await relay?.close();
    await upstream?.stop(true);
    pause.cleanup();
  });

  test('the late request finds the stored blob instead of fetching it again', async () => {
    const layer = img.layers[0]!;
    const url = `${berth.url}/v2/up/team/race/blobs/${layer.digest}`;
    const late = getDigestOfBody(url); // missed locally, then held
    await pause.reached('pull-through-after-miss');
    const first = await getDigestOfBody(url); // fetches, stores, and the flight is gone
    assert.equal(first.digest, layer.digest);
    assert.equal(first.cache, 'miss');
    pause.resume('pull-through-after-miss');
    const r = await late;
    assert.equal(r.digest, layer.digest);
    assert.equal(relay.blobGets(layer.digest), 1, relay.requests.join('\n'));
  });
});
