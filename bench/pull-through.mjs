// Pull-through cache, side by side: Berth (`mirrors:`) and the reference
// registry in proxy mode (`proxy.remoteurl`, Debian's docker-registry) in
// front of the same upstream (a docker-registry on loopback), each behind a
// counting relay so upstream requests and bytes are counted where they arrive.
//
//   npm run build && node bench/pull-through.mjs [--layer-mib 64] [--clients 16]
//
// Reported per cache: cold pull (manifest + every blob, one client, nothing
// cached), warm pull (the same again), 16 concurrent cold pulls (wall time,
// upstream blob GETs and bytes), and a pull of the cached tag with the
// upstream stopped.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeDataDir, startServer } from '../dist/test/helpers/server.js';
import { pushBlobTo, pushManifestTo, startCountingRelay, startDistribution } from '../dist/test/helpers/upstreams.js';

const { values: opt } = parseArgs({ options: { 'layer-mib': { type: 'string', default: '64' }, clients: { type: 'string', default: '16' } } });
const MiB = 1024 * 1024;
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json';
const sha = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function image(sizes) {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, n: randomBytes(8).toString('hex') }));
  const layers = sizes.map((s) => randomBytes(s));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(l), size: l.length })),
    }),
  );
  return { config, layers, manifest };
}

async function pull(url, repo, tag) {
  const m = await fetch(`${url}/v2/${repo}/manifests/${tag}`, { headers: { Accept: ACCEPT } });
  const body = Buffer.from(await m.arrayBuffer());
  if (m.status !== 200) throw new Error(`manifest ${url}/${repo}:${tag}: ${m.status} ${body}`);
  const doc = JSON.parse(body.toString());
  for (const d of [doc.config, ...doc.layers]) {
    const res = await fetch(`${url}/v2/${repo}/blobs/${d.digest}`);
    const hash = createHash('sha256');
    for await (const c of res.body) hash.update(c);
    if (res.status !== 200 || `sha256:${hash.digest('hex')}` !== d.digest) throw new Error(`blob ${d.digest} from ${url}: ${res.status}, wrong bytes`);
  }
}

const time = async (fn) => {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
};

async function startBerth(relayUrl) {
  const dataDir = makeDataDir();
  const config = join(dataDir, 'berth.yml');
  // A 1 s tag TTL, so that the upstream-down pull below really asks upstream (as the reference does for every tag GET).
  writeFileSync(config, `mirrors:\n  - url: ${relayUrl}\n    tagTtl: 1s\n`);
  const s = await startServer({ dataDir, args: ['--config', config] });
  return { url: s.url, stop: () => s.stop() };
}
async function startReference(relayUrl) {
  const r = await startDistribution({ remoteUrl: relayUrl });
  return { url: r.url, stop: () => r.stop(true) };
}

const clients = Number(opt.clients);
const upstream = await startDistribution();
const img = image([Number(opt['layer-mib']) * MiB, 4096]);
for (const b of [img.config, ...img.layers]) await pushBlobTo(upstream.url, 'bench/app', b, sha(b));
await pushManifestTo(upstream.url, 'bench/app', 'v1', img.manifest, 'application/vnd.oci.image.manifest.v1+json');

const results = {};
for (const [name, start] of [['berth', startBerth], ['reference', startReference]]) {
  const r = {};
  // Cold then warm, one client.
  let relay = await startCountingRelay(upstream.url);
  let cache = await start(relay.url);
  r.coldPullS = await time(() => pull(cache.url, 'bench/app', 'v1'));
  await new Promise((res) => setTimeout(res, 1500)); // let a cache finish storing what it served
  const before = relay.bytes;
  r.warmPullS = await time(() => pull(cache.url, 'bench/app', 'v1'));
  r.warmUpstreamBytes = relay.bytes - before;
  // Upstream gone (connection refused): does the cached tag still pull?
  await relay.close();
  await new Promise((res) => setTimeout(res, 1100));
  r.cachedTagWithUpstreamDown = await pull(cache.url, 'bench/app', 'v1').then(() => 'pulls', (e) => `fails (${String(e.message).slice(0, 80)})`);
  await cache.stop();
  // N concurrent cold pulls on a fresh cache.
  relay = await startCountingRelay(upstream.url);
  cache = await start(relay.url);
  r[`concurrent${clients}ColdS`] = await time(() => Promise.all(Array.from({ length: clients }, () => pull(cache.url, 'bench/app', 'v1'))));
  r[`concurrent${clients}UpstreamBlobGets`] = relay.blobGets();
  r[`concurrent${clients}UpstreamMiB`] = Math.round((relay.bytes / MiB) * 10) / 10;
  await cache.stop();
  await relay.close();
  results[name] = r;
  console.error(name, r);
}
await upstream.stop(true);
console.log(JSON.stringify({ layerMiB: Number(opt['layer-mib']), clients, results }, null, 2));
