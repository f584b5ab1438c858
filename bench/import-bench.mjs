#!/usr/bin/env node
/**
 * `berth import` speed: writes a reference registry's storage tree directly
 * (the layout docker-registry 2.8 writes; deterministic content), then
 * imports it into fresh data directories on the same file system (blobs
 * hard-linked), with digest verification on and off, and prints images/s
 * and MB/s. The tree is built by this script, not pushed: pushing 10,000
 * images through the reference registry would take far longer than the
 * import being measured.
 *
 *   npm run build && node bench/import-bench.mjs [--images 10000] [--tags-per-repo 5] [--layer-bytes 16384] [--dir /tmp/x] [--keep]
 *
 * Each image: a config, one layer of its own (--layer-bytes, random-looking
 * but deterministic), and a base layer shared by every image; each
 * repository holds --tags-per-repo images, one tag each.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '10000' },
    'tags-per-repo': { type: 'string', default: '5' },
    'layer-bytes': { type: 'string', default: '16384' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
    concurrency: { type: 'string', default: '32' },
  },
});
const images = Number(values.images);
const perRepo = Number(values['tags-per-repo']);
const layerBytes = Number(values['layer-bytes']);
const work = values.dir ?? mkdtempSync(join(tmpdir(), 'berth-import-bench-'));
const berth = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'src', 'cli', 'main.js');

const sha = (b) => createHash('sha256').update(b).digest('hex');
/** Deterministic bytes: a sha256 counter stream seeded by `seed`. */
function bytesOf(seed, n) {
  const out = Buffer.alloc(n);
  for (let i = 0, block = 0; i < n; block++) {
    const h = createHash('sha256').update(`${seed}/${block}`).digest();
    i += h.copy(out, i);
  }
  return out;
}

function buildTree(root) {
  const base = join(root, 'docker', 'registry', 'v2');
  const dirs = new Set();
  const write = (p, data) => {
    const full = join(base, p);
    const d = dirname(full);
    if (!dirs.has(d)) {
      mkdirSync(d, { recursive: true });
      dirs.add(d);
    }
    writeFileSync(full, data);
  };
  const blob = (data) => {
    const hex = sha(data);
    write(`blobs/sha256/${hex.slice(0, 2)}/${hex}/data`, data);
    return hex;
  };
  let bytes = 0;
  const baseLayer = bytesOf('base', 64 * 1024);
  const baseHex = blob(baseLayer);
  bytes += baseLayer.length;
  for (let i = 0; i < images; i++) {
    const repo = `bench/app-${String(Math.floor(i / perRepo)).padStart(5, '0')}`;
    const tag = `v${i % perRepo}`;
    const layer = bytesOf(`layer-${i}`, layerBytes);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${sha(`diff-${i}`)}`] }, i }));
    const layerHex = blob(layer);
    const configHex = blob(config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${configHex}`, size: config.length },
        layers: [
          { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${baseHex}`, size: baseLayer.length },
          { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${layerHex}`, size: layer.length },
        ],
      }),
    );
    const manifestHex = blob(manifest);
    bytes += layer.length + config.length + manifest.length;
    for (const hex of [baseHex, layerHex, configHex]) write(`repositories/${repo}/_layers/sha256/${hex}/link`, `sha256:${hex}`);
    write(`repositories/${repo}/_manifests/revisions/sha256/${manifestHex}/link`, `sha256:${manifestHex}`);
    write(`repositories/${repo}/_manifests/tags/${tag}/current/link`, `sha256:${manifestHex}`);
    write(`repositories/${repo}/_manifests/tags/${tag}/index/sha256/${manifestHex}/link`, `sha256:${manifestHex}`);
  }
  return bytes;
}

function runImport(source, data, extra) {
  const started = process.hrtime.bigint();
  const res = spawnSync(process.execPath, [berth, 'import', source, '--data', data, '--json', '--concurrency', values.concurrency, ...extra], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (res.status !== 0) throw new Error(`berth import failed (${res.status}):\n${res.stderr}`);
  return { seconds, report: JSON.parse(res.stdout) };
}

const source = join(work, 'reference');
let t = Date.now();
const sourceBytes = buildTree(source);
console.log(`built ${images} images in ${Math.ceil(images / perRepo)} repositories (${(sourceBytes / 1e6).toFixed(1)} MB of blobs) in ${((Date.now() - t) / 1000).toFixed(1)} s at ${source}`);
execFileSync('sync');

const rows = [];
for (const [label, extra] of [
  ['hard links, digests verified', []],
  ['hard links, --no-verify', ['--no-verify']],
]) {
  const data = join(work, `berth-${rows.length}`);
  const first = runImport(source, data, extra);
  const r = first.report;
  if (r.manifests.imported !== images || r.tags.imported !== images) throw new Error(`incomplete import: ${JSON.stringify(r.reasons)}`);
  const again = runImport(source, data, extra);
  rows.push({
    label,
    seconds: first.seconds,
    imagesPerSecond: images / first.seconds,
    mbPerSecond: r.blobs.bytes / 1e6 / first.seconds,
    hardLinked: r.blobs.byMethod['hard-link'],
    linked: r.blobs.linked,
    secondRunSeconds: again.seconds,
    secondRunChanges: again.report.manifests.imported + again.report.tags.imported + again.report.blobs.imported,
  });
  const fsck = spawnSync(process.execPath, [berth, 'fsck', '--data', data, '--quick'], { encoding: 'utf8' });
  rows.at(-1).fsck = fsck.stdout.trim().split('\n').at(-1);
  rmSync(data, { recursive: true, force: true });
}
for (const r of rows) {
  console.log(
    `${r.label}: ${r.seconds.toFixed(1)} s, ${r.imagesPerSecond.toFixed(0)} images/s, ${r.mbPerSecond.toFixed(1)} MB/s ` +
      `(${r.hardLinked} blobs hard-linked, ${r.linked} links to blobs already imported); ` +
      `second run ${r.secondRunSeconds.toFixed(1)} s, ${r.secondRunChanges} changes; fsck: ${r.fsck}`,
  );
}
if (!values.keep && !values.dir) rmSync(work, { recursive: true, force: true });
