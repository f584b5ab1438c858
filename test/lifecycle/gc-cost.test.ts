/**
 * What one GC pass costs, counted (not timed): the candidates it lists and
 * the claims it makes must follow the garbage and the queue, never the size
 * of the registry, and a pass must reach every candidate even when some are
 * left in place (held by another transaction, or requeued at a time that is
 * still due). Runs against SQLite, and PostgreSQL when reachable.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { collectGarbage, type GcOptions } from '../../src/gc/collector.js';
import { createLogger } from '../../src/log.js';
import { PostgresMetadataStore } from '../../src/metadata/postgres/postgres-store.js';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';
import type { MetadataStore } from '../../src/metadata/store.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { createTestDatabase, postgresUnavailable, type TestDatabase } from '../helpers/postgres.js';

const T = Date.now() - 3_600_000;
const digest = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

/** Storage whose deletions are only counted: GC's metadata side is what is measured. */
function countingStorage(): BlobStore & { deleted: string[] } {
  const deleted: string[] = [];
  return {
    deleted,
    deleteBlob: async (key: string) => void deleted.push(key),
    deleteUpload: async () => undefined,
  } as unknown as BlobStore & { deleted: string[] };
}

/** Counts what GC asks of the store; `skip` makes some claims leave the blob in place, as a row locked elsewhere does. */
function spy(store: MetadataStore, skip: (digest: string) => boolean = () => false) {
  const counts = { blobCandidatesListed: 0, manifestCandidatesListed: 0, claims: 0, listed: new Map<string, number>() };
  const view = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'listBlobCandidates') {
        return async (...args: Parameters<MetadataStore['listBlobCandidates']>) => {
          const page = await target.listBlobCandidates(...args);
          counts.blobCandidatesListed += page.length;
          for (const c of page) counts.listed.set(c.digest, (counts.listed.get(c.digest) ?? 0) + 1);
          return page;
        };
      }
      if (prop === 'listManifestCandidates') {
        return async (...args: Parameters<MetadataStore['listManifestCandidates']>) => {
          const page = await target.listManifestCandidates(...args);
          counts.manifestCandidatesListed += page.length;
          return page;
        };
      }
      if (prop === 'claimBlobIfGarbage') {
        return async (d: string, cutoff: number) => {
          counts.claims++;
          return skip(d) ? { linksRemoved: 0 } : target.claimBlobIfGarbage(d, cutoff);
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { view, counts };
}

const options: GcOptions = { blobGrace: 0, manifestGrace: 0, untagged: true, uploadTimeout: 3_600_000, touchInterval: 0, dryRun: false, verbose: false };
const silent = createLogger('silent');

/** Pushes `n` images (a config and a layer each, tagged) named `prefix-i`; returns their manifests' digests. */
async function pushImages(s: MetadataStore, prefix: string, n: number): Promise<string[]> {
  // Concurrently: the pushes share group commits, which keeps the test quick.
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const repo = `cost/${prefix}${i % 3}`;
      const blobs = [digest(`${prefix}-config-${i}`), digest(`${prefix}-layer-${i}`)];
      await Promise.all(blobs.map((b) => s.commitBlob(undefined, repo, { digest: b, size: 10, storageKey: `k/${b.slice(7)}` }, T)));
      const body = Buffer.from(JSON.stringify({ prefix, i, blobs }));
      const m = digest(body.toString());
      await s.putManifest(repo, { digest: m, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: body.length, body, blobs, children: [] }, `t${i}`, T);
      return `${repo}@${m}`;
    }),
  );
}

async function deleteImages(s: MetadataStore, refs: string[]): Promise<void> {
  await Promise.all(
    refs.map(async (ref) => {
      const [repo, m] = ref.split('@') as [string, string];
      assert.ok(await s.deleteManifest(repo, m, T + 1));
    }),
  );
}

function suite(label: string, open: () => Promise<{ store: MetadataStore; close: () => Promise<void> }>) {
  describe(`GC cost follows the garbage (${label})`, () => {
    it('a steady-state pass lists and claims the same rows whatever number of live images surround the garbage', async () => {
      const measure = async (live: number) => {
        const { store, close } = await open();
        try {
          await pushImages(store, 'live', live);
          const garbage = await pushImages(store, 'junk', 8);
          await collectGarbage(store, countingStorage(), options, silent); // the first look at everything pushed
          await deleteImages(store, garbage);
          const { view, counts } = spy(store);
          const storage = countingStorage();
          const report = await collectGarbage(view, storage, options, silent);
          assert.equal(report.blobsDeleted, 16);
          assert.equal(storage.deleted.length, 16);
          // The report counts what the pass looked at, as the spy saw it.
          assert.equal(report.blobsExamined, counts.blobCandidatesListed);
          assert.equal(report.manifestsExamined, counts.manifestCandidatesListed);
          assert.deepEqual(Object.keys(report.phasesMs), ['manifests', 'blobs', 'uploads', 'repositories']);
          return { listed: counts.blobCandidatesListed, claims: counts.claims, manifests: counts.manifestCandidatesListed };
        } finally {
          await close();
        }
      };
      assert.deepEqual(await measure(60), await measure(3));
      assert.deepEqual(await measure(3), { listed: 16, claims: 16, manifests: 0 });
    });

    it('a pass reaches every queued blob once, past more than a page of blobs it has to leave in place', async () => {
      const { store, close } = await open();
      try {
        // 600 unreferenced uploads, more than one page (500) of candidates: the
        // first 550 in queue order are "held elsewhere" and stay queued.
        const all = Array.from({ length: 600 }, (_, i) => digest(`orphan-${i}`));
        await Promise.all(all.map((d) => store.commitBlob(undefined, 'cost/orphans', { digest: d, size: 1, storageKey: `k/${d.slice(7)}` }, T)));
        const order = [...all].sort();
        const held = new Set(order.slice(0, 550));
        const { view, counts } = spy(store, (d) => held.has(d));
        const report = await collectGarbage(view, countingStorage(), options, silent);
        assert.equal(report.blobsDeleted, 50, 'the 50 not held are collected in this pass');
        assert.equal(counts.claims, 600);
        assert.equal(report.blobsExamined, 600);
        assert.deepEqual([...new Set(counts.listed.values())], [1], 'each queued blob is listed once');
        // A dry run's time goes to the same phases as a run's: it has no copy of the metadata to make.
        const dry = await collectGarbage(store, countingStorage(), { ...options, dryRun: true }, silent);
        assert.equal(dry.blobsDeleted, 550);
        assert.equal(dry.blobsExamined, 550);
        assert.deepEqual(Object.keys(dry.phasesMs), Object.keys(report.phasesMs));
        // The next pass finds the held ones again (they stayed queued).
        const again = await collectGarbage(store, countingStorage(), options, silent);
        assert.equal(again.blobsDeleted, 550);
      } finally {
        await close();
      }
    });
  });
}

suite('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-gc-cost-'));
  const store = new SqliteMetadataStore(join(dir, 'metadata.db'));
  return { store, close: async () => (await store.close(), rmSync(dir, { recursive: true, force: true })) };
});

const unavailable = await postgresUnavailable();
if (!unavailable) {
  const databases: TestDatabase[] = [];
  after(async () => {
    await Promise.all(databases.map((d) => d.drop()));
  });
  suite('postgres', async () => {
    const db = await createTestDatabase();
    databases.push(db);
    const store = await PostgresMetadataStore.open(db.url, { poolSize: 16, clock: 'caller' });
    return { store, close: () => store.close() };
  });
} else if (process.env.CI === 'true') {
  it('PostgreSQL is reachable (required under CI=true)', () => assert.fail(unavailable));
}
