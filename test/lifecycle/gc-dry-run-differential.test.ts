/**
 * A GC dry run reports exactly what a real run then does, and changes
 * nothing: a seeded, randomized differential test. Each seed builds a
 * registry straight through the MetadataStore (shared blobs, mounts,
 * images, indexes, referrers, moved and deleted tags, deleted manifests,
 * unlinked blobs, stale uploads, pulls; some seeds with retention rules),
 * then runs two passes: one with grace periods that leave part of the
 * garbage not yet due, then one at grace 0, where deleting an index releases
 * its children and a subject its referrers within the same pass. Before each
 * real run, a dry run with the same options must report the same counts and
 * lists, and leave the live store as it found it; the real run must then have
 * deleted exactly what it reported.
 *
 * The dry run is an implementation of its own (SQLite: a view of the live
 * database with the pass's changes kept in TEMP tables, dry-run-view.ts;
 * PostgreSQL: a transaction rolled back, its operations one after another
 * where the run's waves go in parallel), which is why it is held to the real
 * run here, on many shapes of registry rather than a few written by hand.
 *
 * SQLite on a database file always; PostgreSQL too with
 * BERTH_TEST_METADATA=postgres. BERTH_TEST_SEED=<n> replays one seed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { collectGarbage, type GcOptions, type GcReport } from '../../src/gc/collector.js';
import { createLogger } from '../../src/log.js';
import { PostgresMetadataStore } from '../../src/metadata/postgres/postgres-store.js';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';
import type { MetadataStore, NewManifest } from '../../src/metadata/store.js';
import { parsePolicies } from '../../src/policy/config.js';
import { Policies } from '../../src/policy/policies.js';
import { RegistryError } from '../../src/registry/errors.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { createTestDatabase, postgresUnavailable, type TestDatabase } from '../helpers/postgres.js';

const SQLITE_SEEDS = 30;
const POSTGRES_SEEDS = 12;
const REPLAY = process.env.BERTH_TEST_SEED === undefined ? undefined : Number(process.env.BERTH_TEST_SEED);

const MIN = 60_000;
/**
 * Operations are STEP apart, each at an odd multiple of STEP/2 before the
 * seed's start, and every grace period, timeout and retention duration is a
 * whole number of minutes. The store's clock is the real one (GC reads its
 * cutoffs from store.now()), so the dry run's cutoffs are a few ms earlier
 * than the real run's: no item may sit between them, which holds as long as a
 * seed takes less than STEP/2.
 */
const STEP = 30_000;
const FAR = 100 * 365 * 86_400_000;
const TAGS = ['latest', 'v1', 'v2', 'v3', 'dev', 't1', 't2', 't3'];
const REPOS = ['a/app', 'a/web', 'b/app', 'c/tools', 'ci/x'];
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const silent = createLogger('silent');

/** mulberry32: small, fast, and the same sequence on every machine. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function digestOf(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

/** Storage that records deletions: a dry run must ask for none, a real run for exactly what it reports. */
function recordingStorage(): BlobStore & { blobs: string[]; uploads: string[] } {
  const rec = { blobs: [] as string[], uploads: [] as string[] };
  const fake = {
    deleteBlob: async (key: string) => void rec.blobs.push(key),
    deleteUpload: async (id: string) => void rec.uploads.push(id),
  };
  return new Proxy(rec, {
    get(target, prop) {
      if (prop in fake) return fake[prop as keyof typeof fake];
      if (prop in target) return target[prop as keyof typeof target];
      // GC needs nothing else from storage; anything more is a change to look at.
      throw new Error(`unexpected BlobStore.${String(prop)} in GC`);
    },
  }) as unknown as BlobStore & { blobs: string[]; uploads: string[] };
}

/** What the generator made, so the checks know what to look at. */
interface World {
  repos: string[];
  blobs: Map<string, number>; // digest -> size
  linked: Map<string, Set<string>>; // repo -> digests committed or mounted there (some since unlinked)
  manifests: Map<string, Map<string, NewManifest>>; // repo -> digest -> what was pushed
  uploads: string[];
}

/** Builds a random registry through the store; every operation at its own time, oldest first. */
async function buildRegistry(s: MetadataStore, seed: number, rnd: () => number, base: number): Promise<World> {
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)]!;
  const some = <T>(xs: T[], max: number): T[] => {
    const n = Math.min(xs.length, 1 + int(max));
    return [...xs].sort(() => rnd() - 0.5).slice(0, n);
  };
  const world: World = { repos: some(REPOS, REPOS.length).concat(), blobs: new Map(), linked: new Map(), manifests: new Map(), uploads: [] };
  if (world.repos.length < 2) world.repos = REPOS.slice(0, 2);
  for (const r of world.repos) (world.linked.set(r, new Set()), world.manifests.set(r, new Map()));

  const ops = 40 + int(50);
  let made = 0;
  // Refusals (unlinking a referenced blob, deleting a manifest an index holds,
  // a manifest naming a blob or child that is gone) are part of the mix: the
  // store keeps its state, and the generator goes on.
  const attempt = async (op: () => Promise<unknown>) => {
    try {
      await op();
    } catch (e) {
      if (!(e instanceof RegistryError)) throw e;
    }
  };
  const commit = async (repo: string, t: number) => {
    const known = [...world.blobs.keys()];
    // Mostly new content; sometimes the same content uploaded into another repository.
    const digest = known.length > 0 && rnd() < 0.25 ? pick(known) : digestOf(`seed ${seed} blob ${made++}`);
    const size = world.blobs.get(digest) ?? 1 + int(5000);
    world.blobs.set(digest, size);
    await s.commitBlob(undefined, repo, { digest, size, storageKey: `sha256/${digest.slice(7, 9)}/${digest.slice(7)}.u${made++}` }, t);
    world.linked.get(repo)!.add(digest);
  };
  const push = async (repo: string, m: NewManifest, tag: string | undefined, t: number) => {
    world.manifests.get(repo)!.set(m.digest, m);
    await attempt(() => s.putManifest(repo, m, tag, t));
  };
  const newManifest = (kind: 'image' | 'index', blobs: string[], children: string[], subject: string | undefined): NewManifest => {
    const body = Buffer.from(JSON.stringify({ seed, n: made++, kind, blobs, children, subject }));
    return {
      digest: digestOf(body.toString()),
      mediaType: kind === 'index' ? OCI_INDEX : OCI_MANIFEST,
      size: body.length,
      body,
      blobs,
      children,
      ...(subject ? { subject, artifactType: 'application/vnd.example.sig' } : {}),
    };
  };

  for (let i = 0; i < ops; i++) {
    const t = base - (ops - i) * STEP - STEP / 2;
    const repo = pick(world.repos);
    const linked = [...world.linked.get(repo)!];
    const pushed = [...world.manifests.get(repo)!.values()];
    const tag = rnd() < 0.55 ? pick(TAGS) : undefined;
    const r = rnd();
    if (r < 0.24 || (r < 0.5 && linked.length === 0)) {
      await commit(repo, t);
    } else if (r < 0.32) {
      const digest = pick([...world.blobs.keys()]);
      const from = rnd() < 0.7 ? world.repos.find((x) => world.linked.get(x)!.has(digest)) : undefined;
      if (await s.mountBlob(repo, digest, from, t)) world.linked.get(repo)!.add(digest);
    } else if (r < 0.54) {
      // An image; now and then a referrer of another manifest of the repository.
      const subject = pushed.length > 0 && rnd() < 0.25 ? pick(pushed).digest : undefined;
      await push(repo, newManifest('image', some(linked, 3), [], subject), subject ? undefined : tag, t);
    } else if (r < 0.62) {
      if (pushed.length === 0) continue;
      await push(repo, newManifest('index', [], some(pushed.map((m) => m.digest), 3), undefined), rnd() < 0.7 ? pick(TAGS) : undefined, t);
    } else if (r < 0.68) {
      // Pushed again: renews its grace period, and may move a tag onto it.
      if (pushed.length === 0) continue;
      await push(repo, pick(pushed), tag, t);
    } else if (r < 0.77) {
      await attempt(() => s.deleteTag(repo, pick(TAGS), t));
    } else if (r < 0.84) {
      if (pushed.length === 0) continue;
      await attempt(() => s.deleteManifest(repo, pick(pushed).digest, t));
    } else if (r < 0.89) {
      if (linked.length === 0) continue;
      await attempt(() => s.unlinkBlob(repo, pick(linked)));
    } else if (r < 0.95) {
      const id = `seed${seed}-upload${world.uploads.length}`;
      world.uploads.push(id);
      await s.createUpload(id, repo, t);
    } else if (r < 0.97) {
      // An upload that received bytes later than it was opened.
      if (world.uploads.length > 0) await s.advanceUpload(pick(world.uploads), 0, 10, t);
    } else if (r < 0.985) {
      await s.recordTagPulls([{ repository: repo, tag: pick(TAGS), at: t }]);
    } else {
      // HEAD answers renew what they answered for (invariant 5).
      if (linked.length > 0) await s.statBlob(repo, pick(linked), t, 0);
      if (pushed.length > 0) await s.statManifest(repo, pick(pushed).digest, t, 0);
    }
  }
  return world;
}

/** Retention rules for some seeds, written as a config file would have them. */
function randomPolicies(rnd: () => number): Policies | undefined {
  if (rnd() < 0.4) return undefined;
  const int = (n: number) => Math.floor(rnd() * n);
  const raw: unknown[] = [];
  if (rnd() < 0.7) raw.push({ repositories: ['a/**'], retention: { keepLast: int(2), ...(rnd() < 0.5 ? { keepTags: ['v*'] } : {}) } });
  if (rnd() < 0.5) raw.push({ repositories: ['**'], retention: { pushedWithin: `${5 + 5 * int(4)}m`, ...(rnd() < 0.5 ? { pulledWithin: `${10 * (1 + int(3))}m` } : {}) } });
  if (rnd() < 0.6) raw.push({ repositories: ['b/*', 'c/*', 'ci/*'], retention: { untaggedAfter: `${5 * int(4)}m` } });
  if (rnd() < 0.4) raw.push({ repositories: ['a/app', 'ci/x'], immutableTags: ['v1', 't*'] });
  if (!raw.some((r) => (r as { retention?: unknown }).retention)) raw.push({ repositories: ['**'], retention: { keepLast: 1 } });
  return new Policies(parsePolicies(raw));
}

function randomOptions(rnd: () => number, policies: Policies | undefined): GcOptions {
  const minutes = (xs: number[]) => xs[Math.floor(rnd() * xs.length)]! * MIN;
  return {
    blobGrace: minutes([0, 5, 10, 20]),
    manifestGrace: minutes([0, 3, 8, 15]),
    untagged: rnd() < 0.85,
    uploadTimeout: minutes([0, 5, 15]),
    touchInterval: minutes([0, 1]),
    dryRun: false,
    verbose: true,
    ...(policies ? { policies } : {}),
  };
}

/**
 * A cheap picture of everything GC may change, read through the port: the
 * candidates and queue as of a far cutoff, every repository, tag, link,
 * blob, manifest and upload the generator made, and the totals.
 */
async function fingerprint(s: MetadataStore, world: World, base: number) {
  const repositories = (await s.listRepositories(undefined, 1000)).items;
  const tags: Record<string, unknown> = {};
  const links: Record<string, number | null> = {};
  const manifests: Record<string, boolean> = {};
  for (const repo of world.repos) {
    tags[repo] = { list: (await s.listTags(repo, undefined, 1000)).items, detail: await s.listRetentionTags(repo) };
    for (const d of world.blobs.keys()) links[`${repo}@${d}`] = (await s.findBlob(repo, d))?.lastSeen ?? null;
    for (const d of world.manifests.get(repo)!.keys()) manifests[`${repo}@${d}`] = (await s.findManifestByDigest(repo, d)) !== undefined;
  }
  const blobs: Record<string, unknown> = {};
  for (const d of world.blobs.keys()) blobs[d] = (await s.findAnyBlob(d)) ?? null;
  const uploads: Record<string, unknown> = {};
  for (const id of world.uploads) uploads[id] = (await s.uploadExists(id)) ? ((await s.findUpload(id))?.updatedAt ?? 'exists') : null;
  return {
    repositories,
    tags,
    links,
    manifests,
    blobs,
    uploads,
    manifestCandidates: await s.listManifestCandidates(base + FAR, 100_000),
    blobCandidates: await s.listBlobCandidates(base + FAR, 100_000),
    deleting: await s.listDeletingBlobs(1000),
    totals: await s.storageTotals(),
  };
}

/** The part of a report a dry run must predict (not timings, nor what it examined on the way). */
function outcome(r: GcReport) {
  return {
    manifestsDeleted: r.manifestsDeleted,
    blobsDeleted: r.blobsDeleted,
    bytesReclaimed: r.bytesReclaimed,
    linksRemoved: r.linksRemoved,
    uploadsPurged: r.uploadsPurged,
    repositoriesRemoved: r.repositoriesRemoved,
    manifests: [...(r.manifests ?? [])].sort(),
    blobs: [...(r.blobs ?? [])].sort(),
    // Tags are reported in the decision's order (collector.ts); untagged
    // manifests in the order their deletions finished, so sorted.
    retention: r.retention?.map((x) => ({ ...x, untagged: [...x.untagged].sort((a, b) => `${a.repository}@${a.digest}`.localeCompare(`${b.repository}@${b.digest}`)) })),
  };
}

/** What the seeds exercised, summed: a suite's last test fails if the generator stops producing a kind of garbage. */
type Coverage = Record<'manifests' | 'blobs' | 'links' | 'uploads' | 'repositories' | 'retentionTags' | 'retentionUntagged' | 'cascades' | 'notDue', number>;

/** Dry run, then real run, with the same options; every check of one pass. */
async function checkPass(s: MetadataStore, world: World, base: number, options: GcOptions, label: string, coverage: Coverage): Promise<void> {
  const before = await fingerprint(s, world, base);
  const dryStorage = recordingStorage();
  const dry = await collectGarbage(s, dryStorage, { ...options, dryRun: true }, silent, undefined, () => base);
  assert.deepEqual({ blobs: dryStorage.blobs, uploads: dryStorage.uploads }, { blobs: [], uploads: [] }, `${label}: a dry run deletes no bytes`);
  assert.deepEqual(await fingerprint(s, world, base), before, `${label}: the dry run left the live store as it was`);

  const storage = recordingStorage();
  const real = await collectGarbage(s, storage, { ...options, dryRun: false }, silent, undefined, () => base);
  assert.equal(dry.dryRun, true);
  assert.equal(real.dryRun, false);
  assert.deepEqual(outcome(dry), outcome(real), `${label}: the dry run reports what the run does`);

  // The real run did what it reported, and nothing else.
  const now = await fingerprint(s, world, base);
  const gone = (was: Record<string, unknown>, is: Record<string, unknown>) =>
    Object.keys(was).filter((k) => was[k] !== null && was[k] !== false && (is[k] === null || is[k] === false)).sort();
  assert.deepEqual(gone(before.manifests, now.manifests), outcome(real).manifests, `${label}: manifests deleted`);
  assert.deepEqual(gone(before.blobs, now.blobs), outcome(real).blobs, `${label}: blobs deleted`);
  const keys = outcome(real).blobs.map((d) => (before.blobs[d] as { storageKey: string }).storageKey).sort();
  assert.deepEqual([...storage.blobs].sort(), keys, `${label}: the bytes of exactly the deleted blobs were removed`);
  assert.equal(real.bytesReclaimed, outcome(real).blobs.reduce((n, d) => n + world.blobs.get(d)!, 0), `${label}: bytes reclaimed`);
  assert.equal(gone(before.links, now.links).length, real.linksRemoved, `${label}: links removed`);
  assert.deepEqual([...storage.uploads].sort(), gone(before.uploads, now.uploads), `${label}: uploads purged`);
  assert.equal(storage.uploads.length, real.uploadsPurged);
  assert.equal(before.repositories.length - now.repositories.length, real.repositoriesRemoved, `${label}: repositories removed`);
  assert.ok(now.repositories.every((r) => before.repositories.includes(r)));

  coverage.manifests += real.manifestsDeleted;
  coverage.blobs += real.blobsDeleted;
  coverage.links += real.linksRemoved;
  coverage.uploads += real.uploadsPurged;
  coverage.repositories += real.repositoriesRemoved;
  for (const r of real.retention ?? []) (coverage.retentionTags += r.tags.length, coverage.retentionUntagged += r.untagged.length);
  // Released and collected in one pass: a child with its index, a referrer with its subject.
  const deleted = new Set(real.manifests);
  for (const ref of deleted) {
    const [repo, digest] = ref.split('@') as [string, string];
    for (const m of world.manifests.get(repo)!.values()) {
      if (deleted.has(`${repo}@${m.digest}`) && (m.children.includes(digest) || m.subject === digest) && before.manifests[`${repo}@${m.digest}`]) coverage.cascades++;
    }
  }
  // Garbage a grace period kept: candidates as of the far cutoff still there.
  if (options.manifestGrace > 0 || options.blobGrace > 0) coverage.notDue += now.manifestCandidates.length + now.blobCandidates.length;
}

async function runSeed(s: MetadataStore, seed: number, coverage: Coverage): Promise<void> {
  const rnd = mulberry32(seed);
  const base = Date.now();
  const world = await buildRegistry(s, seed, rnd, base);
  const policies = randomPolicies(rnd);
  await checkPass(s, world, base, randomOptions(rnd, policies), 'pass 1 (graces)', coverage);
  // Grace 0: what pass 1 left not yet due, and what deleting an index or a
  // subject releases, goes in this one pass (collector.ts loops the scan).
  const zero = { ...randomOptions(rnd, policies), blobGrace: 0, manifestGrace: 0, untagged: true };
  await checkPass(s, world, base, zero, 'pass 2 (grace 0)', coverage);
  assert.ok(Date.now() - base < STEP / 2, `seed ${seed} took ${Date.now() - base} ms: its times may now straddle a cutoff (see STEP)`);
}

function seeds(count: number): number[] {
  return REPLAY !== undefined ? [REPLAY] : Array.from({ length: count }, (_, i) => i + 1);
}

function suite(label: string, count: number, open: (seed: number) => Promise<{ store: MetadataStore; close: () => Promise<void> }>) {
  describe(`a GC dry run reports exactly what the run then does (${label})`, () => {
    const coverage: Coverage = { manifests: 0, blobs: 0, links: 0, uploads: 0, repositories: 0, retentionTags: 0, retentionUntagged: 0, cascades: 0, notDue: 0 };
    for (const seed of seeds(count)) {
      it(`seed ${seed}`, async (t) => {
        const { store, close } = await open(seed);
        try {
          await runSeed(store, seed, coverage);
        } catch (e) {
          t.diagnostic(`replay: BERTH_TEST_SEED=${seed} node --test dist/test/lifecycle/gc-dry-run-differential.test.js`);
          console.log(`gc-dry-run-differential (${label}) failed at seed ${seed}; replay with BERTH_TEST_SEED=${seed}`);
          throw e;
        } finally {
          await close();
        }
      });
    }
    if (REPLAY === undefined) {
      it('the seeds produced every kind of garbage, cascades and garbage not yet due (so the checks above could fail)', () => {
        for (const [kind, n] of Object.entries(coverage)) assert.ok(n > 0, `no seed produced any ${kind}: ${JSON.stringify(coverage)}`);
      });
    }
  });
}

suite('sqlite, database file', SQLITE_SEEDS, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-gc-dry-diff-'));
  const store = new SqliteMetadataStore(join(dir, 'metadata.db'));
  return { store, close: async () => (await store.close(), rmSync(dir, { recursive: true, force: true })) };
});

if (process.env.BERTH_TEST_METADATA === 'postgres') {
  const unavailable = await postgresUnavailable();
  if (!unavailable) {
    const databases: TestDatabase[] = [];
    after(async () => {
      await Promise.all(databases.map((d) => d.drop()));
    });
    suite('postgres', POSTGRES_SEEDS, async () => {
      const db = await createTestDatabase();
      databases.push(db);
      // The caller's clock: the generator stamps its operations with times before now().
      const store = await PostgresMetadataStore.open(db.url, { poolSize: 4, clock: 'caller' });
      return { store, close: () => store.close() };
    });
  } else if (process.env.CI === 'true') {
    it('PostgreSQL is reachable (required under CI=true)', () => assert.fail(unavailable));
  } else {
    describe('a GC dry run reports exactly what the run then does (postgres)', { skip: `skipped: ${unavailable}` }, () => {
      it('needs a PostgreSQL server');
    });
  }
}
