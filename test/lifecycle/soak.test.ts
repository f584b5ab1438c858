/**
 * A short soak (the long one is bench/soak.mjs): 8 clients push, delete and
 * re-push images with shared layers while `berth gc` loops as a separate
 * process with a real grace period; no false "exists" (a HEAD 200, mount 201
 * or upload 201 followed, within the grace, by MANIFEST_BLOB_UNKNOWN for that
 * blob), no lost image, no 5xx, no failed collector run. On the embedded
 * stores one node; in the PostgreSQL + S3 pass two nodes share the database
 * and the bucket, and each client alternates between them.
 *
 * The grace is short (2 s) so that the collector really takes blobs within
 * the run; the false-exists bound is measured from the client's own request
 * times, so a loaded machine only makes more `late` retries, never a failure
 * of a correct registry. BERTH_SOAK_SHORT=<seconds> changes the length; the
 * clients go on past it (up to 3×) until the collector has taken a blob.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { makeDataDir, removeStorage, startServer, TEST_METADATA, type TestServer } from '../helpers/server.js';
import { anomalyCount, formatReport, runSoak } from '../helpers/soak.js';

const SECONDS = Number(process.env.BERTH_SOAK_SHORT ?? 12);
const CLIENTS = 8;
const GRACE_MS = 2000;
const NODES = TEST_METADATA === 'postgres' ? 2 : 1;

describe('soak: pushes, deletes and a separate collector with a real grace', () => {
  it(`no false exists, no lost image, no 5xx (${NODES} node(s), ${CLIENTS} clients, ${SECONDS} s, grace ${GRACE_MS} ms)`, { timeout: SECONDS * 1000 + 180_000 }, async () => {
    const dataDir = makeDataDir();
    const servers: TestServer[] = [];
    try {
      for (let i = 0; i < NODES; i++) {
        servers.push(await startServer({ dataDir, name: `node ${i + 1}`, env: { BERTH_GC_ENABLED: 'false' } }));
      }
      const report = await runSoak({
        nodes: servers.map((s) => s.url),
        seconds: SECONDS,
        clients: CLIENTS,
        graceMs: GRACE_MS,
        runGc: () => berth(['gc', '--data', dataDir, '--grace', `${GRACE_MS}ms`, '--json']),
      });
      const table = formatReport(report);
      assert.equal(anomalyCount(report), 0, `the soak found anomalies:\n${table}`);
      console.log(table);
      // A run that did not exercise anything proves nothing.
      assert.ok(report.counts.pushes > CLIENTS * 2, `too few pushes:\n${table}`);
      assert.ok(report.counts.headsExisting > 0 && report.counts.deletes > 0, `no HEAD 200 or no delete:\n${table}`);
      assert.ok(report.counts.gcRuns >= 2 && report.counts.gcBlobsDeleted > 0, `the collector took nothing:\n${table}`);
      for (const s of servers) assert.deepEqual(s.loggedErrors(), [], 'no error in the server log');
    } finally {
      for (const s of servers) await s.stop();
      rmSync(dataDir, { recursive: true, force: true });
      await removeStorage(dataDir);
    }
  });
});
