#!/usr/bin/env node
// Soak: clients push, delete and re-push images with shared layers, on one or
// two `berth serve` nodes, while `berth gc --grace G` loops as a separate
// process; prints the operation counts as a table and exits 1 when it saw a
// false "exists", a lost image, a 5xx, another unexpected answer or a failed
// collector run (test/helpers/soak.ts says exactly what counts as what).
//
//   npm run build && npm run soak -- [--seconds 120] [--clients 8] [--grace 10s]
//        [--nodes 1] [--metadata sqlite|postgres] [--storage fs|s3]
//        [--gc-pause 100ms] [--json FILE]
//
// --metadata postgres needs PostgreSQL (BERTH_TEST_PG_URL, default
// postgres://postgres@127.0.0.1:5432/test; a throwaway database is made and
// dropped); --storage s3 needs S3_ENDPOINT & co. (eval "$(bash
// scripts/s3/start.sh)"); blobs go under a prefix removed at the end. The
// servers run with their own collector off: the separate process is the only
// one. Everything listens on 127.0.0.1.
import { parseArgs } from 'node:util';
import { rmSync, writeFileSync } from 'node:fs';

const usage = 'usage: node bench/soak.mjs [--seconds 120] [--clients 8] [--grace 10s] [--nodes 1] [--metadata sqlite|postgres] [--storage fs|s3] [--gc-pause 100ms] [--json FILE]';

function fail(message) {
  console.error(`soak: ${message}\n${usage}`);
  process.exit(2);
}

/** "10s", "1500ms", "2m" or a number of seconds, in milliseconds. */
function duration(value, what) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(value).trim());
  if (!m) fail(`invalid ${what} "${value}"`);
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] ?? 's']);
}

function count(value, what, min, max) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) fail(`${what} must be a whole number from ${min} to ${max}, got "${value}"`);
  return n;
}

let opt;
try {
  ({ values: opt } = parseArgs({
    options: {
      seconds: { type: 'string', default: '120' },
      clients: { type: 'string', default: '8' },
      grace: { type: 'string', default: '10s' },
      nodes: { type: 'string', default: '1' },
      metadata: { type: 'string', default: 'sqlite' },
      storage: { type: 'string', default: 'fs' },
      'gc-pause': { type: 'string', default: '100ms' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  fail(e.message);
}
if (opt.help) {
  console.log(usage);
  process.exit(0);
}
const seconds = count(opt.seconds, '--seconds', 1, 24 * 3600);
const clients = count(opt.clients, '--clients', 1, 256);
const nodes = count(opt.nodes, '--nodes', 1, 8);
const graceMs = duration(opt.grace, '--grace');
const gcPauseMs = duration(opt['gc-pause'], '--gc-pause');
if (!['sqlite', 'postgres'].includes(opt.metadata)) fail(`--metadata must be sqlite or postgres`);
if (!['fs', 's3'].includes(opt.storage)) fail(`--storage must be fs or s3`);
if (opt.storage === 's3' && !(process.env.S3_ENDPOINT ?? process.env.AWS_ENDPOINT_URL_S3)) {
  fail('--storage s3 needs S3_ENDPOINT: eval "$(bash scripts/s3/start.sh)" first');
}

// The test helpers start servers and collectors on the stores these name (read when they load).
process.env.BERTH_TEST_METADATA = opt.metadata;
process.env.BERTH_TEST_STORAGE = opt.storage;
const dist = new URL('../dist/test/helpers/', import.meta.url);
let helpers;
try {
  helpers = await Promise.all(['server.js', 'berth-cli.js', 'soak.js'].map((f) => import(new URL(f, dist).href)));
} catch (e) {
  console.error(`soak: cannot load the compiled helpers (run npm run build first): ${e.message}`);
  process.exit(2);
}
const [{ makeDataDir, removeStorage, startServer }, { berth }, { anomalyCount, formatReport, runSoak }] = helpers;

const dataDir = makeDataDir();
const servers = [];
let code = 1;
try {
  for (let i = 0; i < nodes; i++) {
    servers.push(await startServer({ dataDir, name: `node ${i + 1}`, env: { BERTH_GC_ENABLED: 'false' } }));
  }
  console.error(
    `soak: ${clients} clients on ${nodes} node(s) (${opt.metadata} + ${opt.storage}) for ${seconds} s; berth gc --grace ${graceMs}ms in a loop`,
  );
  const report = await runSoak({
    nodes: servers.map((s) => s.url),
    seconds,
    clients,
    graceMs,
    gcPauseMs,
    runGc: () => berth(['gc', '--data', dataDir, '--grace', `${graceMs}ms`, '--json']),
  });
  const logged = servers.flatMap((s) => s.loggedErrors());
  console.log(formatReport(report));
  if (logged.length > 0) console.log(`server log errors: ${logged.length}\n  ${logged.slice(0, 5).join('\n  ')}`);
  if (opt.json) writeFileSync(opt.json, JSON.stringify({ ...report, metadata: opt.metadata, storage: opt.storage, serverLogErrors: logged.length }, null, 2) + '\n');
  const anomalies = anomalyCount(report);
  console.log(anomalies === 0 ? 'soak: clean' : `soak: ${anomalies} anomalies`);
  code = anomalies === 0 ? 0 : 1;
} catch (e) {
  console.error(`soak: ${e.stack ?? e}`);
} finally {
  for (const s of servers) await s.stop().catch(() => undefined);
  rmSync(dataDir, { recursive: true, force: true });
  await removeStorage(dataDir).catch(() => undefined);
}
// The test helpers drop the PostgreSQL database on beforeExit: let the loop drain rather than exit().
process.exitCode = code;
