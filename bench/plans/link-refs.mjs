/**
 * What the per-link reference count (migration 11) costs and saves, on SQLite:
 *
 * - the dangling-link check of a GC claim for a layer shared by N manifests
 *   (in R repositories), with the statement before migration 11 (a walk of
 *   the layer's references and their manifests) and after (the link rows);
 * - a push (two blobs and a manifest naming them and the shared layer), with
 *   the count's triggers and without them (the schema before, for writes).
 *
 *   node bench/plans/link-refs.mjs [dir=/tmp/link-refs] [manifests=20000] [repos=200] [pushes=2000]
 *
 * Built code only (npm run build). A/B rounds alternate, to share the machine's noise.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SqliteMetadataStore } from '../../dist/src/metadata/sqlite/sqlite-store.js';

const [dir = '/tmp/link-refs', manifests = '20000', repos = '200', pushes = '2000'] = process.argv.slice(2);
const N = Number(manifests), R = Number(repos), P = Number(pushes);
const digest = (s) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const BASE = digest('base');

const BEFORE = `
  DELETE FROM repository_blobs AS l WHERE l.digest = @digest AND l.last_seen <= @cutoff AND l.repository_id NOT IN (
    SELECT m.repository_id FROM manifest_blobs mb CROSS JOIN manifests m ON m.id = mb.manifest_id
    WHERE mb.digest = @digest)`;
const AFTER = `DELETE FROM repository_blobs WHERE digest = @digest AND refs = 0 AND last_seen <= @cutoff`;
const COUNT_OBJECTS = ['link_refs_added', 'link_refs_manifest_removed', 'link_refs_removed', 'link_refs_relinked', 'repository_blobs_unreferenced'];

async function push(s, repo, i, now) {
  const own = [digest(`config ${repo} ${i}`), digest(`layer ${repo} ${i}`)];
  for (const d of own) await s.commitBlob(undefined, repo, { digest: d, size: 100, storageKey: `${d}.${i}` }, now);
  if (!(await s.findBlob(repo, BASE))) await s.mountBlob(repo, BASE, undefined, now);
  const body = Buffer.from(JSON.stringify({ repo, i, blobs: [BASE, ...own] }));
  await s.putManifest(repo, { digest: digest(body.toString()), mediaType: 'application/vnd.oci.image.manifest.v1+json', size: body.length, body, blobs: [BASE, ...own], children: [] }, `t${i}`, now);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

// 1. The dangling check for a layer N manifests share.
{
  const s = new SqliteMetadataStore(join(dir, 'shared.db'), { scratch: true });
  await s.commitBlob(undefined, 'r/0', { digest: BASE, size: 3e6, storageKey: 'base' }, 1);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await push(s, `r/${i % R}`, i, 2);
  console.log(`loaded ${N} manifests sharing one layer in ${R} repositories: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // One link no manifest names: the check has one to find.
  await s.mountBlob('r/dangling', BASE, undefined, 2);
  s.db.exec('ANALYZE');
  const stmts = { before: s.db.prepare(BEFORE), after: s.db.prepare(AFTER) };
  const times = { before: [], after: [] };
  for (let round = 0; round < 20; round++) {
    for (const k of ['before', 'after']) {
      s.db.exec('BEGIN');
      const t = performance.now();
      const removed = stmts[k].run({ digest: BASE, cutoff: 10 }).changes;
      times[k].push(performance.now() - t);
      s.db.exec('ROLLBACK');
      if (removed !== 1) throw new Error(`${k}: removed ${removed} links, expected the dangling one`);
    }
  }
  for (const k of ['before', 'after']) console.log(`dangling check (${k} migration 11): median ${median(times[k]).toFixed(3)} ms, min ${Math.min(...times[k]).toFixed(3)} ms`);
  const claims = [];
  for (let round = 0; round < 20; round++) {
    await s.mountBlob('r/dangling', BASE, undefined, 2);
    const t = performance.now();
    const c = await s.claimBlobIfGarbage(BASE, 10);
    claims.push(performance.now() - t);
    if (c.linksRemoved !== 1 || c.blob) throw new Error('claim');
  }
  console.log(`whole claim (after): median ${median(claims).toFixed(3)} ms`);
  await s.close();
}

// 2. Pushes with and without the count's triggers (same code otherwise).
{
  // Durable, as a server commits: the cost moved with what each commit writes.
  const stores = { with: new SqliteMetadataStore(join(dir, 'with.db')), without: new SqliteMetadataStore(join(dir, 'without.db')) };
  // Without: as before migration 11 (no count, and temporary files on disk, SQLite's default).
  for (const o of COUNT_OBJECTS) stores.without.db.exec(`DROP ${o.startsWith('link_refs') ? 'TRIGGER' : 'INDEX'} ${o}`);
  stores.without.db.pragma('temp_store = DEFAULT');
  for (const s of Object.values(stores)) await s.commitBlob(undefined, 'p/0', { digest: BASE, size: 3e6, storageKey: 'base' }, 1);
  const rounds = 20, per = Math.ceil(P / rounds);
  const times = { with: [], without: [] };
  const cpu = { with: [], without: [] };
  for (let round = 0; round < rounds; round++) {
    for (const k of round % 2 ? ['with', 'without'] : ['without', 'with']) {
      const t = performance.now();
      const c = process.cpuUsage();
      for (let i = round * per; i < (round + 1) * per; i++) await push(stores[k], `p/${i % 50}`, i, 2);
      const used = process.cpuUsage(c);
      times[k].push((performance.now() - t) / per);
      cpu[k].push((used.user + used.system) / 1000 / per);
    }
  }
  // CPU time as well as wall time: on a shared machine the wall clock measures the neighbours too.
  for (const k of ['without', 'with']) {
    console.log(`push (2 blobs + manifest), ${k} the count: median ${(median(times[k]) * 1000).toFixed(0)} µs/image wall, ${(median(cpu[k]) * 1000).toFixed(0)} µs/image CPU, over ${rounds} rounds of ${per}`);
  }
  for (const s of Object.values(stores)) await s.close();
}
rmSync(dir, { recursive: true, force: true });
