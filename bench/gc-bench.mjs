#!/usr/bin/env node
// GC benchmark: how long garbage collection takes on a registry of N small
// images of which G are garbage, Berth (`berth gc` as a separate process
// while the server runs) side by side with the reference registry
// (`docker-registry garbage-collect --delete-untagged`, also while its server
// runs, as in the issue's scenario). Then checks that both registries still
// serve every surviving image, what they answer for the deleted ones, and
// what happens when a deleted image is pushed again.
//
//   node bench/gc-bench.mjs --images 10000 --garbage 1000
//   node bench/gc-bench.mjs --quick            # 500 images, 50 garbage
//   node bench/gc-bench.mjs --help
//
// Progress goes to stderr; the markdown table and then the JSON results go to stdout.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RegistryClient, HttpError, pool, sha256, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER } from './lib/client.mjs';
import { berthServer, referenceServer, cpuSnapshot, foreignShare } from './lib/servers.mjs';
import { run, which } from './lib/tools.mjs';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const HELP = `usage: node bench/gc-bench.mjs [options]

  --images N          images to push into each registry (default 10000)
  --garbage G         of which G have their manifest deleted before GC (default 1000)
  --quick             500 images, 50 garbage
  --repos R           repositories the images are spread over (default 100)
  --layer-size B      bytes in each of the 2 unique layers per image (default 384)
  --concurrency C     images pushed in parallel, keep-alive sockets (default 16)
  --servers LIST      berth,reference (default both)
  --repush K          deleted images pushed again after GC, then pulled (default 5)
  --no-build          do not run \`npx tsc -p .\` first
  --keep-tmp          keep the temporary directory (data, configs, logs)
  --wait-idle S       before each GC run, wait up to S seconds for other processes
                      to use under 15% of the CPU over 3 s (default 0: don't wait)
  --json FILE         also write the JSON results to FILE
  -h, --help
`;

const { values: opt } = parseArgs({
  options: {
    images: { type: 'string' },
    garbage: { type: 'string' },
    quick: { type: 'boolean', default: false },
    repos: { type: 'string', default: '100' },
    'layer-size': { type: 'string', default: '384' },
    concurrency: { type: 'string', default: '16' },
    servers: { type: 'string', default: 'berth,reference' },
    repush: { type: 'string', default: '5' },
    'no-build': { type: 'boolean', default: false },
    'keep-tmp': { type: 'boolean', default: false },
    'wait-idle': { type: 'string', default: '0' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

const N = Number(opt.images ?? (opt.quick ? 500 : 10000));
const G = Number(opt.garbage ?? (opt.quick ? 50 : 1000));
const REPOS = Math.min(Number(opt.repos), N);
const LAYER_SIZE = Number(opt['layer-size']);
const CONC = Number(opt.concurrency);
const REPUSH = Math.min(Number(opt.repush), G);
const SERVERS = opt.servers.split(',').map((s) => s.trim()).filter(Boolean);
for (const [k, v] of Object.entries({ N, G, REPOS, LAYER_SIZE, CONC, REPUSH })) {
  if (!Number.isInteger(v) || v < 0) throw new Error(`bad --${k.toLowerCase()}: ${v}`);
}
if (G > N) throw new Error('--garbage must not exceed --images');
for (const s of SERVERS) if (s !== 'berth' && s !== 'reference') throw new Error(`unknown server ${s}`);

const log = (...a) => process.stderr.write(`[gc-bench ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);
const ms = (t) => Math.round(t);
const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(', ');

// ---------------------------------------------------------------- cleanup

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-gc-bench-'));
const servers = [];
const children = new Set();
function cleanup() {
  for (const s of servers) s.killNow();
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (!opt['keep-tmp']) fs.rmSync(tmpRoot, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// ---------------------------------------------------------------- the images

/** The same content for both registries: per image a config, 2 unique layers and the repository's shared base layer. */
function makeImages() {
  const bases = Array.from({ length: REPOS }, (_, r) => {
    const data = crypto.randomBytes(1024);
    return { repo: `gcbench/r${String(r).padStart(3, '0')}`, data, desc: { mediaType: OCI_LAYER, digest: sha256(data), size: data.length } };
  });
  const images = [];
  for (let i = 0; i < N; i++) {
    // Contiguous blocks: repository r holds images [r*N/R, (r+1)*N/R), so that
    // evenly spread garbage takes a few images from every repository.
    const base = bases[Math.floor((i * REPOS) / N)];
    const uniq = [crypto.randomBytes(LAYER_SIZE), crypto.randomBytes(LAYER_SIZE)];
    const layerDescs = [base.desc, ...uniq.map((b) => ({ mediaType: OCI_LAYER, digest: sha256(b), size: b.length }))];
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        created: '2024-01-01T00:00:00Z',
        config: { Labels: { 'bench.image': String(i) } },
        rootfs: { type: 'layers', diff_ids: layerDescs.map((d) => d.digest) },
      }),
    );
    const configDesc = { mediaType: OCI_CONFIG, digest: sha256(config), size: config.length };
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDesc, layers: layerDescs }));
    images.push({
      i,
      repo: base.repo,
      tag: `t${i}`,
      base,
      unique: [
        { data: config, digest: configDesc.digest },
        { data: uniq[0], digest: layerDescs[1].digest },
        { data: uniq[1], digest: layerDescs[2].digest },
      ],
      manifest,
      digest: sha256(manifest),
    });
  }
  // G garbage images spread evenly over the registry (and so over the repositories).
  const garbage = new Set(Array.from({ length: G }, (_, k) => Math.floor((k * N) / G)));
  // What a correct GC deletes: the garbage images' unique blobs, plus the base
  // layer of any repository left with no image at all.
  const keptRepos = new Set(images.filter((img) => !garbage.has(img.i)).map((img) => img.repo));
  const orphanBases = bases.filter((b) => images.some((img) => img.repo === b.repo) && !keptRepos.has(b.repo)).length;
  return { bases, images, garbage, orphanBases };
}

/** Push one image the way clients do: HEAD each blob, upload if absent, then PUT the manifest. Returns how many of its unique blobs the server said already existed. */
async function pushImage(client, img) {
  let existed = 0;
  await client.pushBlob(img.repo, img.base.data, img.base.desc.digest);
  for (const b of img.unique) if ((await client.pushBlob(img.repo, b.data, b.digest)) === 'exists') existed++;
  await client.pushManifest(img.repo, img.tag, img.manifest, OCI_MANIFEST);
  return existed;
}

/**
 * A request that never throws: a response cut short (the reference registry
 * answers GET of a blob whose file GC removed with 200 and a Content-Length,
 * then closes the connection with no body) is reported as 'aborted'.
 */
async function tryRequest(client, method, p, opts) {
  try {
    return await client.request(method, p, opts);
  } catch (e) {
    return { status: /aborted|socket hang up|ECONNRESET/i.test(e.message) ? 'aborted' : `error: ${e.message.slice(0, 80)}`, headers: {}, body: Buffer.alloc(0) };
  }
}

/** GET manifest (by tag or digest) and every blob; returns null if all is there and intact, else a description. */
async function pullImage(client, img, ref = img.tag) {
  const m = await tryRequest(client, 'GET', `/v2/${img.repo}/manifests/${ref}`, { headers: { accept: OCI_MANIFEST } });
  if (m.status !== 200) return `manifest ${img.repo}:${ref} -> ${m.status}`;
  if (!m.body.equals(img.manifest)) return `manifest ${img.repo}:${ref} -> other bytes`;
  for (const b of [{ digest: img.base.desc.digest }, ...img.unique]) {
    const r = await tryRequest(client, 'GET', `/v2/${img.repo}/blobs/${b.digest}`);
    if (r.status !== 200) return `blob ${img.repo}@${b.digest.slice(0, 19)} -> ${r.status}`;
    if (sha256(r.body) !== b.digest) return `blob ${img.repo}@${b.digest.slice(0, 19)} -> wrong bytes`;
  }
  return null;
}

// ---------------------------------------------------------------- timing a GC process

/**
 * Run a GC command under /usr/bin/time (for CPU and peak RSS) and time it
 * ourselves (wall clock from spawn to exit, process start-up included).
 */
async function waitIdle(label) {
  const maxS = Number(opt['wait-idle']);
  if (!(maxS > 0)) return;
  const deadline = Date.now() + maxS * 1000;
  let share = 1;
  while (Date.now() < deadline) {
    const a = cpuSnapshot();
    await new Promise((r) => setTimeout(r, 3000));
    share = foreignShare(a, cpuSnapshot());
    if (share < 0.15) return;
  }
  log(`machine still busy before ${label} (others at ${(share * 100).toFixed(0)}% CPU); measuring anyway`);
}

async function timeProcess(label, cmd, args, { env } = {}) {
  await run('sync', [], { timeoutMs: 120_000 });
  await waitIdle(label);
  const timeFile = path.join(tmpRoot, `time-${label}.txt`);
  const haveTime = fs.existsSync('/usr/bin/time');
  const [c, a] = haveTime ? ['/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, cmd, ...args]] : [cmd, args];
  const load1 = os.loadavg()[0];
  const snap = cpuSnapshot();
  const t0 = performance.now();
  const res = await new Promise((resolve, reject) => {
    const child = spawn(c, a, { cwd: repoRoot, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
  const wallMs = performance.now() - t0;
  const foreign = foreignShare(snap, cpuSnapshot());
  const out = { label, command: [cmd, ...args].join(' '), exitCode: res.code, wallMs: ms(wallMs), loadavg1Before: load1, foreignCpuShare: Number(foreign.toFixed(3)) };
  if (haveTime) {
    try {
      const lines = fs.readFileSync(timeFile, 'utf8').trim().split('\n');
      const [, user, sys, maxKb] = lines[lines.length - 1].split(' ').map(Number);
      Object.assign(out, { cpuSeconds: Number((user + sys).toFixed(2)), maxRssMiB: Number((maxKb / 1024).toFixed(1)) });
    } catch {
      /* no figures */
    }
  }
  if (foreign > 0.1) log(`warning: other processes used ${(foreign * 100).toFixed(0)}% of the CPU during ${label}`);
  fs.writeFileSync(path.join(tmpRoot, `out-${label}.txt`), res.stdout + '\n--- stderr ---\n' + res.stderr);
  return { ...out, stdout: res.stdout, stderr: res.stderr };
}

function berthGcEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BERTH_')) env[k] = v;
  return { ...env, NODE_ENV: 'production' };
}

async function berthGc(label, dataDir, extra = []) {
  const r = await timeProcess(label, process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'gc', '--data', dataDir, '--grace', '0', '--json', ...extra], {
    env: berthGcEnv(),
  });
  if (r.exitCode !== 0) throw new Error(`berth gc (${label}) exited ${r.exitCode}\n${r.stderr}`);
  const report = JSON.parse(r.stdout);
  const { stdout, stderr, ...rest } = r;
  if (stderr.trim()) log(`berth gc (${label}) stderr: ${stderr.trim().slice(0, 500)}`);
  return { ...rest, report, manifestsDeleted: report.manifestsDeleted, blobsDeleted: report.blobsDeleted };
}

async function referenceGc(label, bin, config, extra = []) {
  const r = await timeProcess(label, bin, ['garbage-collect', config, '--delete-untagged', ...extra]);
  if (r.exitCode !== 0) throw new Error(`docker-registry garbage-collect (${label}) exited ${r.exitCode}\n${r.stderr.slice(-2000)}`);
  const all = r.stdout + '\n' + r.stderr;
  const count = (re) => all.split('\n').filter((l) => re.test(l)).length;
  const summary = /(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion/.exec(all);
  const { stdout, stderr, ...rest } = r;
  return {
    ...rest,
    blobsMarked: summary ? Number(summary[1]) : null,
    blobsEligible: summary ? Number(summary[2]) : null,
    manifestsEligible: summary ? Number(summary[3]) : null,
    blobEligibleLines: count(/blob eligible for deletion/),
    manifestEligibleLines: count(/manifest eligible for deletion/),
    deletingBlobLines: count(/Deleting blob/),
    outputLines: all.split('\n').length,
  };
}

// ---------------------------------------------------------------- per registry

async function dirStats(dir) {
  const r = await run('sh', ['-c', `find "$1" -type f | wc -l; du -sk "$1" | cut -f1`, 'sh', dir], { timeoutMs: 300_000 });
  const [files, kb] = r.stdout.trim().split('\n').map(Number);
  return { files, diskMiB: Number((kb / 1024).toFixed(1)) };
}

async function seed(name, srv, data) {
  const client = new RegistryClient(srv.url, { maxSockets: CONC });
  try {
    log(`${name}: pushing ${N} images into ${REPOS} repositories, ${CONC} in flight`);
    for (const b of data.bases) await client.pushBlob(b.repo, b.data, b.desc.digest);
    const t0 = performance.now();
    let done = 0;
    await pool(N, CONC, async (i) => {
      await pushImage(client, data.images[i]);
      if (++done % 2000 === 0) log(`${name}: ${done}/${N} pushed`);
    });
    const pushS = (performance.now() - t0) / 1000;
    log(`${name}: pushed ${N} images in ${pushS.toFixed(1)} s (${(N / pushS).toFixed(0)} images/s)`);
    const g = [...data.garbage];
    const t1 = performance.now();
    await pool(g.length, CONC, async (k) => {
      const img = data.images[g[k]];
      const r = await client.request('DELETE', `/v2/${img.repo}/manifests/${img.digest}`);
      if (r.status !== 202) throw new HttpError(`DELETE manifest ${img.repo}@${img.digest}`, r);
    });
    log(`${name}: deleted ${g.length} manifests by digest in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
    return { pushSeconds: Number(pushS.toFixed(1)), imagesPerSecond: Number((N / pushS).toFixed(0)) };
  } finally {
    client.close();
  }
}

/** After GC: every surviving image must pull intact; report what the server says about the deleted ones. */
async function verify(name, srv, data) {
  const client = new RegistryClient(srv.url, { maxSockets: CONC });
  try {
    const survivors = data.images.filter((img) => !data.garbage.has(img.i));
    const broken = [];
    await pool(survivors.length, CONC, async (k) => {
      const err = await pullImage(client, survivors[k]);
      if (err) broken.push(err);
    });
    const deleted = data.images.filter((img) => data.garbage.has(img.i));
    const st = { manifestByDigest: {}, manifestByTag: {}, blobHead: {}, blobGet: {} };
    const bump = (m, s) => (m[s] = (m[s] ?? 0) + 1);
    let lies = 0;
    await pool(deleted.length, CONC, async (k) => {
      const img = deleted[k];
      bump(st.manifestByDigest, (await tryRequest(client, 'GET', `/v2/${img.repo}/manifests/${img.digest}`, { headers: { accept: OCI_MANIFEST } })).status);
      bump(st.manifestByTag, (await tryRequest(client, 'GET', `/v2/${img.repo}/manifests/${img.tag}`, { headers: { accept: OCI_MANIFEST } })).status);
      for (const b of img.unique) {
        const head = (await tryRequest(client, 'HEAD', `/v2/${img.repo}/blobs/${b.digest}`)).status;
        const get = await tryRequest(client, 'GET', `/v2/${img.repo}/blobs/${b.digest}`);
        bump(st.blobHead, head);
        bump(st.blobGet, get.status);
        // A lie: "it exists" for bytes the server cannot serve.
        if (head === 200 && !(get.status === 200 && sha256(get.body) === b.digest)) lies++;
      }
    });
    const res = {
      survivorsChecked: survivors.length,
      survivorsBroken: broken.length,
      brokenExamples: broken.slice(0, 5),
      deletedImages: deleted.length,
      deletedStatuses: st,
      headLies: lies,
    };
    log(
      `${name}: ${survivors.length - broken.length}/${survivors.length} surviving images pull intact; deleted images' unique blobs: HEAD ${JSON.stringify(st.blobHead)}, GET ${JSON.stringify(st.blobGet)}`,
    );
    return res;
  } finally {
    client.close();
  }
}

/** The issue's step 4–5: push a deleted image again (clients skip blobs the server says exist), then pull it. */
async function repush(name, srv, data) {
  const client = new RegistryClient(srv.url, { maxSockets: CONC });
  try {
    const deleted = data.images.filter((img) => data.garbage.has(img.i)).slice(0, REPUSH);
    const out = { images: deleted.length, uniqueBlobsSaidToExist: 0, pushFailures: [], pullFailures: [] };
    for (const img of deleted) {
      let existed;
      try {
        existed = await pushImage(client, img);
      } catch (e) {
        out.pushFailures.push(e.message.slice(0, 200));
        continue;
      }
      out.uniqueBlobsSaidToExist += existed;
      const err = await pullImage(client, img);
      if (err) out.pullFailures.push(err);
    }
    log(
      `${name}: re-pushed ${deleted.length} deleted images: ${out.uniqueBlobsSaidToExist} of their ${deleted.length * 3} unique blobs were "already there"; ` +
        `${out.pushFailures.length} pushes failed, ${out.pullFailures.length} pulls failed${out.pullFailures[0] ? ` (${out.pullFailures[0]})` : ''}`,
    );
    return out;
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------- main

async function main() {
  const results = {
    when: new Date().toISOString(),
    host: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)), loadavgAtStart: os.loadavg() },
    params: { images: N, garbage: G, repositories: REPOS, layerSize: LAYER_SIZE, concurrency: CONC },
    servers: {},
  };
  log(`load average at start: ${loadavg()} (${os.cpus().length} CPUs)`);

  if (SERVERS.includes('berth') && !opt['no-build']) {
    log('building Berth (npx tsc -p .)');
    const r = await run('npx', ['tsc', '-p', '.'], { timeoutMs: 600_000 });
    if (r.code !== 0) throw new Error(`tsc failed:\n${r.stdout}${r.stderr}`);
  }
  let refBin = null;
  if (SERVERS.includes('reference')) {
    refBin = await which('docker-registry');
    if (!refBin && process.getuid?.() === 0) {
      log('installing docker-registry with apt-get');
      await run('apt-get', ['install', '-y', 'docker-registry'], { timeoutMs: 600_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
      refBin = await which('docker-registry');
    }
    if (!refBin) throw new Error('docker-registry not found (apt-get install docker-registry)');
    results.referenceVersion = (await run(refBin, ['--version'])).stdout.trim();
  }

  const data = makeImages();
  results.expected = {
    berthBlobs: 3 * G + data.orphanBases,
    referenceBlobs: 4 * G + data.orphanBases, // the reference stores manifests as blobs too
    repositoriesLeftEmpty: data.orphanBases,
  };

  for (const name of SERVERS) {
    const srv = name === 'berth' ? await berthServer({ tmpRoot, repoRoot }) : await referenceServer({ tmpRoot, bin: refBin });
    if (name === 'berth') srv.env = { ...srv.env, BERTH_GC_ENABLED: 'false' };
    servers.push(srv);
    await srv.start();
    log(`${name}: listening on ${srv.url}, data in ${srv.dataDir}`);
    const r = { push: await seed(name, srv, data) };
    srv.assertAlive();
    r.before = await dirStats(srv.dataDir);
    log(`${name}: ${r.before.files} files, ${r.before.diskMiB} MiB on disk before GC; load average ${loadavg()}`);

    if (name === 'berth') {
      r.dryRun = await berthGc('berth-dry-run', srv.dataDir, ['--dry-run']);
      log(`berth: gc --dry-run ${r.dryRun.wallMs} ms (own ${r.dryRun.report.durationMs} ms): would delete ${r.dryRun.manifestsDeleted} manifests, ${r.dryRun.blobsDeleted} blobs`);
      r.gc = await berthGc('berth-gc', srv.dataDir);
      log(`berth: gc ${r.gc.wallMs} ms (own ${r.gc.report.durationMs} ms): deleted ${r.gc.manifestsDeleted} manifests, ${r.gc.blobsDeleted} blobs`);
      r.gcAgain = await berthGc('berth-gc-again', srv.dataDir);
      log(`berth: second gc ${r.gcAgain.wallMs} ms (own ${r.gcAgain.report.durationMs} ms): deleted ${r.gcAgain.manifestsDeleted} manifests, ${r.gcAgain.blobsDeleted} blobs`);
    } else {
      const config = srv.args[1];
      // Same storage, but log level info, so that its "Deleting blob" lines show.
      const gcConfig = path.join(path.dirname(config), 'gc-config.yml');
      fs.writeFileSync(gcConfig, fs.readFileSync(config, 'utf8').replace('level: error', 'level: info'));
      r.dryRun = await referenceGc('reference-dry-run', refBin, gcConfig, ['--dry-run']);
      log(`reference: garbage-collect --dry-run ${r.dryRun.wallMs} ms: ${r.dryRun.blobsEligible} blobs, ${r.dryRun.manifestsEligible} manifests eligible`);
      r.gc = await referenceGc('reference-gc', refBin, gcConfig);
      log(`reference: garbage-collect ${r.gc.wallMs} ms: ${r.gc.blobsEligible} blobs eligible, ${r.gc.deletingBlobLines} "Deleting blob" lines, ${r.gc.manifestsEligible} manifests eligible`);
      r.gcAgain = await referenceGc('reference-gc-again', refBin, gcConfig);
      log(`reference: second garbage-collect ${r.gcAgain.wallMs} ms: ${r.gcAgain.blobsEligible} blobs eligible`);
    }
    srv.assertAlive();
    r.after = await dirStats(srv.dataDir);
    r.verify = await verify(name, srv, data);
    r.repush = await repush(name, srv, data);
    srv.assertAlive();
    await srv.stop();
    results.servers[name] = r;
  }
  results.host.loadavgAtEnd = os.loadavg();
  return results;
}

function deletedText(name, run) {
  if (name === 'berth') return `${run.manifestsDeleted} manifests, ${run.blobsDeleted} blobs`;
  const d = run.deletingBlobLines || run.blobEligibleLines;
  return `${d} blobs (incl. manifest blobs)${run.manifestsEligible ? `, ${run.manifestsEligible} manifests` : ''}`;
}

function table(results) {
  const b = results.servers.berth;
  const ref = results.servers.reference;
  const rows = [];
  const sec = (x) => `${(x / 1000).toFixed(2)} s`;
  const ratio = (x, key) => (ref && x ? (x / ref[key].wallMs).toFixed(3) : '—');
  const add = (name, label, garbage, r, key) => {
    if (!r) return;
    const own = name === 'berth' ? ` (own ${sec(r.report.durationMs)})` : '';
    const deleted = key === 'dryRun' ? `(would: ${name === 'berth' ? `${r.manifestsDeleted} manifests, ${r.blobsDeleted} blobs` : `${r.blobsEligible} blobs`})` : deletedText(name, r);
    rows.push(`| ${label} | ${N} | ${garbage} | ${sec(r.wallMs)}${own} | ${deleted} | ${name === 'berth' ? ratio(r.wallMs, key) : '1'} |`);
  };
  add('berth', 'Berth `gc --grace 0`', G, b?.gc, 'gc');
  add('reference', 'reference `garbage-collect --delete-untagged`', G, ref?.gc, 'gc');
  add('berth', 'Berth `gc`, second run', 0, b?.gcAgain, 'gcAgain');
  add('reference', 'reference, second run', 0, ref?.gcAgain, 'gcAgain');
  add('berth', 'Berth `gc --dry-run`', G, b?.dryRun, 'dryRun');
  add('reference', 'reference `--dry-run`', G, ref?.dryRun, 'dryRun');
  return [
    `GC on ${N} images (${REPOS} repositories; each: config + 2 unique ${LAYER_SIZE}-byte layers + a shared base layer), ${G} deleted by digest; GC run as a separate process while the server runs. Ratio = Berth/reference wall time.`,
    '',
    '| registry | images | garbage | GC wall time | deleted | ratio |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

main().then(
  (results) => {
    process.stdout.write(table(results) + '\n');
    const json = JSON.stringify(results, null, 2);
    process.stdout.write(json + '\n');
    if (opt.json) fs.writeFileSync(opt.json, json + '\n');
    if (opt['keep-tmp']) log(`kept ${tmpRoot}`);
  },
  (e) => {
    log(`failed: ${e.stack ?? e}`);
    if (opt['keep-tmp']) log(`kept ${tmpRoot}`);
    process.exit(1); // the exit handler stops the servers
  },
);
