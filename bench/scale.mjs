#!/usr/bin/env node
import './lib/scale-threadpool.mjs';
// Scale benchmark (issue 18): how Berth's costs hold as a registry grows to
// 10k / 100k / 1M small images in 1,000 repositories (plus repositories of
// 100,000 tags), with SQLite or PostgreSQL metadata.
//
//   node bench/scale.mjs load    --store sqlite --images 100000
//   node bench/scale.mjs measure --store sqlite --images 100000
//   node bench/scale.mjs run     --store sqlite --sizes 10000,100000,1000000
//   node bench/scale.mjs table a.json b.json   # saved results side by side
//   node bench/scale.mjs --help
//
// Progress goes to stderr; tables (markdown) and JSON go to stdout.
import { parseArgs } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { load, readState, writeState, ensurePgDatabase } from './lib/scale-loader.mjs';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const HELP = `usage: node bench/scale.mjs <load|measure|run> [options]

  load      grow the dataset to --images images (resumable: run again to continue)
  measure   measure Berth on the dataset as it is (--images must match what is loaded)
  run       for each of --sizes: load up to it, then measure; prints the table
  table F…  the table of results saved with --json (several files: side by side)

  --store sqlite|postgres   metadata store (default sqlite); blobs always on the filesystem
  --images N                dataset size for load / measure
  --sizes LIST              sizes for run (default 10000,100000)
  --dir DIR                 dataset directory (default /work/scale-data/<store>); it holds
                            data/ (berth --data) and state.json (progress)
  --pg-url URL              PostgreSQL maintenance database (default
                            postgres://postgres@127.0.0.1:5432/test); the dataset's own
                            database, berth_scale_<dir name>, is created there
  --big-repos K             repositories with --big-tags tags each (default 2)
  --big-tags T              (default 100000)
  --concurrency C           loader operations in flight (default 64)
  --durability chunk|blob   chunk (default): a chunk's blob files are written unsynced,
                            then one \`sync -f\` before their metadata commits; blob: each
                            blob through BlobStore.writeBlob, synced, as a push stores it
  --duration S              seconds per read workload (default 10)
  --push-images P           images pushed through the API for the push rate and then
                            deleted for the steady-state GC figure (default 1000)
  --skip-gc                 no grace-0 GC passes (first pass, steady state): they look at
                            every loaded blob once, many minutes at 1M
  --skip-first-dry-run      no dry run of the first grace-0 pass (the real one still runs)
  --json FILE               also write the JSON results to FILE
  -h, --help
`;

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    store: { type: 'string', default: 'sqlite' },
    images: { type: 'string' },
    sizes: { type: 'string', default: '10000,100000' },
    dir: { type: 'string' },
    'pg-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' },
    'big-repos': { type: 'string', default: '2' },
    'big-tags': { type: 'string', default: '100000' },
    concurrency: { type: 'string', default: '64' },
    durability: { type: 'string', default: 'chunk' },
    duration: { type: 'string', default: '10' },
    'push-images': { type: 'string', default: '1000' },
    'skip-gc': { type: 'boolean', default: false },
    'skip-first-dry-run': { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const command = positionals[0];
if (command === 'table') {
  // Renders saved --json results side by side: node bench/scale.mjs table a.json b.json ...
  const { table } = await import('./lib/scale-measure.mjs');
  const results = positionals.slice(1).flatMap((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
  process.stdout.write(table(results) + '\n');
  process.exit(0);
}
if (opt.help || !['load', 'measure', 'run'].includes(command)) {
  process.stdout.write(HELP);
  process.exit(opt.help ? 0 : 2);
}
if (opt.durability !== 'chunk' && opt.durability !== 'blob') throw new Error(`--durability: chunk or blob, not ${opt.durability}`);
if (opt.store !== 'sqlite' && opt.store !== 'postgres') throw new Error(`--store: sqlite or postgres, not ${opt.store}`);
const dir = path.resolve(opt.dir ?? `/work/scale-data/${opt.store}`);
const int = (name) => {
  const v = Number(opt[name]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name}: not a count: ${opt[name]}`);
  return v;
};
const log = (...a) => process.stderr.write(`[scale ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);

async function dataset() {
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  let state = readState(dir);
  if (!state) {
    state = { store: opt.store, images: 0, bigTags: [], created: new Date().toISOString() };
    if (opt.store === 'postgres') {
      const name = 'berth_scale_' + path.basename(dir).replace(/[^a-z0-9_]/gi, '_').toLowerCase();
      state.metadataUrl = await ensurePgDatabase(repoRoot, opt['pg-url'], name);
    }
    writeState(dir, state);
  }
  if (state.store !== opt.store) throw new Error(`${dir} holds a ${state.store} dataset, not ${opt.store}`);
  return state;
}

let lastLine = 0;
function progress(what, images, started) {
  const s = (Date.now() - started) / 1000;
  if (Date.now() - lastLine < 5000) return;
  lastLine = Date.now();
  log(`${what}  (${images} images in ${s.toFixed(0)} s, ${(images / s).toFixed(0)} images/s)`);
}

async function loadTo(images) {
  await dataset();
  if (images < 64) throw new Error('--images: at least 64 (the shared layers are committed by the first 64 images)');
  log(`loading ${dir} up to ${images} images, ${int('big-repos')} × ${int('big-tags')} tags`);
  const r = await load({ repoRoot, dir, images, bigRepos: int('big-repos'), bigTags: int('big-tags'), concurrency: int('concurrency'), durability: opt.durability, log, progress });
  log(`loaded ${r.images} images in ${r.imagesSeconds.toFixed(1)} s (${r.rate.toFixed(0)} images/s), ${r.seconds.toFixed(1)} s in all (${JSON.stringify(r.loader)})`);
  return r;
}

if (command === 'load') {
  await loadTo(int('images'));
} else {
  const { measure, table } = await import('./lib/scale-measure.mjs');
  const sizes = command === 'run' ? opt.sizes.split(',').map(Number) : [int('images')];
  const results = [];
  for (const n of sizes) {
    let loadResult;
    if (command === 'run') loadResult = await loadTo(n);
    const state = await dataset();
    if (state.images !== n) throw new Error(`${dir} holds ${state.images} images, not ${n}: run load first`);
    const r = await measure({ repoRoot, dir, state, opt, log, loadResult });
    results.push(r);
    process.stdout.write(table([r]) + '\n');
  }
  if (results.length > 1) process.stdout.write(table(results) + '\n');
  if (opt.json) fs.writeFileSync(opt.json, JSON.stringify(results, null, 2) + '\n');
}
