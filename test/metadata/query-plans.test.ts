/**
 * Every prepared statement of both metadata stores (their own, the console's,
 * the outbox's) reads through an index: no statement reads a whole table or
 * sorts a set that grows with the registry, except those listed below with
 * the reason their input stays small or their whole-table read is by design.
 * A new statement that scans fails here until it gets an index, or a line
 * below saying why it does not need one. (Issue 18: reads at a million images
 * cost what they cost at ten thousand.)
 *
 * SQLite plans from the schema alone (Berth gathers no statistics), so an
 * empty database shows the plans of any size. PostgreSQL plans from
 * statistics: the generic plans are taken with sequential scans and sorts
 * disabled, so what remains is what no index can serve.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type Database from 'better-sqlite3';
import pg from 'pg';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';
import { SqliteOutbox } from '../../src/metadata/sqlite/outbox.js';
import { PostgresMetadataStore, SQL } from '../../src/metadata/postgres/postgres-store.js';
import { SQL as OUTBOX_SQL } from '../../src/metadata/postgres/outbox.js';
import { createTestDatabase, postgresUnavailable, type TestDatabase } from '../helpers/postgres.js';
import { postgresCostly, postgresPlan, sqliteCostly, sqlitePlan } from '../helpers/query-plans.js';

const SMALL = {
  quotas: 'one row per quota rule',
  runs: 'one row per GC or fsck run, and the newest first by key',
  runKinds: 'one row per kind of run (gc, fsck), not per run',
  pruneRuns: 'walks back the newest KEPT_RUNS (1,000) runs by key to find the bound, then deletes below it by key',
  oneManifest: 'sorts the tags or parents of one manifest',
  batch: "sorts the request's own values (a batch of pulls or digests), not a table",
  fsck: "fsck's own candidates table: objects seen without metadata",
  repositories: 'one row per repository, by design (the console lists them all)',
  recount: 'recounts one quota namespace, only when it is new or gains repositories (not at every start)',
  gc: 'GC and lifecycle (src/gc), examined with its own work',
  totals: "the console's storage totals (admins, on request): one pass over the blobs",
  outboxStats: 'per notification endpoint; /metrics and the admin API only',
  retention: "retention's pass over every tag of one repository, by design",
};

const SQLITE_ALLOWED: Record<string, string> = {
  'store.quotaNamespaceNames': SMALL.quotas,
  'store.quotaUsage': SMALL.quotas,
  'store.fillQuotaBlobs': SMALL.recount,
  'store.runTotals': SMALL.runKinds,
  'store.pruneRuns': SMALL.pruneRuns,
  'store.pruneCandidates': SMALL.fsck,
  'store.deletingBlobs': SMALL.gc,
  'store.deleteEmptyRepositories': SMALL.gc,
  'console.repositorySummaries': SMALL.repositories,
  'console.listRuns': SMALL.runs,
  'console.tagsOfManifest': SMALL.oneManifest,
  'console.parentsOfManifest': SMALL.oneManifest,
  'console.storageTotals': SMALL.totals,
  'console.pullCounts': SMALL.batch,
  'outbox.tagsOf': SMALL.oneManifest,
  'outbox.stats': SMALL.outboxStats,
};

const POSTGRES_ALLOWED: Record<string, string> = {
  'store.enqueueBlobs': SMALL.batch,
  'store.recordPulls': SMALL.batch,
  'store.quotaNamespaceNames': SMALL.quotas,
  'store.quotaUsage': SMALL.quotas,
  'store.runTotals': SMALL.runKinds,
  'store.recordRun': SMALL.pruneRuns,
  'store.listRuns': SMALL.runs,
  'store.pruneCandidates': SMALL.fsck,
  'store.retentionTags': SMALL.retention,
  'store.manifestCandidates': SMALL.gc,
  'store.blobCandidates': SMALL.gc,
  'store.deletingBlobs': SMALL.gc,
  'store.expireUploads': SMALL.gc,
  'store.releaseIfOrphanById': 'an anti-join on one manifest, planned as a nested loop on real statistics (bench/plans/)',
  'store.repositorySummaries': SMALL.repositories,
  'store.listReferrers': 'the referrers of one subject: with sorts disabled the planner walks the primary key instead of sorting them',
  'store.lockEmptyRepositories': SMALL.gc,
  'store.foldRepositoryStats': 'every delta appended since the last fold, by design: what GC folds in at the end of a pass',
  'store.tagsOfManifest': SMALL.oneManifest,
  'store.parentsOfManifest': SMALL.oneManifest,
  'store.storageTotals': SMALL.totals,
  'outbox.tagsOf': SMALL.oneManifest,
  'outbox.stats': SMALL.outboxStats,
};

/** "group.name: plan lines" for each statement that scans or sorts and is not allowed to. */
function offenders(found: Map<string, string[]>, allowed: Record<string, string>): string[] {
  return [...found].filter(([name, bad]) => bad.length > 0 && !(name in allowed)).map(([name, bad]) => `${name}: ${bad.join('; ')}`);
}

describe('query plans: SQLite statements read through indexes', () => {
  it('no statement scans a table or sorts, beyond those listed with a reason', () => {
    const store = new SqliteMetadataStore(':memory:');
    try {
      const internals = store as unknown as { stmt: object; cq: object };
      const groups: Record<string, object> = {
        store: internals.stmt,
        console: internals.cq,
        outbox: (new SqliteOutbox(store.db, { endpoints: [] }) as unknown as { s: object }).s,
      };
      const found = new Map<string, string[]>();
      for (const [group, statements] of Object.entries(groups)) {
        for (const [name, st] of Object.entries(statements)) {
          const source = (st as { source?: unknown }).source;
          if (typeof source !== 'string' || /^\s*(SAVEPOINT|RELEASE|ROLLBACK)/.test(source)) continue;
          found.set(`${group}.${name}`, sqliteCostly(sqlitePlan(store.db, source)));
        }
      }
      assert.ok(found.size > 100, 'every statement examined');
      assert.deepEqual(offenders(found, SQLITE_ALLOWED), []);
      // The console's repository list reads the repositories' own rows, not their tags, manifests or links.
      assert.deepEqual(found.get('console.repositorySummaries')!.filter((d) => !/^SCAN repositories\b/.test(d)), []);
      // The request path's reads, by name: none of them may ever be allowed to scan.
      for (const name of ['store.statBlob', 'store.findBlobInRepo', 'store.findManifestByTag', 'store.findManifestByDigest', 'store.listTags', 'store.listRepositories', 'store.tagsVersion', 'console.listTagDetails']) {
        assert.deepEqual(found.get(name), [], name);
      }
    } finally {
      store.db.close();
    }
  });
});

describe('query plans: the SQLite dry run view reads through indexes', () => {
  it("asks GC's questions of the live database as the store does, with its own changes beside them", async () => {
    // The view reads the live database in place (src/metadata/sqlite/dry-run-view.ts):
    // a statement that scanned would make the dry run cost the registry's size.
    const dir = mkdtempSync(join(tmpdir(), 'berth-plans-'));
    const store = new SqliteMetadataStore(join(dir, 'metadata.db'));
    try {
      const found = await store.dryRun(async (view) => {
        const internals = view as unknown as { s: object; db: Database.Database };
        const plans = new Map<string, string[]>();
        for (const [name, st] of Object.entries(internals.s)) plans.set(`dryRun.${name}`, sqliteCostly(sqlitePlan(internals.db, (st as { source: string }).source)));
        return plans;
      });
      assert.ok(found.size > 25, 'every statement examined');
      assert.deepEqual(offenders(found, { 'dryRun.goneEmptyRepositories': SMALL.gc }), []);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const unavailable = await postgresUnavailable();
describe('query plans: PostgreSQL statements read through indexes', { skip: unavailable && process.env.CI !== 'true' ? `skipped: ${unavailable}` : false }, () => {
  const databases: TestDatabase[] = [];
  after(async () => {
    await Promise.all(databases.map((d) => d.drop()));
  });

  it('no statement needs a sequential scan or a sort, beyond those listed with a reason', async () => {
    const db = await createTestDatabase();
    databases.push(db);
    await (await PostgresMetadataStore.open(db.url)).close(); // the schema
    const client = new pg.Client(db.url);
    await client.connect();
    try {
      await client.query('SET plan_cache_mode = force_generic_plan');
      await client.query('SET enable_seqscan = off');
      await client.query('SET enable_sort = off');
      const found = new Map<string, string[]>();
      for (const [group, statements] of [['store', SQL], ['outbox', OUTBOX_SQL]] as const) {
        for (const [name, sql] of Object.entries(statements)) found.set(`${group}.${name}`, postgresCostly(await postgresPlan(client, name, sql)));
      }
      assert.ok(found.size > 100, 'every statement examined');
      assert.deepEqual(offenders(found, POSTGRES_ALLOWED), []);
      // Its rows, plus the deltas appended since GC last folded them in (migration 9).
      assert.deepEqual(found.get('store.repositorySummaries')!.filter((d) => !/ on (repositories|repository_stat_deltas)\b/.test(d)), []);
      for (const name of ['store.statBlob', 'store.findBlobInRepo', 'store.findManifestByTag', 'store.findManifestByDigest', 'store.listTags', 'store.listRepositories', 'store.tagsVersion', 'store.listTagDetails']) {
        assert.deepEqual(found.get(name), [], name);
      }
    } finally {
      await client.end();
    }
  });
});
