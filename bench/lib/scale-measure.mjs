// The scale benchmark's measure mode: on a loaded dataset, starts `berth
// serve` (its background collector off, so that only the passes this runs
// are timed) and measures what issue 18 names: startup time, resident
// memory, read latency and throughput, the push rate through the API, GC
// passes (first pass after the bulk load, steady state, dry runs) as
// separate `berth gc` processes while the server runs, `fsck --quick`, and
// the metadata's size.
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { RegistryClient, HttpError, pool } from './client.mjs';
import { ServerProcess, freePort } from './servers.mjs';
import { run, runWrk, runAb, percentile } from './tools.mjs';
import { REPOSITORIES, mainImage, makeImage, repositoryOf, bigRepository, bigTag, POOL } from './scale-content.mjs';

const MiB = 1024 * 1024;

/** Environment for Berth's processes: none of the caller's BERTH_* settings, production mode, background GC off. */
function berthEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BERTH_')) env[k] = v;
  return { ...env, NODE_ENV: 'production', BERTH_GC_ENABLED: 'false' };
}

function nodeFlags(main) {
  const shebang = /^#!\S*env -S node(.*)$/m.exec(fs.readFileSync(main, 'utf8').split('\n', 1)[0]);
  return shebang ? shebang[1].trim().split(/\s+/).filter(Boolean) : [];
}

function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Runs a berth command to completion under /usr/bin/time: wall time, CPU seconds, peak RSS, its JSON report. */
async function timed(repoRoot, args, tmp, label) {
  const main = path.join(repoRoot, 'dist/src/cli/main.js');
  const timeFile = path.join(tmp, `time-${label}.txt`);
  const t0 = performance.now();
  const res = await new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, process.execPath, ...nodeFlags(main), main, ...args], { env: berthEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  const seconds = (performance.now() - t0) / 1000;
  const [, user, sys, maxKb] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  let report;
  try {
    report = JSON.parse(res.stdout);
  } catch {
    report = undefined;
  }
  return { label, code: res.code, seconds, cpuSeconds: user + sys, peakRssMiB: maxKb / 1024, report, stderr: res.stderr.slice(-2000) };
}

async function metadataBytes(repoRoot, state, dataDir) {
  if (!state.metadataUrl) {
    let bytes = 0;
    for (const f of ['metadata.db', 'metadata.db-wal']) bytes += fs.statSync(path.join(dataDir, f), { throwIfNoEntry: false })?.size ?? 0;
    return bytes;
  }
  return withPg(repoRoot, state.metadataUrl, async (client) => Number((await client.query('SELECT pg_database_size(current_database()) AS n')).rows[0].n));
}

/** One connection to the dataset's database for `fn`, with the project's own pg. */
async function withPg(repoRoot, url, fn) {
  const { default: pg } = await import(pathToFileURL(path.join(repoRoot, 'node_modules/pg/lib/index.js')).href);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** wrk over many URLs (one per request, in turn), so reads are spread over the dataset rather than one hot row. */
async function wrkPaths(base, paths, { headers = {}, durationS, tmp, name }) {
  const script = path.join(tmp, `wrk-${name}.lua`);
  const lines = [
    'local paths = {',
    ...paths.map((p) => `  ${JSON.stringify(p)},`),
    '}',
    'local i = 0',
    'request = function()',
    '  i = i % #paths + 1',
    '  return wrk.format("GET", paths[i])',
    'end',
  ];
  fs.writeFileSync(script, lines.join('\n') + '\n');
  const args = ['-t', '2', '-c', '16', '-d', `${durationS}s`, '--timeout', '10s', '--latency', '-s', script];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(base);
  const r = await run('wrk', args, { timeoutMs: (durationS + 60) * 1000 });
  if (r.code !== 0) throw new Error(`wrk: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  const out = r.stdout;
  const toMs = (s) => {
    const m = /^([\d.]+)(us|ms|s)$/.exec(s ?? '');
    return m ? Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]] : NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  if (non2xx) throw new Error(`wrk ${name}: ${non2xx} non-2xx answers`);
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]), p50: toMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1]), p99: toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1]) };
}

/** Picks `k` of the dataset's images, spread evenly (deterministic). */
function sample(n, k) {
  return Array.from({ length: Math.min(n, k) }, (_, j) => mainImage(Math.floor(((j + 0.5) * n) / Math.min(n, k))));
}

export async function measure({ repoRoot, dir, state, opt, log, loadResult }) {
  const N = state.images;
  const dataDir = path.join(dir, 'data');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-scale-'));
  const main = path.join(repoRoot, 'dist/src/cli/main.js');
  const storeArgs = ['--data', dataDir, ...(state.metadataUrl ? ['--metadata', state.metadataUrl] : [])];
  const durationS = Number(opt.duration);
  const P = Number(opt['push-images']);
  // A load leaves gigabytes of dirty pages that the kernel writes back for
  // minutes afterwards; every fsync waits behind them. Measured right after
  // a 1M load, pushes ran at 165 images/s, and at 237-287 once written back.
  const synced = performance.now();
  await run('sync', [], { timeoutMs: 900_000 });
  log(`sync before measuring: ${((performance.now() - synced) / 1000).toFixed(1)} s`);
  if (state.metadataUrl) {
    // What autovacuum does in production: this machine's PostgreSQL runs with
    // autovacuum off, and a freshly loaded dataset then has no visibility map
    // and every dead version a load left (the many-tag repository's row is
    // updated once per tag): a tags/list page walked 58 buffers to find that
    // repository's row.
    const vacuumed = performance.now();
    await withPg(repoRoot, state.metadataUrl, (client) => client.query('VACUUM (ANALYZE)'));
    log(`VACUUM (ANALYZE) before measuring: ${((performance.now() - vacuumed) / 1000).toFixed(1)} s`);
  }
  const r = { store: state.store, images: N, date: new Date().toISOString(), commit: await gitCommit(repoRoot), loadavg: os.loadavg()[0] };
  r.bigTags = state.bigTags?.[0] ?? 0;
  if (loadResult) r.load = { imagesPerSecond: loadResult.rate, images: loadResult.images, seconds: loadResult.seconds };
  r.metadataBytesPerImage = (await metadataBytes(repoRoot, state, dataDir)) / N;
  log(`${state.store} ${N}: metadata ${(r.metadataBytesPerImage).toFixed(0)} B/image`);

  // ------------------------------------------------------------ serve: startup and memory
  // First on an empty data directory (SQLite): the start-up cost that does
  // not depend on the registry's size (Node and module loading, which a busy
  // machine stretches), to read the dataset's figure against.
  {
    const emptyDir = path.join(tmp, 'empty');
    fs.mkdirSync(emptyDir);
    const p = await freePort();
    const empty = new ServerProcess({
      name: 'berth (empty)',
      command: process.execPath,
      args: [...nodeFlags(main), main, 'serve', '--addr', `127.0.0.1:${p}`, '--log-level', 'warn', '--data', emptyDir],
      cwd: repoRoot,
      env: berthEnv(),
      port: p,
      dataDir: emptyDir,
      logFile: path.join(tmp, 'empty.log'),
    });
    const te = performance.now();
    await empty.start({ timeoutMs: 120_000 });
    r.startupEmptySeconds = (performance.now() - te) / 1000;
    await empty.stop();
  }
  const port = await freePort();
  const server = new ServerProcess({
    name: 'berth',
    command: process.execPath,
    args: [...nodeFlags(main), main, 'serve', '--addr', `127.0.0.1:${port}`, '--log-level', 'warn', ...storeArgs],
    cwd: repoRoot,
    env: berthEnv(),
    port,
    dataDir,
    logFile: path.join(tmp, 'server.log'),
  });
  const stopServer = () => server.killNow();
  process.on('exit', stopServer);
  const t0 = performance.now();
  await server.start({ timeoutMs: 600_000 });
  r.startupSeconds = (performance.now() - t0) / 1000;
  await new Promise((res) => setTimeout(res, 2000));
  r.serveRssAfterStartMiB = rssMiB(server.pid);
  log(`serve up in ${r.startupSeconds.toFixed(2)} s, RSS ${r.serveRssAfterStartMiB.toFixed(0)} MiB`);
  const base = server.url;
  const client = new RegistryClient(base, { maxSockets: 16 });
  try {
    // ---------------------------------------------------------- reads
    const images = sample(N, 2000);
    const check = await client.request('GET', `/v2/${images[0].repository}/manifests/${images[0].tag}`, { headers: { accept: images[0].mediaType } });
    if (check.status !== 200 || !check.body.equals(images[0].manifest)) throw new HttpError('GET manifest of a loaded image', check);
    const accept = { accept: images[0].mediaType };
    r.reads = {};
    const head = images[Math.floor(images.length / 2)];
    const ab = await runAb(`${base}/v2/${head.repository}/blobs/${head.layer.digest}`, { method: 'HEAD', connections: 16, durationS });
    if (ab.non2xx || ab.failed) throw new Error(`HEAD blob: ${ab.non2xx} non-2xx, ${ab.failed} failed`);
    r.reads.headBlob = { rps: ab.rps, p99: ab.p99 };
    r.reads.manifestByTag = await wrkPaths(base, images.map((i) => `/v2/${i.repository}/manifests/${i.tag}`), { headers: accept, durationS, tmp, name: 'tag' });
    r.reads.manifestByDigest = await wrkPaths(base, images.map((i) => `/v2/${i.repository}/manifests/${i.digest}`), { headers: accept, durationS, tmp, name: 'digest' });
    const big = bigRepository(0);
    const bigTags = state.bigTags?.[0] ?? 0;
    if (bigTags > 0) {
      r.reads.tagsFirstPage = await wrkPaths(base, [`/v2/${big}/tags/list?n=100`], { durationS, tmp, name: 'tags-first' });
      const deep = bigTag(Math.floor(bigTags * 0.9));
      r.reads.tagsDeepPage = await wrkPaths(base, [`/v2/${big}/tags/list?n=100&last=${deep}`], { durationS, tmp, name: 'tags-deep' });
    }
    r.reads.catalogFirstPage = await wrkPaths(base, ['/v2/_catalog?n=100'], { durationS, tmp, name: 'catalog-first' });
    r.reads.catalogDeepPage = await wrkPaths(base, [`/v2/_catalog?n=100&last=${repositoryOf(Math.floor(REPOSITORIES * 0.9))}`], { durationS, tmp, name: 'catalog-deep' });
    server.sample();
    r.serveRssAfterReadsMiB = rssMiB(server.pid);
    log(`reads done (${Object.entries(r.reads).map(([k, v]) => `${k} ${v.rps.toFixed(0)}/s p99 ${v.p99} ms`).join('; ')}); RSS ${r.serveRssAfterReadsMiB.toFixed(0)} MiB`);

    // ---------------------------------------------------------- GC: the first passes after the bulk load
    // Default grace: what a scheduled pass right after the load does (the
    // new blobs are within their grace period). Grace 0: the pass that looks
    // at every blob the load added (each one a candidate until GC has seen
    // it once): its dry run first, since the real pass leaves nothing to look at.
    r.gc = {};
    r.gc.firstDefaultGrace = await gcPass(repoRoot, storeArgs, [], tmp, 'first-default');
    // --skip-gc: the grace-0 passes look at every loaded blob once (at 1M,
    // 1.6M blobs: many minutes); the reads, pushes and fsck do not need them.
    const skipGc = Boolean(opt['skip-gc']);
    if (!skipGc) {
      // --skip-first-dry-run: on PostgreSQL at 1M each first pass is ~15 minutes; the steady-state dry run still runs.
      if (!opt['skip-first-dry-run']) r.gc.firstDryRun = await gcPass(repoRoot, storeArgs, ['--grace', '0', '--dry-run'], tmp, 'first-dry');
      r.gc.first = await gcPass(repoRoot, storeArgs, ['--grace', '0'], tmp, 'first');
      log(`gc first pass: default grace ${r.gc.firstDefaultGrace.seconds.toFixed(1)} s; grace 0 dry run ${r.gc.firstDryRun?.seconds.toFixed(1) ?? 'skipped'} s, real ${r.gc.first.seconds.toFixed(1)} s (${r.gc.first.peakRssMiB.toFixed(0)} MiB)`);
    }

    // ---------------------------------------------------------- pushes through the API
    const stamp = Date.now().toString(36);
    const pushed = Array.from({ length: P }, (_, k) => ({ ...makeImage(`push-${stamp}-${k}`, k % POOL), repository: repositoryOf(k), tag: `p${stamp}-${k}` }));
    const perImage = [];
    const tp = performance.now();
    await pool(P, 16, async (k) => {
      const img = pushed[k];
      const t = performance.now();
      for (const b of [img.shared, img.layer, img.config]) await client.pushBlob(img.repository, b.data, b.digest);
      await client.pushManifest(img.repository, img.tag, img.manifest, img.mediaType);
      perImage.push(performance.now() - t);
    });
    r.push = { images: P, imagesPerSecond: P / ((performance.now() - tp) / 1000), p99ms: percentile(perImage, 99) };
    log(`push: ${r.push.imagesPerSecond.toFixed(0)} images/s, p99 ${r.push.p99ms.toFixed(1)} ms per image`);

    // ---------------------------------------------------------- GC: steady state
    // A pass that sees the pushed images (nothing is garbage), then they are
    // deleted through the API, and the passes that collect them are timed:
    // the cost of 1,000 images' garbage in a registry of N.
    if (!skipGc) r.gc.seen = await gcPass(repoRoot, storeArgs, ['--grace', '0'], tmp, 'seen');
    if (!skipGc) await pool(P, 16, async (k) => {
      const img = pushed[k];
      const res = await client.request('DELETE', `/v2/${img.repository}/manifests/${img.digest}`);
      if (res.status !== 202) throw new HttpError(`DELETE ${img.repository}@${img.digest}`, res);
    });
    if (!skipGc) {
      r.gc.steadyDryRun = await gcPass(repoRoot, storeArgs, ['--grace', '0', '--dry-run'], tmp, 'steady-dry');
      r.gc.steady = await gcPass(repoRoot, storeArgs, ['--grace', '0'], tmp, 'steady');
      const gone = r.gc.steady.report?.blobsDeleted;
      if (gone !== 2 * P) log(`warning: the steady-state pass deleted ${gone} blobs, expected ${2 * P} (config and layer of each deleted image)`);
      log(`gc steady state: ${P} deleted images: dry run ${r.gc.steadyDryRun.seconds.toFixed(1)} s, real ${r.gc.steady.seconds.toFixed(1)} s (${gone} blobs, ${r.gc.steady.peakRssMiB.toFixed(0)} MiB)`);
    }

    // ---------------------------------------------------------- fsck
    const f = await timed(repoRoot, ['fsck', ...storeArgs, '--quick', '--min-age', '0', '--json', '--log-level', 'warn'], tmp, 'fsck');
    r.fsck = { seconds: f.seconds, exit: f.code, peakRssMiB: f.peakRssMiB, blobs: f.report?.blobsChecked ?? f.report?.blobs ?? undefined, report: f.report };
    if (f.code !== 0) log(`warning: fsck --quick exited ${f.code}: ${JSON.stringify(f.report ?? f.stderr).slice(0, 400)}`);
    log(`fsck --quick: ${f.seconds.toFixed(1)} s, exit ${f.code}`);
    server.sample();
    r.servePeakRssMiB = server.peakRssMiB();
    r.metadataBytesPerImageAfter = (await metadataBytes(repoRoot, state, dataDir)) / N;
  } finally {
    client.close();
    await server.stop();
    process.off('exit', stopServer);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  return r;
}

async function gcPass(repoRoot, storeArgs, extra, tmp, label) {
  const g = await timed(repoRoot, ['gc', ...storeArgs, '--json', '--log-level', 'warn', ...extra], tmp, `gc-${label}`);
  if (g.code !== 0) throw new Error(`berth gc ${extra.join(' ')} exited ${g.code}\n${g.stderr}`);
  const { stderr, ...rest } = g;
  return rest;
}

async function gitCommit(repoRoot) {
  const r = await run('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']).catch(() => undefined);
  return r?.stdout?.trim() ?? '?';
}

const f1 = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(1));
const f0 = (x) => (x === undefined || Number.isNaN(x) ? '–' : Math.round(x).toLocaleString('en-US'));
/** A GC pass: the process's wall time, and in brackets the pass's own durationMs (without Node's start-up and store opening). */
const gcs = (g) => (g ? `${f1(g.seconds)} (${g.report ? f1(g.report.durationMs / 1000) : '–'})` : '–');
const size = (n) => (n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n));

/** Candidates a GC pass looked at (reports of older Berths have no count). */
const examinedCount = (g) => (g?.report?.blobsExamined === undefined ? undefined : g.report.manifestsExamined + g.report.blobsExamined);
const examined = (g) => f0(examinedCount(g));
const perCandidate = (g) => (examinedCount(g) ? f1((g.report.durationMs * 1000) / examinedCount(g)) : '–');

/** Markdown: one row per figure, one column per measured dataset. */
export function table(results) {
  const rows = [
    ['tags in scale/tags-0 (the tags/list repository)', (r) => f0(r.bigTags)],
    ['load rate (bulk loader, images/s)', (r) => f0(r.load?.imagesPerSecond)],
    ['metadata bytes per image', (r) => f0(r.metadataBytesPerImage)],
    ['serve startup (s, process start → /v2/ answers)', (r) => r.startupSeconds.toFixed(2)],
    ['serve startup, empty registry, same machine state (s)', (r) => r.startupEmptySeconds?.toFixed(2) ?? '–'],
    ['serve RSS after start (MiB)', (r) => f0(r.serveRssAfterStartMiB)],
    ['serve RSS after reads (MiB)', (r) => f0(r.serveRssAfterReadsMiB)],
    ['serve peak RSS, whole run (MiB)', (r) => f0(r.servePeakRssMiB)],
  ];
  const reads = [
    ['headBlob', 'HEAD blob'],
    ['manifestByTag', 'GET manifest by tag'],
    ['manifestByDigest', 'GET manifest by digest'],
    ['tagsFirstPage', 'tags/list first page (n=100)'],
    ['tagsDeepPage', 'tags/list deep page (last= 90 %)'],
    ['catalogFirstPage', '_catalog first page (n=100)'],
    ['catalogDeepPage', '_catalog deep page (last= 90 %)'],
  ];
  for (const [k, label] of reads) {
    rows.push([`${label}: req/s`, (r) => f0(r.reads?.[k]?.rps)]);
    rows.push([`${label}: p99 ms`, (r) => f1(r.reads?.[k]?.p99)]);
  }
  rows.push(
    ['push through the API (images/s, 16 in flight)', (r) => f0(r.push?.imagesPerSecond)],
    ['push p99 per image (ms)', (r) => f1(r.push?.p99ms)],
    ['GC passes below: process wall s (the pass\'s own durationMs, s)', () => ''],
    ['GC first pass, default grace (s)', (r) => gcs(r.gc?.firstDefaultGrace)],
    ['GC first pass, default grace: candidates examined (manifests + blobs)', (r) => examined(r.gc?.firstDefaultGrace)],
    // The pass that examines the loaded blobs at every size (at 10k the grace-0
    // pass after it finds the queue empty): the one to compare memory across sizes.
    ['GC first pass, default grace: peak RSS (MiB)', (r) => f0(r.gc?.firstDefaultGrace?.peakRssMiB)],
    ['GC first pass, grace 0, dry run (s)', (r) => gcs(r.gc?.firstDryRun)],
    ['GC first pass, grace 0 (s)', (r) => gcs(r.gc?.first)],
    ['GC first pass, grace 0: candidates examined (manifests + blobs)', (r) => examined(r.gc?.first)],
    ['GC first pass, grace 0: µs per candidate examined', (r) => perCandidate(r.gc?.first)],
    ['GC first pass, dry run: snapshot copy (s)', (r) => f1(r.gc?.firstDryRun?.report?.phasesMs?.snapshot / 1000)],
    ['GC first pass, grace 0: peak RSS (MiB)', (r) => f0(r.gc?.first?.peakRssMiB)],
    ['GC first pass, dry run: peak RSS (MiB)', (r) => f0(r.gc?.firstDryRun?.peakRssMiB)],
    ['GC steady state, deleted images (--push-images)', (r) => f0(r.push?.images)],
    ['GC steady state, those deleted images, dry run (s)', (r) => gcs(r.gc?.steadyDryRun)],
    ['GC steady state, those deleted images (s)', (r) => gcs(r.gc?.steady)],
    ['GC steady state: candidates examined (manifests + blobs)', (r) => examined(r.gc?.steady)],
    ['GC steady state, dry run: snapshot copy (s)', (r) => f1(r.gc?.steadyDryRun?.report?.phasesMs?.snapshot / 1000)],
    ['GC steady state: blobs deleted', (r) => f0(r.gc?.steady?.report?.blobsDeleted)],
    ['GC steady state: peak RSS (MiB)', (r) => f0(r.gc?.steady?.peakRssMiB)],
    ['fsck --quick (s)', (r) => f1(r.fsck?.seconds)],
    ['fsck --quick (s per million blobs)', (r) => (r.fsck?.blobs ? f1((r.fsck.seconds * 1e6) / r.fsck.blobs) : '–')],
    ['fsck --quick: peak RSS (MiB)', (r) => f0(r.fsck?.peakRssMiB)],
    ['load average (1 min) at start', (r) => r.loadavg.toFixed(1)],
  );
  const head = `| figure | ${results.map((r) => r.label ?? `${r.store} ${size(r.images)}`).join(' | ')} |`;
  const sep = `|---|${results.map(() => '---:').join('|')}|`;
  return [head, sep, ...rows.map(([label, f]) => `| ${label} | ${results.map(f).join(' | ')} |`)].join('\n');
}
