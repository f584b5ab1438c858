#!/usr/bin/env node
// Berth benchmark: runs the same workloads against Berth and the reference
// registry (CNCF distribution 2.8.2, Debian's `docker-registry`), alternating
// between them within each round, and prints medians and ratios.
//
//   npm run bench -- [--rounds 3] [--only push,head] [--size-mib 512] [--quick]
//                    [--servers berth,reference] [--berth-cmd '...'] [--out FILE]
//                    [--storage s3 [--metadata postgres]]
//
// See bench/README.md.
import { parseArgs } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RegistryClient, OCI_MANIFEST, pool, sha256, randomImage } from './lib/client.mjs';
import { berthServer, referenceServer, ceilingServer, cpuSnapshot, foreignShare, foreignTicks, countServicesAsWorkload } from './lib/servers.mjs';
import { s3Settings, runPrefix, deleteS3Prefix, createBenchDatabase, PG_ADMIN_URL } from './lib/backends.mjs';
import {
  run,
  which,
  median,
  percentile,
  makeRandomBlob,
  removeBlobFiles,
  curlPushMonolithic,
  curlPushChunked,
  curlPull,
  runWrk,
  runAb,
  liveChildren,
} from './lib/tools.mjs';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ------------------------------------------------------------------ options

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string' },
    only: { type: 'string' },
    'size-mib': { type: 'string' },
    'chunk-mib': { type: 'string' },
    quick: { type: 'boolean', default: false },
    servers: { type: 'string', default: 'berth,reference,ceiling' },
    pin: { type: 'string', default: 'off' },
    warmup: { type: 'string' },
    storage: { type: 'string', default: 'fs' },
    metadata: { type: 'string', default: 'sqlite' },
    'berth-cmd': { type: 'string' },
    'registry-bin': { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    duration: { type: 'string' },
    connections: { type: 'string', default: '32' },
    'wrk-threads': { type: 'string', default: '2' },
    'small-images': { type: 'string' },
    'small-concurrency': { type: 'string', default: '16' },
    tags: { type: 'string' },
    'pull-repeats': { type: 'string' },
    out: { type: 'string' },
    json: { type: 'string' },
    'keep-tmp': { type: 'boolean', default: false },
    'wait-idle': { type: 'string', default: '0' },
    'retry-noisy': { type: 'string', default: '0' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (opt.help) {
  console.log(`usage: node bench/run.mjs [options]
  --rounds N              rounds per workload (default 3; 1 with --quick)
  --only a,b              workloads to run (ids or prefixes: ${'push, pull, head, manifest, tags-list, small-images'})
  --size-mib N            size of the big blob (default 512; 32 with --quick)
  --chunk-mib N           chunk size for the chunked push (default 16; 8 with --quick)
  --quick                 small sizes, short wrk runs, 1 round: a smoke run
  --servers LIST          berth,reference,ceiling (default all three; ceiling: a bare node:http
                          server with fixed answers, measured on the HEAD and manifest workloads only)
  --pin off|auto|S/L      run the servers under \`taskset -c S\` and wrk/ab under \`taskset -c L\`
                          (CPU lists). auto: on 2+ CPUs, servers on the last CPU and the load
                          generators on the others (Go then runs the reference on one CPU);
                          off (default): the scheduler places them
  --warmup S              seconds of load before each wrk/ab measurement, not counted (default 2;
                          1 with --quick; 0: none)
  --storage fs|s3         where both servers keep blobs (default fs: a local directory each).
                          s3: the S3 endpoint of S3_ENDPOINT, S3_BUCKET, S3_REGION,
                          S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY (eval "$(bash .ci/setup-services.sh)"),
                          each server under its own prefix of bench/<run>/, deleted at the end
  --metadata sqlite|postgres  Berth's metadata store (default sqlite); postgres: a fresh
                          database created from BERTH_BENCH_PG_URL or BERTH_TEST_PG_URL
                          (default postgres://postgres@127.0.0.1:5432/test), dropped at the end
  --berth-cmd CMD         shell command to start Berth; {addr} {port} {data} are substituted
  --registry-bin PATH     reference registry binary (default: docker-registry on PATH)
  --no-build              do not run \`npm run build\` first
  --duration S            seconds per wrk run (default 10; 3 with --quick)
  --connections N         wrk connections (default 32)
  --wrk-threads N         wrk threads (default 2)
  --small-images N        images in the small-image push workload (default 500; 64 with --quick)
  --small-concurrency N   images in flight (default 16)
  --tags N                tags in the seeded repository (default 1000; 100 with --quick)
  --pull-repeats N        pulls per measurement (default 3; 1 with --quick)
  --out FILE              also write the report (markdown) to FILE
  --json FILE             also write raw results as JSON
  --keep-tmp              keep the temporary directory (server logs, data)
  --wait-idle S           before each measurement, wait up to S seconds for other
                          processes to use < 10% of the CPU (default 0: do not wait)
  --retry-noisy N         repeat a measurement (up to N times) when other processes used
                          > 10% of the CPU during it; not for the big-blob pushes, whose
                          content would then already be stored (default 0)`);
  process.exit(0);
}

function intOpt(name, dflt, quickDflt) {
  const v = opt[name];
  if (v === undefined) return opt.quick && quickDflt !== undefined ? quickDflt : dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) die(`--${name} must be a positive integer, got ${v}`);
  return n;
}

function die(msg, code = 2) {
  console.error(`bench: ${msg}`);
  process.exit(code);
}

const cfg = {
  rounds: intOpt('rounds', 3, 1),
  sizeMiB: intOpt('size-mib', 512, 32),
  chunkMiB: intOpt('chunk-mib', 16, 8),
  durationS: intOpt('duration', 10, 3),
  connections: intOpt('connections', 32),
  wrkThreads: intOpt('wrk-threads', 2),
  smallImages: intOpt('small-images', 500, 64),
  smallConcurrency: intOpt('small-concurrency', 16),
  tagCount: intOpt('tags', 1000, 100),
  pullRepeats: intOpt('pull-repeats', 3, 1),
  warmupS: opt.warmup === undefined ? (opt.quick ? 1 : 2) : Number(opt.warmup),
  waitIdleS: Number(opt['wait-idle']),
  retryNoisy: Number(opt['retry-noisy']),
};
if (!(Number.isInteger(cfg.retryNoisy) && cfg.retryNoisy >= 0)) die('--retry-noisy must be a non-negative integer');
if (!(cfg.waitIdleS >= 0)) die('--wait-idle must be a number of seconds');
if (!(Number.isInteger(cfg.warmupS) && cfg.warmupS >= 0)) die('--warmup must be a non-negative integer (seconds)');
cfg.pin = pinning(opt.pin);

/**
 * Where servers and load generators run. On a small machine a server and
 * wrk/ab that the scheduler moves between the same cores measure the
 * scheduler as much as the server; pinned, every server gets the same CPU
 * and the client the other(s), the same for all three servers.
 * @returns {{servers: string, load: string} | null}
 */
function pinning(spec) {
  if (spec === 'off') return null;
  if (spec === 'auto') {
    const n = os.availableParallelism?.() ?? os.cpus().length;
    if (n < 2) return null;
    return { servers: String(n - 1), load: n === 2 ? '0' : `0-${n - 2}` };
  }
  const m = /^([\d,-]+)\/([\d,-]+)$/.exec(spec);
  if (!m) die(`--pin must be auto, off or SERVER_CPUS/LOAD_CPUS (e.g. 1/0), got ${spec}`);
  return { servers: m[1], load: m[2] };
}
const MiB = 1 << 20;

if (!['fs', 's3'].includes(opt.storage)) die(`--storage must be fs or s3, got ${opt.storage}`);
if (!['sqlite', 'postgres'].includes(opt.metadata)) die(`--metadata must be sqlite or postgres, got ${opt.metadata}`);
const s3 = opt.storage === 's3' ? s3Settings() : undefined;
if (opt.storage === 's3' && !s3) {
  die('--storage s3 needs S3_ENDPOINT, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or the AWS_* ones): eval "$(bash .ci/setup-services.sh)" first');
}
/** This run's S3 prefix (each server gets a sub-prefix), and Berth's PostgreSQL database. */
const backends = { prefix: s3 ? runPrefix() : undefined, db: undefined, cleaned: false };
// The S3 store and PostgreSQL work for the servers under test: their CPU is
// workload, not "other processes" (they may also serve other users, which
// the harness cannot tell apart).
const servicesCounted = countServicesAsWorkload({ s3: Boolean(s3), postgres: opt.metadata === 'postgres' });

const serverNames = opt.servers.split(',').map((s) => s.trim()).filter(Boolean);
for (const s of serverNames) if (!['berth', 'reference', 'ceiling'].includes(s)) die(`unknown server ${s} (berth, reference, ceiling)`);
if (serverNames.length === 0) die('no servers');

// ------------------------------------------------------------------ workloads
//
// Each workload yields one or more figures. `target` is the minimum ratio
// Berth/reference (higher is better) from the issue; latency figures have none.

const SEED_REPO = 'bench/seed';
/** Berth's HEAD and GET manifest figures, as a share of the ceiling's, must reach this. */
const CEILING_TARGET = 0.5;

const WORKLOADS = [
  {
    id: 'push-mono',
    retryable: false,
    figures: [{ id: 'push-mono', label: `push ${cfg.sizeMiB} MiB blob, monolithic (curl -T)`, unit: 'MB/s', target: 1.2 }],
    async beforeRound(ctx) {
      ctx.monoBlob = makeRandomBlob(ctx.tmp, 'mono', cfg.sizeMiB * MiB);
    },
    async measure(server, ctx, round) {
      const repo = `bench/mono-r${round}`;
      const r = await curlPushMonolithic(server.url, repo, ctx.monoBlob);
      await verifyBlob(server, repo, ctx.monoBlob);
      return { 'push-mono': r.bytes / r.seconds / 1e6 };
    },
    afterRound(ctx) {
      removeBlobFiles(ctx.monoBlob);
    },
  },
  {
    id: 'push-chunked',
    retryable: false,
    figures: [{ id: 'push-chunked', label: `push ${cfg.sizeMiB} MiB blob, ${cfg.chunkMiB} MiB chunks (PATCH)`, unit: 'MB/s', target: 1.5 }],
    async beforeRound(ctx) {
      ctx.chunkBlob = makeRandomBlob(ctx.tmp, 'chunked', cfg.sizeMiB * MiB, cfg.chunkMiB * MiB);
    },
    async measure(server, ctx, round) {
      const repo = `bench/chunked-r${round}`;
      const r = await curlPushChunked(server.url, repo, ctx.chunkBlob);
      await verifyBlob(server, repo, ctx.chunkBlob);
      return { 'push-chunked': r.bytes / r.seconds / 1e6 };
    },
    afterRound(ctx) {
      removeBlobFiles(ctx.chunkBlob);
    },
  },
  {
    id: 'pull-1',
    needs: ['pullBlob'],
    figures: [{ id: 'pull-1', label: `pull ${cfg.sizeMiB} MiB blob, single (curl)`, unit: 'MB/s', target: 1.0 }],
    async measure(server, ctx) {
      const r = await curlPull(server.url, 'bench/pull', ctx.pullBlob, { parallel: 1, repeats: cfg.pullRepeats });
      return { 'pull-1': r.bytes / r.seconds / 1e6 };
    },
  },
  {
    id: 'pull-4',
    needs: ['pullBlob'],
    figures: [{ id: 'pull-4', label: `pull ${cfg.sizeMiB} MiB blob, 4 in parallel (curl -Z)`, unit: 'MB/s', target: 1.0 }],
    async measure(server, ctx) {
      const r = await curlPull(server.url, 'bench/pull', ctx.pullBlob, { parallel: 4, repeats: cfg.pullRepeats });
      return { 'pull-4': r.bytes / r.seconds / 1e6 };
    },
  },
  {
    id: 'head',
    needs: ['seed'],
    ceiling: true,
    figures: [
      { id: 'head', label: `HEAD blob, ${cfg.connections} connections (ab -k -i)`, unit: 'req/s', target: 10 },
      { id: 'head-p99', label: '  HEAD blob p99 latency', unit: 'ms', lowerIsBetter: true },
      { id: 'head-cpu', label: '  HEAD blob server CPU per request', unit: 'µs', lowerIsBetter: true },
    ],
    async measure(server, ctx) {
      const seed = ctx.seed.get(server.name);
      const layer = seed.layers[0];
      const url = `${server.url}/v2/${SEED_REPO}/blobs/${layer.digest}`;
      const res = await ctx.client(server).request('HEAD', url);
      if (res.status !== 200) throw new Error(`HEAD blob: HTTP ${res.status}`);
      if (Number(res.headers['content-length']) !== layer.size) throw new Error(`HEAD blob: Content-Length ${res.headers['content-length']}, expected ${layer.size}`);
      const w = await ab(server, ctx, url, { method: 'HEAD' });
      return { head: w.rps, 'head-p99': w.p99, 'head-cpu': w.cpuUs };
    },
  },
  ...['tag', 'digest'].map((by) => ({
    id: `manifest-${by}`,
    needs: ['seed'],
    ceiling: true,
    figures: [
      { id: `manifest-${by}`, label: `GET manifest by ${by} (wrk, Accept)`, unit: 'req/s', target: 10 },
      { id: `manifest-${by}-p99`, label: `  GET manifest by ${by} p99 latency`, unit: 'ms', lowerIsBetter: true },
      { id: `manifest-${by}-cpu`, label: `  GET manifest by ${by} server CPU per request`, unit: 'µs', lowerIsBetter: true },
    ],
    async measure(server, ctx) {
      const seed = ctx.seed.get(server.name);
      const ref = by === 'tag' ? 'tag-0000' : seed.digest;
      const url = `${server.url}/v2/${SEED_REPO}/manifests/${ref}`;
      const headers = { Accept: seed.mediaType };
      const res = await ctx.client(server).request('GET', url, { headers });
      if (res.status !== 200) throw new Error(`GET manifest: HTTP ${res.status}`);
      if (sha256(res.body) !== seed.digest) throw new Error('GET manifest: body does not match the pushed manifest');
      if ((res.headers['content-type'] ?? '').split(';')[0] !== seed.mediaType) throw new Error(`GET manifest: Content-Type ${res.headers['content-type']}, expected ${seed.mediaType}`);
      const w = await wrk(server, ctx, url, { headers });
      return { [`manifest-${by}`]: w.rps, [`manifest-${by}-p99`]: w.p99, [`manifest-${by}-cpu`]: w.cpuUs };
    },
  })),
  {
    id: 'tags-list',
    needs: ['seed'],
    figures: [
      { id: 'tags-list', label: `GET tags/list, ${cfg.tagCount} tags (wrk)`, unit: 'req/s', target: 5 },
      { id: 'tags-list-p99', label: '  GET tags/list p99 latency', unit: 'ms', lowerIsBetter: true },
    ],
    async measure(server, ctx) {
      const url = `${server.url}/v2/${SEED_REPO}/tags/list`;
      const res = await ctx.client(server).request('GET', url);
      if (res.status !== 200) throw new Error(`GET tags/list: HTTP ${res.status}`);
      const tags = JSON.parse(res.body.toString()).tags ?? [];
      if (tags.length !== cfg.tagCount) {
        throw new Error(`GET tags/list returned ${tags.length} tags, expected ${cfg.tagCount}${res.headers.link ? ' (paginated: Link header present)' : ''}`);
      }
      const w = await wrk(server, ctx, url);
      return { 'tags-list': w.rps, 'tags-list-p99': w.p99 };
    },
  },
  {
    id: 'small-images',
    figures: [
      { id: 'small-images', label: `push ${cfg.smallImages} small images, ${cfg.smallConcurrency} at a time (Node)`, unit: 'images/s', target: 5 },
      { id: 'small-images-p99', label: '  small image push p99 latency', unit: 'ms', lowerIsBetter: true },
    ],
    async measure(server, ctx, round, attempt) {
      const repo = `bench/small-r${round}${attempt ? `-${attempt}` : ''}`;
      const client = new RegistryClient(server.url, { maxSockets: cfg.smallConcurrency });
      const lat = [];
      let last;
      try {
        const t0 = process.hrtime.bigint();
        await pool(cfg.smallImages, cfg.smallConcurrency, async (i) => {
          const s = process.hrtime.bigint();
          const img = await client.pushRandomImage(repo, `img-${i}`, { layers: 3, layerSize: 4096 });
          lat.push(Number(process.hrtime.bigint() - s) / 1e6);
          if (i === cfg.smallImages - 1) last = img;
        });
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        // Light correctness check: the last image's manifest reads back.
        const res = await client.request('GET', `/v2/${repo}/manifests/img-${cfg.smallImages - 1}`, { headers: { Accept: OCI_MANIFEST } });
        if (res.status !== 200 || sha256(res.body) !== last.digest) throw new Error(`small images: manifest read-back failed (HTTP ${res.status})`);
        return { 'small-images': cfg.smallImages / seconds, 'small-images-p99': percentile(lat, 99) };
      } finally {
        client.close();
      }
    },
  },
];

const ALL_FIGURES = [
  ...WORKLOADS.flatMap((w) => w.figures),
  { id: 'peak-rss', label: 'peak resident memory, whole run', unit: 'MiB', lowerIsBetter: true, berthMax: 150 },
];

let selected = WORKLOADS;
if (opt.only) {
  const wanted = opt.only.split(',').map((s) => s.trim()).filter(Boolean);
  for (const w of wanted) {
    if (!WORKLOADS.some((x) => x.id === w || x.id.startsWith(w + '-'))) die(`--only: unknown workload ${w} (${WORKLOADS.map((x) => x.id).join(', ')})`);
  }
  selected = WORKLOADS.filter((x) => wanted.some((w) => x.id === w || x.id.startsWith(w + '-')));
}

// ------------------------------------------------------------------ helpers

async function verifyBlob(server, repo, blob) {
  const res = await ctx.client(server).request('HEAD', `/v2/${repo}/blobs/${blob.digest}`);
  if (res.status !== 200) throw new Error(`after push, HEAD blob: HTTP ${res.status}`);
  if (Number(res.headers['content-length']) !== blob.size) throw new Error(`after push, HEAD blob: Content-Length ${res.headers['content-length']}, expected ${blob.size}`);
}

// Each wrk/ab measurement follows a warm-up run of the same load (JIT,
// V8's heap sizing, the server's caches and the kernel's socket buffers
// settle before the clock starts); the warm-up's figures are dropped.
async function wrk(server, ctx, url, o = {}) {
  const common = { ...o, connections: cfg.connections, threads: cfg.wrkThreads, tmpDir: ctx.tmp, cpus: cfg.pin?.load };
  if (cfg.warmupS > 0) await runWrk(url, { ...common, durationS: cfg.warmupS });
  const t0 = server.cpuTicks();
  const w = await runWrk(url, { ...common, durationS: cfg.durationS });
  w.cpuUs = cpuPerRequest(server.cpuTicks() - t0, w.requests);
  if (w.non2xx > 0) throw new Error(`wrk: ${w.non2xx} of ${w.requests} responses were not 2xx/3xx`);
  if (w.socketErrors) ctx.notes.add(`${server.name}, ${url.replace(server.url, '')}: wrk ${w.socketErrors}`);
  return w;
}

async function ab(server, ctx, url, o = {}) {
  const common = { ...o, connections: cfg.connections, cpus: cfg.pin?.load };
  if (cfg.warmupS > 0) await runAb(url, { ...common, durationS: cfg.warmupS });
  const t0 = server.cpuTicks();
  const a = await runAb(url, { ...common, durationS: cfg.durationS });
  a.cpuUs = cpuPerRequest(server.cpuTicks() - t0, a.requests);
  if (a.non2xx > 0) throw new Error(`ab: ${a.non2xx} of ${a.requests} responses were not 2xx`);
  if (a.failed > 0) ctx.notes.add(`${server.name}, ${url.replace(server.url, '')}: ab reports ${a.failed} failed requests of ${a.requests}`);
  if (a.keepAlive < a.requests * 0.99) ctx.notes.add(`${server.name}, ${url.replace(server.url, '')}: only ${a.keepAlive} of ${a.requests} requests reused a connection (HTTP/1.0 keep-alive)`);
  return a;
}

/**
 * Server CPU time per request, in µs: what the server itself spent, which
 * other processes on the machine change much less than they change req/s.
 */
function cpuPerRequest(ticks, requests) {
  const hz = 100; // USER_HZ: /proc/<pid>/stat counts in 1/100 s on Linux
  return requests > 0 ? (ticks / hz / requests) * 1e6 : NaN;
}

function fmt(v) {
  if (v === undefined || Number.isNaN(v)) return '—';
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

async function firstLine(cmd, args) {
  try {
    const r = await run(cmd, args, { timeoutMs: 10_000 });
    return (r.stdout || r.stderr).trim().split('\n')[0];
  } catch {
    return 'n/a';
  }
}

/** Share of the machine's CPU used by other user processes over `ms`. */
async function cpuBusy(ms = 2000) {
  const a = cpuSnapshot();
  await new Promise((r) => setTimeout(r, ms));
  return foreignShare(a, cpuSnapshot());
}

/** Wait (up to `maxS` seconds) until other processes use less than 10% of the CPU over 1 s. */
async function waitIdle(maxS) {
  const deadline = Date.now() + maxS * 1000;
  let share = await cpuBusy(1000);
  if (share < 0.1) return;
  process.stderr.write(`bench: waiting for the machine to be idle (others: ${(share * 100).toFixed(0)}%) `);
  while (Date.now() < deadline) {
    share = await cpuBusy(1000);
    if (share < 0.1) break;
    process.stderr.write('.');
  }
  process.stderr.write(share < 0.1 ? ' idle\n' : ` gave up (others: ${(share * 100).toFixed(0)}%)\n`);
}

async function machineInfo(registryBin) {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const mhz = /^cpu MHz\s*:\s*(.*)$/m.exec(cpuinfo)?.[1];
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  const commit = await firstLine('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
  const dirty = await run('git', ['-C', repoRoot, 'status', '--porcelain', '--', 'src'], { timeoutMs: 10_000 }).then((r) => r.stdout.trim() !== '', () => false);
  return {
    date: new Date().toISOString(),
    cpu: `${model}${mhz ? ` (${Math.round(Number(mhz))} MHz)` : ''}`,
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    curl: await firstLine('curl', ['--version']),
    wrk: (await firstLine('wrk', ['-v'])).replace(/ Copyright.*/, ''),
    ab: (await firstLine('ab', ['-V'])).replace(/ <\$Revision.*/, '').replace('This is ', ''),
    reference: registryBin ? await firstLine(registryBin, ['--version']) : 'n/a',
    berth: `${commit}${dirty ? ' (uncommitted changes in src/)' : ''}`,
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    busyBefore: await cpuBusy(),
  };
}

// ------------------------------------------------------------------ setup

const servers = [];
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-'));
const ctx = {
  tmp: tmpRoot,
  notes: new Set(),
  seed: new Map(),
  clients: new Map(),
  client(server) {
    if (!this.clients.has(server.name)) this.clients.set(server.name, new RegistryClient(server.url, { maxSockets: 16 }));
    return this.clients.get(server.name);
  },
};

let cleanedUp = false;
function cleanupSync() {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const s of servers) s.killNow();
  for (const c of liveChildren) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* ignore */
    }
  }
  if (!backends.cleaned && (backends.prefix || backends.db)) {
    const left = [backends.prefix && `S3 objects under s3://${s3.bucket}/${backends.prefix}`, backends.db && `PostgreSQL database ${backends.db.name}`].filter(Boolean);
    console.error(`bench: left behind: ${left.join(', ')}`);
  }
  if (opt['keep-tmp']) console.error(`bench: kept ${tmpRoot}`);
  else fs.rmSync(tmpRoot, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}
process.on('exit', cleanupSync);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));
process.on('uncaughtException', (e) => {
  console.error(`bench: ${e.stack ?? e}`);
  process.exit(1);
});
process.on('unhandledRejection', (e) => {
  console.error(`bench: ${e?.stack ?? e}`);
  process.exit(1);
});

/** Make sure `cmd` is on PATH, installing Debian package `pkg` (as root) if it is not. */
async function ensureCommand(cmd, pkg) {
  let bin = await which(cmd);
  if (bin) return bin;
  if (process.getuid?.() !== 0) die(`${cmd} is missing: install it (sudo apt-get install -y ${pkg})`);
  console.error(`bench: ${cmd} is missing; apt-get install -y ${pkg} …`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => run('apt-get', ['install', '-y', '--no-install-recommends', pkg], { timeoutMs: 600_000, env });
  for (let attempt = 1; attempt <= 20; attempt++) {
    let r = await install();
    if (r.code !== 0 && /Unable to locate package|has no installation candidate/.test(r.stderr)) {
      await run('apt-get', ['update'], { timeoutMs: 600_000, env });
      r = await install();
    }
    if (r.code === 0) break;
    if (/Could not get lock|dpkg was interrupted|lock-frontend|is locked/.test(r.stderr)) {
      console.error(`bench: apt is locked, retrying in 15 s (${attempt}/20)…`);
      await new Promise((res) => setTimeout(res, 15_000));
      continue;
    }
    die(`apt-get install ${pkg} failed:\n${r.stderr}`);
  }
  bin = await which(cmd);
  if (!bin) die(`${cmd} is still missing after apt-get install ${pkg}`);
  return bin;
}

async function ensureTools() {
  await ensureCommand('curl', 'curl');
  await ensureCommand('wrk', 'wrk');
  await ensureCommand('ab', 'apache2-utils');
}

async function ensureReferenceBinary() {
  if (opt['registry-bin']) return opt['registry-bin'];
  return ensureCommand('docker-registry', 'docker-registry');
}

async function ensureBerthBuilt() {
  if (opt['berth-cmd']) return;
  if (!opt['no-build']) {
    console.error('bench: npm run build …');
    const r = await run('npm', ['run', 'build', '--silent'], { timeoutMs: 600_000 });
    if (r.code !== 0) die(`npm run build failed (use --no-build to run the existing dist/):\n${(r.stdout + r.stderr).trim().split('\n').slice(-30).join('\n')}`);
  }
  if (!fs.existsSync(path.join(repoRoot, 'dist/src/cli/main.js'))) die('dist/src/cli/main.js is missing: run `npm run build` (or pass --berth-cmd)');
}

async function seedServer(server) {
  // One small image, tagged tagCount times (tag-0000 … ), for HEAD/GET/tags workloads.
  const client = new RegistryClient(server.url, { maxSockets: 16 });
  try {
    const img = await client.pushRandomImage(SEED_REPO, 'tag-0000');
    await pool(cfg.tagCount - 1, 16, (i) => client.pushManifest(SEED_REPO, `tag-${String(i + 1).padStart(4, '0')}`, img.manifest, img.mediaType));
    ctx.seed.set(server.name, img);
  } finally {
    client.close();
  }
}

/** Removes this run's S3 prefix and PostgreSQL database (unless --keep-tmp). */
async function cleanupBackends() {
  if (opt['keep-tmp']) return;
  try {
    if (backends.prefix) await deleteS3Prefix(repoRoot, s3, backends.prefix);
    if (backends.db) await backends.db.drop();
    backends.cleaned = true;
  } catch (e) {
    console.error(`bench: cleaning up the S3 prefix / database failed: ${e.message}`);
  }
}

// ------------------------------------------------------------------ main

async function main() {
  await ensureTools();
  const registryBin = serverNames.includes('reference') ? await ensureReferenceBinary() : null;
  if (serverNames.includes('berth')) await ensureBerthBuilt();

  const info = await machineInfo(registryBin);
  const header = [
    '## Machine',
    '',
    `- date: ${info.date}`,
    `- CPU: ${info.cpu}, nproc ${info.nproc}; memory ${info.memory}; ${info.kernel}`,
    `- load average at start: ${info.loadavg}; CPU used by other processes in the 2 s before start: ${(info.busyBefore * 100).toFixed(0)}%` +
      (info.busyBefore > 0.1 ? ' — **WARNING: the machine was not idle; figures are unreliable**' : ''),
    `- node ${info.node}; ${info.curl.split(' (')[0]}; ${info.wrk}; ${info.ab}`,
    `- reference: ${info.reference}`,
    `- berth: commit ${info.berth}`,
    `- storage: ${s3 ? `S3 at ${s3.endpoint}, bucket ${s3.bucket}, prefix ${backends.prefix}{berth,reference}/ (reference: s3 driver, chunksize 5 MiB)` : 'local filesystem'}; ` +
      `Berth metadata: ${opt.metadata === 'postgres' ? `PostgreSQL (${PG_ADMIN_URL.replace(/\/[^/]*$/, '/')}<fresh database>)` : 'SQLite'}`,
    '',
    `Settings: rounds ${cfg.rounds}, blob ${cfg.sizeMiB} MiB (chunks ${cfg.chunkMiB} MiB), pull repeats ${cfg.pullRepeats}, ` +
      `wrk ${cfg.durationS}s × ${cfg.connections} connections × ${cfg.wrkThreads} threads, ` +
      `${cfg.smallImages} small images × ${cfg.smallConcurrency} in flight, ${cfg.tagCount} tags, ` +
      `warm-up ${cfg.warmupS}s before each wrk/ab run, ` +
      (cfg.pin ? `servers pinned to CPU ${cfg.pin.servers} and wrk/ab to CPU ${cfg.pin.load} (taskset)` : 'no CPU pinning') +
      `${cfg.waitIdleS ? `, wait-idle ${cfg.waitIdleS}s` : ''}. MB = 10^6 bytes.`,
    '',
  ].join('\n');
  console.log(header);

  // Start servers.
  if (opt.metadata === 'postgres' && serverNames.includes('berth')) {
    try {
      backends.db = await createBenchDatabase();
    } catch (e) {
      die(`--metadata postgres: cannot create a database through ${PG_ADMIN_URL}: ${e.message}`, 1);
    }
  }
  const s3For = (name) => (s3 ? { settings: s3, prefix: `${backends.prefix}${name}/` } : undefined);
  const cpus = cfg.pin?.servers;
  for (const name of serverNames) {
    let s;
    if (name === 'berth') s = await berthServer({ tmpRoot, repoRoot, cmdTemplate: opt['berth-cmd'], s3: s3For('berth'), metadataUrl: backends.db?.url, cpus });
    else if (name === 'reference') s = await referenceServer({ tmpRoot, bin: registryBin, s3: s3For('reference'), cpus });
    else {
      // The ceiling serves a fixed image instead of being seeded through the API.
      const image = randomImage();
      ctx.seed.set('ceiling', image);
      s = await ceilingServer({ tmpRoot, repoRoot, image, cpus });
    }
    servers.push(s);
    try {
      await s.start();
    } catch (e) {
      die(`could not start ${name}: ${e.message}`, 1);
    }
    console.error(`bench: ${name} up at ${s.url} (pid ${s.pid})`);
  }
  const sampler = setInterval(() => servers.forEach((s) => s.sample()), 200);
  sampler.unref();

  /** results[figureId][server] = number[] (one per round) */
  const results = {};
  const errors = {}; // errors[figureId][server] = message
  const recordError = (w, server, e) => {
    for (const f of w.figures) (errors[f.id] ??= {})[server.name] ??= e.message.split('\n')[0];
    console.error(`bench: ${w.id} on ${server.name} failed: ${e.message}`);
  };
  const dead = new Set();
  const foreignCpu = {}; // foreignCpu[workload][server] = worst share of CPU used by other processes
  const foreignSum = { used: 0, total: 0 }; // over all measurements

  // Shared setup, before any round.
  const needs = new Set(selected.flatMap((w) => w.needs ?? []));
  const setupFailed = new Map(); // server -> message
  if (needs.has('pullBlob')) {
    console.error(`bench: setup: generating and pushing the ${cfg.sizeMiB} MiB pull blob`);
    ctx.pullBlob = makeRandomBlob(tmpRoot, 'pull', cfg.sizeMiB * MiB);
    for (const s of servers) {
      if (s.name === 'ceiling') continue;
      try {
        await curlPushMonolithic(s.url, 'bench/pull', ctx.pullBlob);
        await verifyBlob(s, 'bench/pull', ctx.pullBlob);
      } catch (e) {
        setupFailed.set(`${s.name}:pullBlob`, e.message);
        console.error(`bench: setup of pull blob on ${s.name} failed: ${e.message}`);
      }
    }
    removeBlobFiles(ctx.pullBlob); // the server has it; we only need digest and size
  }
  if (needs.has('seed')) {
    for (const s of servers) {
      if (s.name === 'ceiling') continue;
      console.error(`bench: setup: seeding ${SEED_REPO} with ${cfg.tagCount} tags on ${s.name}`);
      const t0 = Date.now();
      try {
        await seedServer(s);
        console.error(`bench:   done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      } catch (e) {
        setupFailed.set(`${s.name}:seed`, e.message);
        console.error(`bench: seeding ${s.name} failed: ${e.message}`);
      }
    }
  }

  for (let round = 1; round <= cfg.rounds; round++) {
    // Alternate which server goes first, round by round.
    const order = round % 2 === 1 ? servers : [...servers].reverse();
    for (const w of selected) {
      if (w.beforeRound) await w.beforeRound(ctx);
      try {
        for (const s of order) {
          if (s.name === 'ceiling' && !w.ceiling) continue;
          if (dead.has(s.name)) {
            recordError(w, s, new Error(`skipped: ${s.name} died earlier (${s.describeExit()})`));
            continue;
          }
          const failedNeed = (w.needs ?? []).map((n) => setupFailed.get(`${s.name}:${n}`)).find(Boolean);
          if (failedNeed) {
            recordError(w, s, new Error(`setup failed: ${failedNeed}`));
            continue;
          }
          try {
            let r;
            let foreign = Infinity;
            for (let attempt = 0; ; attempt++) {
              // Flush dirty pages (our blob files, the previous server's writes) so that
              // one server's writeback does not land in the other's measurement.
              await run('sync', [], { timeoutMs: 300_000 });
              if (cfg.waitIdleS > 0) await waitIdle(cfg.waitIdleS);
              process.stderr.write(`bench: round ${round}/${cfg.rounds} ${w.id} on ${s.name}${attempt ? ` (retry ${attempt})` : ''} … `);
              const c0 = cpuSnapshot();
              const m = await w.measure(s, ctx, round, attempt);
              const ft = foreignTicks(c0, cpuSnapshot());
              const f = ft.total > 0 ? Math.min(1, ft.used / ft.total) : 0;
              foreignSum.used += ft.used;
              foreignSum.total += ft.total;
              s.assertAlive();
              // Of several attempts, keep the one least disturbed by other processes.
              if (f < foreign) [r, foreign] = [m, f];
              process.stderr.write(
                Object.entries(m)
                  .map(([k, v]) => `${k}=${fmt(v)}`)
                  .join(' ') + ` (other processes: ${(f * 100).toFixed(0)}% CPU; ${s.name} peak memory so far ${s.peakRssMiB().toFixed(0)} MiB)\n`,
              );
              if (foreign <= 0.1 || attempt >= cfg.retryNoisy || w.retryable === false) break;
            }
            for (const [k, v] of Object.entries(r)) ((results[k] ??= {})[s.name] ??= []).push(v);
            (foreignCpu[w.id] ??= {})[s.name] = Math.max(foreignCpu[w.id]?.[s.name] ?? 0, foreign);
          } catch (e) {
            process.stderr.write('failed\n');
            if (s.exited) {
              dead.add(s.name);
              e = new Error(`${s.name} died (${s.describeExit()}) during ${w.id}\n${s.logTail()}`);
            }
            recordError(w, s, e);
          }
        }
      } finally {
        if (w.afterRound) w.afterRound(ctx);
      }
    }
  }

  clearInterval(sampler);
  for (const s of servers) s.sample();
  const foreignTotal = foreignSum.total > 0 ? foreignSum.used / foreignSum.total : 0;
  const rss = Object.fromEntries(servers.map((s) => [s.name, s.peakRssMiB()]));
  for (const c of ctx.clients.values()) c.close();
  for (const s of servers) await s.stop();
  await cleanupBackends();
  info.loadavgEnd = os.loadavg().map((x) => x.toFixed(2)).join(' ');

  // ---------------------------------------------------------------- report
  const hasBerth = serverNames.includes('berth');
  const hasRef = serverNames.includes('reference');
  const figures = [...selected.flatMap((w) => w.figures), ALL_FIGURES.find((f) => f.id === 'peak-rss')];
  const lines = [
    `## Results (median of ${cfg.rounds} round${cfg.rounds > 1 ? 's' : ''})`,
    '',
    '| workload | unit | berth | reference | ratio | target | met? |',
    '|---|---|--:|--:|--:|---|---|',
  ];
  const summary = {};
  let unmet = 0;
  for (const f of figures) {
    const val = (name) => {
      if (f.id === 'peak-rss') return rss[name];
      if (errors[f.id]?.[name]) return NaN;
      return median(results[f.id]?.[name] ?? []);
    };
    const cell = (name, present) => {
      if (!present) return '—';
      if (errors[f.id]?.[name]) return 'ERROR';
      return fmt(val(name));
    };
    const b = val('berth');
    const r = val('reference');
    const ratio = hasBerth && hasRef && Number.isFinite(b) && Number.isFinite(r) && r > 0 ? b / r : NaN;
    let target = '';
    let met = '';
    if (f.target !== undefined) {
      target = `≥ ${f.target}×`;
      met = Number.isFinite(ratio) ? (ratio >= f.target ? 'yes' : 'NO') : '—';
    } else if (f.berthMax !== undefined) {
      target = `berth ≤ ${f.berthMax} MiB`;
      met = hasBerth && Number.isFinite(b) ? (b <= f.berthMax ? 'yes' : 'NO') : '—';
    }
    if (met === 'NO') unmet++;
    summary[f.id] = { label: f.label.trim(), unit: f.unit, berth: b, reference: r, ratio, target: f.target ?? null, berthMax: f.berthMax ?? null, met };
    lines.push(`| ${f.label.trim()} | ${f.unit} | ${cell('berth', hasBerth)} | ${cell('reference', hasRef)} | ${Number.isFinite(ratio) ? fmt(ratio) + '×' : '—'} | ${target} | ${met} |`);
  }
  lines.push('', 'Latency ratios are berth/reference too: below 1× means Berth is faster.', '');
  const hasCeiling = serverNames.includes('ceiling');
  const ceilingFigures = selected.filter((w) => w.ceiling).flatMap((w) => w.figures.filter((f) => f.target !== undefined));
  if (hasCeiling && ceilingFigures.length) {
    lines.push(
      `Against the measured ceiling (a bare node:http server with fixed answers of the same shape, same Node, same client; target: Berth ≥ ${CEILING_TARGET * 100}% of it):`,
      '',
      '| workload | unit | berth | reference | ceiling | berth % of ceiling | reference % of ceiling | met? | server CPU µs/request: berth / ceiling | ceiling CPU ÷ berth CPU |',
      '|---|---|--:|--:|--:|--:|--:|---|--:|--:|',
    );
    for (const f of ceilingFigures) {
      const v = (name) => (errors[f.id]?.[name] ? NaN : median(results[f.id]?.[name] ?? []));
      const [b, r, c] = ['berth', 'reference', 'ceiling'].map(v);
      const pct = (x) => (Number.isFinite(x) && c > 0 ? `${((x / c) * 100).toFixed(0)}%` : '—');
      const share = hasBerth && Number.isFinite(b) && c > 0 ? b / c : NaN;
      const met = Number.isFinite(share) ? (share >= CEILING_TARGET ? 'yes' : 'NO') : '—';
      if (met === 'NO') unmet++;
      summary[f.id].ceiling = c;
      summary[f.id].shareOfCeiling = share;
      const cpu = (name) => median(results[`${f.id}-cpu`]?.[name] ?? []);
      const [bc, cc] = [cpu('berth'), cpu('ceiling')];
      const cpuShare = Number.isFinite(bc) && Number.isFinite(cc) && bc > 0 ? `${((cc / bc) * 100).toFixed(0)}%` : '—';
      lines.push(`| ${f.label.trim()} | ${f.unit} | ${fmt(b)} | ${fmt(r)} | ${fmt(c)} | ${pct(b)} | ${pct(r)} | ${met} | ${fmt(bc)} / ${fmt(cc)} | ${cpuShare} |`);
    }
    lines.push('');
  }
  // How much each server's figure moved from round to round.
  if (cfg.rounds > 1) {
    lines.push('Spread over the rounds (throughput and CPU-per-request figures; CV = standard deviation / mean):', '', '| workload | server | min | median | max | CV |', '|---|---|--:|--:|--:|--:|');
    for (const f of figures) {
      if (f.id === 'peak-rss' || (f.lowerIsBetter && !f.id.endsWith('-cpu'))) continue;
      for (const s of servers) {
        const xs = results[f.id]?.[s.name] ?? [];
        if (xs.length < 2) continue;
        const mean = xs.reduce((a, x) => a + x, 0) / xs.length;
        const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1));
        (summary[f.id].spread ??= {})[s.name] = { min: Math.min(...xs), median: median(xs), max: Math.max(...xs), cv: sd / mean };
        lines.push(`| ${f.id} | ${s.name} | ${fmt(Math.min(...xs))} | ${fmt(median(xs))} | ${fmt(Math.max(...xs))} | ${((sd / mean) * 100).toFixed(1)}% |`);
      }
    }
    lines.push('');
  }
  lines.push('Per-round values:', '');
  for (const f of figures) {
    if (f.id === 'peak-rss') continue;
    const parts = servers.filter((s) => s.name !== 'ceiling' || results[f.id]?.ceiling).map((s) => `${s.name} ${(results[f.id]?.[s.name] ?? []).map(fmt).join(', ') || '—'}`);
    lines.push(`- ${f.id} (${f.unit}): ${parts.join('; ')}`);
  }
  lines.push(
    '',
    `Load average at end: ${info.loadavgEnd}. CPU used by user processes other than the servers, curl/wrk/ab and this harness` +
      `${servicesCounted ? ` (and the ${[s3 && 'S3 store', opt.metadata === 'postgres' && 'PostgreSQL'].filter(Boolean).join(' and ')}, counted as workload although shared)` : ''}: ` +
      `${(foreignTotal * 100).toFixed(0)}% of the machine, over all measurements.`,
  );
  const noisy = Object.entries(foreignCpu).flatMap(([wid, m]) =>
    Object.entries(m)
      .filter(([, v]) => v > 0.1)
      .map(([sn, v]) => `${wid} on ${sn} (${(v * 100).toFixed(0)}%)`),
  );
  if (noisy.length) lines.push('', `**WARNING: other processes used more than 10% of the CPU during:** ${noisy.join(', ')}. Re-run on an idle machine.`);
  const errs = selected.flatMap((w) => Object.entries(errors[w.figures[0].id] ?? {}).map(([s, msg]) => `- ${w.id} on ${s}: ${msg}`));
  if (errs.length) lines.push('', '**Errors:**', '', ...[...new Set(errs)]);
  if (ctx.notes.size) lines.push('', 'Notes:', '', ...[...ctx.notes].map((n) => `- ${n}`));
  const report = lines.join('\n');
  console.log(report);

  if (opt.out) fs.writeFileSync(opt.out, `${header}\n${report}\n`);
  if (opt.json) fs.writeFileSync(opt.json, JSON.stringify({ machine: info, settings: cfg, servers: serverNames, results, errors, peakRssMiB: rss, foreignCpu, foreignTotal, summary }, null, 2) + '\n');
  process.exitCode = errs.length ? 1 : 0;
  if (unmet && !errs.length) console.error(`bench: ${unmet} target(s) not met`);
}

await main();
