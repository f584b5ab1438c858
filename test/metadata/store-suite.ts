/**
 * The MetadataStore contract, as one suite every implementation must pass
 * (the idea of distribution's storage driver test suites). Each test gets an
 * empty database; `open()` gives another store on the same database — a
 * second process or node — for the races of the consistency contract.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { armPause } from '../../src/pause-points.js';
import { RegistryError } from '../../src/registry/errors.js';
import type { BlobCandidate, ManifestCandidate, ManifestRef, MetadataStore, NewManifest } from '../../src/metadata/store.js';

export interface StoreFixture {
  /** A new store instance (its own connections) on this fixture's database. */
  open(): Promise<MetadataStore>;
  /** Removes the database; the stores opened are closed by the suite first. */
  cleanup(): Promise<void>;
  /** Every repository link with its count of referencing manifests, `repository digest refs`, sorted (read from the tables). */
  linkRefs(): Promise<string[]>;
}

export type FixtureFactory = () => Promise<StoreFixture>;

const T = 1_000_000; // a fixed "now", ms

export function digestOf(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

let keySeq = 0;
function key(digest: string): string {
  return `sha256/${digest.slice(7, 9)}/${digest.slice(7)}.u${++keySeq}-${process.pid}`;
}

function manifest(name: string, blobs: string[], extra: Partial<NewManifest> = {}): NewManifest {
  const body = Buffer.from(JSON.stringify({ name, blobs, children: extra.children ?? [], subject: extra.subject ?? null }));
  return {
    digest: digestOf(body.toString()),
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: body.length,
    body,
    blobs,
    children: [],
    ...extra,
  };
}

function isError(code: string) {
  return (e: unknown) => {
    assert.ok(e instanceof RegistryError, `expected RegistryError ${code}, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  };
}

/** The digests of a page of blob candidates. */
function digests(page: BlobCandidate[]): string[] {
  return page.map((c) => c.digest);
}

/** The manifests of a page of manifest candidates, without their place in the order. */
function refs(page: ManifestCandidate[]): ManifestRef[] {
  return page.map(({ repository, digest }) => ({ repository, digest }));
}

/** Stores a blob into a repository the way an upload does. */
async function pushBlob(s: MetadataStore, repo: string, name: string, now = T) {
  const digest = digestOf(name);
  const storageKey = key(digest);
  const result = await s.commitBlob(undefined, repo, { digest, size: name.length, storageKey }, now);
  return { digest, storageKey, result };
}

/**
 * After migration 10 of a version-9 history of 1,200 runs (run i: 'fsck' when
 * i % 4 = 0, else 'gc'; started 1000 + i, took i ms, deleted 1 manifest and
 * 2 blobs, reclaimed 3e9·i bytes, purged 4 uploads, 5 problems per fsck):
 * exact totals per kind, and the next run adds to them and prunes the
 * history to the newest 1,000. Shared by both stores' migration tests.
 */
export async function expectMigratedRunHistory(store: MetadataStore): Promise<void> {
  // fsck: i = 4, 8, …, 1200 (300 runs, sum of i 180,600); gc: the other 900 (sum 540,000).
  assert.deepEqual(await store.runTotals(), [
    { kind: 'fsck', runs: 300, manifestsDeleted: 300, blobsDeleted: 600, bytesReclaimed: 3e9 * 180_600, uploadsPurged: 1200, problems: 1500, durationMs: 180_600, lastRunAt: 2200 },
    { kind: 'gc', runs: 900, manifestsDeleted: 900, blobsDeleted: 1800, bytesReclaimed: 3e9 * 540_000, uploadsPurged: 3600, problems: 0, durationMs: 540_000, lastRunAt: 2199 },
  ]);
  // The next run adds to them, and prunes the history to the newest 1,000.
  await store.recordRun({ kind: 'gc', trigger: 'cli', startedAt: 5000, durationMs: 1, manifestsDeleted: 1, blobsDeleted: 1, bytesReclaimed: 1, uploadsPurged: 1, problems: 0 });
  const gc = (await store.runTotals()).find((t) => t.kind === 'gc')!;
  assert.deepEqual([gc.runs, gc.lastRunAt, gc.bytesReclaimed], [901, 5000, 3e9 * 540_000 + 1]);
  assert.equal((await store.listRuns(5000)).length, 1000);
}

/**
 * A version-10 registry (before links counted their references), as SQL both
 * stores run: a/app's m1 names shared and own, m2 shared; b/app's m3 names
 * shared; a/app also links loose, b/app own, which none of its manifests names.
 */
export const LINK_REFS_V10_ROWS: string[] = [
  `INSERT INTO repositories (name, created_at) VALUES ('a/app', 0), ('b/app', 0)`,
  `INSERT INTO blobs (digest, size, storage_key, last_seen) VALUES ('sha256:shared', 1, 'k/shared', 0), ('sha256:own', 1, 'k/own', 0), ('sha256:loose', 1, 'k/loose', 0)`,
  ...[['a/app', 'shared'], ['a/app', 'own'], ['a/app', 'loose'], ['b/app', 'shared'], ['b/app', 'own']].map(([r, d]) =>
    `INSERT INTO repository_blobs (repository_id, digest, last_seen) VALUES ((SELECT id FROM repositories WHERE name = '${r}'), 'sha256:${d}', 0)`),
  ...[['a/app', 'm1'], ['a/app', 'm2'], ['b/app', 'm3']].map(([r, m]) =>
    `INSERT INTO manifests (repository_id, digest, media_type, size, body, created_at) VALUES ((SELECT id FROM repositories WHERE name = '${r}'), 'sha256:${m}', 'x', 1, 'x', 0)`),
  ...[['m1', 'shared'], ['m1', 'own'], ['m2', 'shared'], ['m3', 'shared']].map(([m, d]) =>
    `INSERT INTO manifest_blobs (manifest_id, digest) VALUES ((SELECT id FROM manifests WHERE digest = 'sha256:${m}'), 'sha256:${d}')`),
];

/** After migration 11 of LINK_REFS_V10_ROWS: exact counts, and a claim removes the unnamed links only. */
export async function expectMigratedLinkRefs(store: MetadataStore, linkRefs: () => Promise<string[]>): Promise<void> {
  assert.deepEqual(await linkRefs(), [
    'a/app sha256:loose 0', 'a/app sha256:own 1', 'a/app sha256:shared 2', 'b/app sha256:own 0', 'b/app sha256:shared 1',
  ]);
  assert.deepEqual(await store.claimBlobIfGarbage('sha256:own', T), { linksRemoved: 1 });
  assert.deepEqual(await store.claimBlobIfGarbage('sha256:shared', T), { linksRemoved: 0 });
  assert.equal((await store.claimBlobIfGarbage('sha256:loose', T)).linksRemoved, 1);
  // Counted from here on by the triggers.
  await store.deleteManifest('a/app', 'sha256:m1', T);
  assert.deepEqual(await linkRefs(), ['a/app sha256:own 0', 'a/app sha256:shared 1', 'b/app sha256:shared 1']);
}

/**
 * A version-11 registry with blobs under both kinds of storage key: one that
 * names its own digest (the filesystem's blobKey), one that names an upload
 * (S3's), and one shaped for another digest than its row's (made by no code
 * path, but a key all the same). As SQL both stores run.
 */
export const STORAGE_KEYS_V11_ROWS: string[] = [
  `INSERT INTO blobs (digest, size, storage_key, last_seen) VALUES
    ('sha256:aa11', 1, 'sha256/aa/aa11.u1', 0), ('sha256:bb22', 1, 'upload-bb', 0), ('sha256:cc33', 1, 'sha256/aa/aa11.u2', 0)`,
];

/**
 * After migration 12 of STORAGE_KEYS_V11_ROWS: fsck still knows every key
 * (invariants 7 and 9: a named object is never taken for an orphan) and no
 * other, and the key index holds only the keys that do not name their digest.
 */
export async function expectMigratedStorageKeys(store: MetadataStore, indexedKeys: () => Promise<string[]>): Promise<void> {
  for (const k of ['sha256/aa/aa11.u1', 'upload-bb', 'sha256/aa/aa11.u2']) assert.equal(await store.storageKeyKnown(k), true, k);
  for (const k of ['sha256/aa/aa11.u3', 'sha256/cc/cc33.u2', 'upload-zz', 'sha256/bb/bb22.upload-bb']) assert.equal(await store.storageKeyKnown(k), false, k);
  assert.deepEqual(await indexedKeys(), ['sha256/aa/aa11.u2', 'upload-bb']);
  // A blob committed from here on under its own key adds nothing to the index, and is known.
  const d = digestOf('after');
  const k = key(d);
  await store.commitBlob(undefined, 'a/app', { digest: d, size: 5, storageKey: k }, T);
  assert.equal(await store.storageKeyKnown(k), true);
  assert.deepEqual(await indexedKeys(), ['sha256/aa/aa11.u2', 'upload-bb']);
}

export function metadataStoreSuite(label: string, factory: FixtureFactory, options: { concurrency?: boolean } = {}): void {
  /** Runs a test against a fresh database; `more()` opens a second store (another node). */
  function test(name: string, fn: (s: MetadataStore, more: () => Promise<MetadataStore>, fixture: StoreFixture) => Promise<void>) {
    it(name, async () => {
      const fixture = await factory();
      const opened: MetadataStore[] = [];
      const more = async () => {
        const s = await fixture.open();
        opened.push(s);
        return s;
      };
      try {
        await fn(await more(), more, fixture);
      } finally {
        for (const s of opened) await s.close();
        await fixture.cleanup();
      }
    });
  }

  describe(`MetadataStore contract: ${label}`, () => {
    describe('blobs', () => {
      test('a committed blob is found through its repository only, and anywhere by findAnyBlob', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer-1');
        assert.deepEqual(b.result, { outcome: 'stored' });
        assert.deepEqual(await s.findBlob('a/app', b.digest), { digest: b.digest, size: 7, storageKey: b.storageKey, lastSeen: T });
        assert.equal(await s.findBlob('b/other', b.digest), undefined);
        assert.equal((await s.findAnyBlob(b.digest))?.storageKey, b.storageKey);
        assert.equal(await s.findAnyBlob(digestOf('nothing')), undefined);
        assert.equal(await s.repositoryExists('a/app'), true);
        assert.equal(await s.repositoryExists('b/other'), false);
      });

      test('committing a live digest again is already-present: linked, renewed, stored once', async (s) => {
        const first = await pushBlob(s, 'a/app', 'layer');
        const again = await s.commitBlob(undefined, 'b/app', { digest: first.digest, size: 5, storageKey: key(first.digest) }, T + 50);
        assert.deepEqual(again, { outcome: 'already-present' });
        const found = await s.findBlob('b/app', first.digest);
        assert.equal(found?.storageKey, first.storageKey);
        assert.equal(found?.lastSeen, T + 50);
      });

      test('commitBlob ends the upload session; an unknown session is BLOB_UPLOAD_UNKNOWN and stores nothing', async (s) => {
        await s.createUpload('u1', 'a/app', T);
        const digest = digestOf('x');
        await s.commitBlob('u1', 'a/app', { digest, size: 1, storageKey: key(digest) }, T);
        assert.equal(await s.uploadExists('u1'), false);
        const other = digestOf('y');
        await assert.rejects(s.commitBlob('u1', 'a/app', { digest: other, size: 1, storageKey: key(other) }, T), isError('BLOB_UPLOAD_UNKNOWN'));
        assert.equal(await s.findAnyBlob(other), undefined);
      });

      test('statBlob: "exists" renews the blob and its link into the repository, so GC keeps both (invariant 5)', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        assert.equal(await s.statBlob('b/other', b.digest, T + 5000, 1000), undefined, 'not linked there');
        assert.equal(await s.statBlob('a/app', digestOf('nothing'), T + 5000, 1000), undefined);
        assert.equal((await s.statBlob('a/app', b.digest, T + 5000, 1000))?.lastSeen, T + 5000);
        // A collection whose cutoff lies between the upload and the answer:
        // the link the answer was about must survive it, not only the blob row.
        const claim = await s.claimBlobIfGarbage(b.digest, T + 100);
        assert.equal(claim.blob, undefined);
        assert.equal(claim.linksRemoved, 0);
        assert.ok(await s.findBlob('a/app', b.digest), 'the manifest PUT that follows still finds the blob linked');
        const m = manifest('m', [b.digest]);
        await s.putManifest('a/app', m, undefined, T + 5001);
      });

      test('statBlob answers from a read while blob and link were renewed within touchInterval, then renews', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        assert.equal((await s.statBlob('a/app', b.digest, T + 999, 1000))?.lastSeen, T, 'fresh: no write');
        assert.equal((await s.statBlob('a/app', b.digest, T + 1000, 1000))?.lastSeen, T + 1000, 'due: renewed');
        // A link older than the blob row (another repository renewed the blob) is renewed too.
        await s.commitBlob(undefined, 'b/app', { digest: b.digest, size: 5, storageKey: key(b.digest) }, T + 3000);
        assert.equal((await s.statBlob('a/app', b.digest, T + 3500, 1000))?.lastSeen, T + 3500, 'its link was due');
        assert.equal((await s.claimBlobIfGarbage(b.digest, T + 2900)).linksRemoved, 0);
        assert.ok(await s.findBlob('a/app', b.digest));
      });

      test('a GC claim committed between statBlob\'s read and its renewal makes it answer unknown, never 200 (invariant 5)', async (s, more) => {
        const gc = await more();
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const pause = armPause('stat-after-read');
        const answer = s.statBlob('a/app', b.digest, T + 5000, 1000);
        await pause.reached;
        const claim = await gc.claimBlobIfGarbage(b.digest, T + 10);
        assert.equal(claim.blob?.digest, b.digest, 'GC claimed it while the answer was held');
        pause.resume();
        assert.equal(await answer, undefined);
        assert.equal(await s.findBlob('a/app', b.digest), undefined);
      });

      test('mountBlob links a blob live in `from` (or anywhere), renewing it; refuses otherwise', async (s) => {
        const b = await pushBlob(s, 'a/src', 'layer');
        assert.equal(await s.mountBlob('a/dst', b.digest, 'a/nowhere', T + 1), undefined);
        assert.equal(await s.findBlob('a/dst', b.digest), undefined);
        const mounted = await s.mountBlob('a/dst', b.digest, 'a/src', T + 2);
        assert.deepEqual(mounted, { digest: b.digest, size: 5, storageKey: b.storageKey, lastSeen: T + 2 });
        assert.equal((await s.findBlob('a/dst', b.digest))?.lastSeen, T + 2);
        assert.ok(await s.mountBlob('a/third', b.digest, undefined, T + 3));
        assert.equal(await s.mountBlob('a/third', digestOf('missing'), undefined, T + 3), undefined);
      });

      test('blobRepositories lists (up to a limit) the repositories a live blob is linked to', async (s) => {
        const b = await pushBlob(s, 'a/src', 'layer');
        await s.mountBlob('a/dst', b.digest, 'a/src', T + 1);
        await s.mountBlob('b/dst', b.digest, 'a/src', T + 1);
        assert.deepEqual((await s.blobRepositories(b.digest, 10)).sort(), ['a/dst', 'a/src', 'b/dst']);
        assert.equal((await s.blobRepositories(b.digest, 2)).length, 2);
        assert.deepEqual(await s.blobRepositories(digestOf('missing'), 10), []);
        await s.unlinkBlob('a/dst', b.digest);
        assert.deepEqual((await s.blobRepositories(b.digest, 10)).sort(), ['a/src', 'b/dst']);
      });

      test('a link GC removed between statBlob\'s read and its renewal makes it answer unknown in that repository (invariant 5)', async (s, more) => {
        const gc = await more();
        const b = await pushBlob(s, 'a/app', 'layer', T);
        // Another repository keeps the blob itself alive; only a/app's link is stale.
        await s.commitBlob(undefined, 'b/app', { digest: b.digest, size: 5, storageKey: key(b.digest) }, T + 5000);
        const pause = armPause('stat-after-read');
        const answer = s.statBlob('a/app', b.digest, T + 5000, 1000);
        await pause.reached;
        const claim = await gc.claimBlobIfGarbage(b.digest, T + 10);
        assert.equal(claim.linksRemoved, 1, 'GC removed a/app\'s link while the answer was held');
        assert.equal(claim.blob, undefined);
        pause.resume();
        assert.equal(await answer, undefined, 'a/app no longer holds it: "exists" would be a lie');
        assert.ok(await s.findBlob('b/app', b.digest));
      });

      test('mountBlob renews the blob and its link into the target atomically (invariant 5)', async (s) => {
        const b = await pushBlob(s, 'a/src', 'layer', T);
        await s.commitBlob(undefined, 'a/dst', { digest: b.digest, size: 5, storageKey: key(b.digest) }, T);
        assert.equal((await s.mountBlob('a/dst', b.digest, 'a/src', T + 5000))?.lastSeen, T + 5000);
        assert.equal((await s.mountBlob('a/third', b.digest, undefined, T + 5000))?.lastSeen, T + 5000);
        const claim = await s.claimBlobIfGarbage(b.digest, T + 100);
        assert.equal(claim.blob, undefined);
        assert.equal(claim.linksRemoved, 1, 'only the stale source link goes');
        assert.ok(await s.findBlob('a/dst', b.digest));
        assert.ok(await s.findBlob('a/third', b.digest));
      });

      test('unlinkBlob refuses a blob a manifest of the repository references, and changes nothing (references stay whole)', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        await s.commitBlob(undefined, 'b/app', { digest: b.digest, size: 5, storageKey: key(b.digest) }, T);
        await s.putManifest('a/app', manifest('m', [b.digest]), undefined, T);
        await assert.rejects(s.unlinkBlob('a/app', b.digest), (e) => {
          isError('DENIED')(e);
          assert.equal((e as RegistryError).status, 409);
          return true;
        });
        assert.ok(await s.findBlob('a/app', b.digest), 'still linked');
        assert.equal(await s.unlinkBlob('b/app', b.digest), true, 'no manifest of b/app references it');
      });

      test('unlinkBlob removes the link once and makes the blob a GC candidate', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer');
        assert.equal(await s.unlinkBlob('a/app', b.digest), true);
        assert.equal(await s.unlinkBlob('a/app', b.digest), false);
        assert.equal(await s.unlinkBlob('a/none', b.digest), false);
        assert.equal(await s.findBlob('a/app', b.digest), undefined);
        assert.ok((digests(await s.listBlobCandidates(T, 10))).includes(b.digest));
      });
    });

    describe('uploads', () => {
      test('uploads: create, find, compare-and-set offsets with hash state, delete', async (s) => {
        await s.createUpload('u1', 'a/app', T);
        assert.deepEqual(await s.findUpload('u1'), { id: 'u1', repository: 'a/app', offset: 0, createdAt: T, updatedAt: T });
        assert.equal(await s.advanceUpload('u1', 0, 100, T + 1, Buffer.from([1, 2, 3])), true);
        assert.equal(await s.advanceUpload('u1', 0, 200, T + 2), false, 'a stale offset must not move it');
        const u = await s.findUpload('u1');
        assert.equal(u?.offset, 100);
        assert.equal(u?.updatedAt, T + 1);
        assert.deepEqual(u?.hashState, Buffer.from([1, 2, 3]));
        assert.equal(await s.advanceUpload('u1', 100, 150, T + 3), true);
        assert.equal((await s.findUpload('u1'))?.hashState, undefined, 'no hash state given: none kept');
        assert.equal(await s.uploadExists('u1'), true);
        assert.equal(await s.deleteUpload('u1'), true);
        assert.equal(await s.deleteUpload('u1'), false);
        assert.equal(await s.findUpload('u1'), undefined);
        assert.equal(await s.advanceUpload('u1', 150, 200, T), false);
      });

      test('identifiers from the network with a NUL byte are misses, not errors', async (s) => {
        await s.createUpload('u1', 'a/app', T);
        assert.equal(await s.findUpload('u1\0'), undefined);
        assert.equal(await s.uploadExists('u1\0x'), false);
        assert.equal(await s.advanceUpload('u1\0', 0, 1, T), false);
        assert.equal(await s.deleteUpload('u1\0'), false);
        const digest = digestOf('n');
        await assert.rejects(s.commitBlob('u1\0', 'a/app', { digest, size: 1, storageKey: key(digest) }, T), isError('BLOB_UPLOAD_UNKNOWN'));
        const b = await pushBlob(s, 'a/app', 'layer');
        const m = manifest('m', [b.digest]);
        for (const t of ['a', 'a-1', 'b']) await s.putManifest('a/app', m, t, T);
        assert.deepEqual(await s.listTags('a/app', 'a\0z', 10), { items: ['a-1', 'b'], more: false });
        assert.deepEqual(await s.listRepositories('a\0', 10), { items: ['a/app'], more: false });
      });

      test('claimUpload: one winner, at the offset it saw; a claimed upload takes no more bytes and names its key (invariant 9)', async (s, more) => {
        const other = await more();
        await s.createUpload('u1', 'a/app', T);
        assert.equal(await s.advanceUpload('u1', 0, 10, T + 1), true);
        const digest = digestOf('claimed');
        const k = key(digest);
        assert.equal(await s.claimUpload('u1', 0, k, T + 2), false, 'the offset moved since: no claim');
        assert.equal(await s.storageKeyKnown(k), false);
        const [a, b] = await Promise.all([s.claimUpload('u1', 10, k, T + 2), other.claimUpload('u1', 10, k, T + 2)]);
        assert.deepEqual([a, b].sort(), [false, true], 'exactly one of two nodes claims it');
        assert.equal(await s.claimUpload('u1', 10, k, T + 3), false, 'claimed once');
        assert.equal(await s.advanceUpload('u1', 10, 20, T + 3), false, 'a claimed upload takes no more bytes');
        const u = await s.findUpload('u1');
        assert.equal(u?.committingKey, k);
        assert.equal(u?.updatedAt, T + 2, 'the claim renews the upload');
        assert.equal(await s.storageKeyKnown(k), true, 'fsck knows the key a commit is about to write');
        // Only the claimant's key ends it as a blob.
        const wrong = key(digest);
        await assert.rejects(s.commitBlob('u1', 'a/app', { digest, size: 10, storageKey: wrong }, T + 4), isError('BLOB_UPLOAD_UNKNOWN'));
        assert.equal(await s.findAnyBlob(digest), undefined);
        assert.deepEqual(await s.commitBlob('u1', 'a/app', { digest, size: 10, storageKey: k }, T + 4), { outcome: 'stored' });
        assert.equal(await s.uploadExists('u1'), false);
        assert.equal(await s.storageKeyKnown(k), true, 'named by the blob now');
        assert.equal(await s.claimUpload('u1', 10, k, T + 5), false, 'gone');
      });

      test('a claimed upload ended by its error path (or expiry) can never be committed: deleteUpload is the word that nothing names the key', async (s, more) => {
        const other = await more();
        const digest = digestOf('abandoned');
        const k = key(digest);
        await s.createClaimedUpload('m1', 'a/app', k, T);
        assert.equal((await s.findUpload('m1'))?.committingKey, k);
        assert.equal(await s.storageKeyKnown(k), true);
        assert.equal(await other.deleteUpload('m1'), true);
        await assert.rejects(s.commitBlob('m1', 'a/app', { digest, size: 1, storageKey: k }, T), isError('BLOB_UPLOAD_UNKNOWN'));
        assert.equal(await s.storageKeyKnown(k), false);
        // The other order: the commit first, then the error path finds nothing to end.
        await s.createClaimedUpload('m2', 'a/app', k, T);
        await s.commitBlob('m2', 'a/app', { digest, size: 1, storageKey: k }, T);
        assert.equal(await other.deleteUpload('m2'), false, 'consumed by the commit: its key is named, not to be deleted');
      });

      test('a claimed upload whose committer died expires like an abandoned one', async (s) => {
        await s.createUpload('u1', 'a/app', T - 500);
        assert.equal(await s.claimUpload('u1', 0, key(digestOf('dead')), T - 400), true);
        await s.createClaimedUpload('m1', 'a/app', key(digestOf('dead-monolithic')), T - 300);
        await s.createClaimedUpload('m2', 'a/app', key(digestOf('alive')), T);
        assert.deepEqual(await s.expireUploads(T - 100, 10), ['u1', 'm1']);
        assert.equal(await s.uploadExists('m2'), true);
      });

      test("fsck's orphan candidates keep the first time an object was found unknown, until dropped or not seen again", async (s) => {
        assert.equal(await s.recordOrphanCandidate('blob:k1', T), T);
        assert.equal(await s.recordOrphanCandidate('blob:k2', T), T);
        assert.equal(await s.recordOrphanCandidate('blob:k1', T + 100), T, 'seen again: first time kept');
        await s.pruneOrphanCandidates(T + 100); // k2 was not seen by the run that started at T + 100
        assert.equal(await s.recordOrphanCandidate('blob:k2', T + 200), T + 200, 'k2 starts over');
        assert.equal(await s.recordOrphanCandidate('blob:k1', T + 200), T);
        await s.dropOrphanCandidate('blob:k1');
        assert.equal(await s.recordOrphanCandidate('blob:k1', T + 300), T + 300);
      });

      test('expireUploads deletes idle sessions only, oldest first, at most `limit`', async (s) => {
        await s.createUpload('old1', 'a/app', T - 300);
        await s.createUpload('old2', 'a/app', T - 200);
        await s.createUpload('old3', 'a/app', T - 100);
        await s.createUpload('fresh', 'a/app', T);
        assert.deepEqual(await s.expireUploads(T - 50, 2), ['old1', 'old2']);
        assert.deepEqual(await s.expireUploads(T - 50, 10), ['old3']);
        assert.equal(await s.uploadExists('fresh'), true);
      });
    });

    describe('manifests and tags', () => {
      test('putManifest refuses blobs not live in the repository (MANIFEST_BLOB_UNKNOWN), naming them', async (s) => {
        const here = await pushBlob(s, 'a/app', 'here');
        const elsewhere = await pushBlob(s, 'b/app', 'elsewhere');
        const m = manifest('m', [here.digest, elsewhere.digest]);
        await assert.rejects(s.putManifest('a/app', m, 'v1', T), (e) => {
          isError('MANIFEST_BLOB_UNKNOWN')(e);
          assert.deepEqual((e as RegistryError).detail, { digests: [elsewhere.digest] });
          return true;
        });
        assert.equal(await s.findManifestByDigest('a/app', m.digest), undefined);
        assert.equal(await s.findManifestByTag('a/app', 'v1'), undefined);
      });

      test('a stored manifest is found by digest and by tag, bytes intact', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer');
        const m = manifest('m', [b.digest, b.digest]);
        await s.putManifest('a/app', m, 'latest', T);
        const expected = { digest: m.digest, mediaType: m.mediaType, size: m.size, body: m.body };
        assert.deepEqual(await s.findManifestByDigest('a/app', m.digest), expected);
        assert.deepEqual(await s.findManifestByTag('a/app', 'latest'), expected);
        assert.equal(await s.findManifestByTag('a/app', 'other'), undefined);
        assert.equal(await s.findManifestByDigest('b/app', m.digest), undefined);
        await s.putManifest('a/app', m, undefined, T + 1); // idempotent
        assert.deepEqual(refs(await s.listManifestCandidates(T + 10, 10)), []);
      });

      test('a manifest another process deletes is unknown at once to a store that has served it (invariant 1)', async (s, more) => {
        const b = await pushBlob(s, 'a/app', 'layer');
        const m = manifest('m', [b.digest]);
        await s.putManifest('a/app', m, 'v1', T);
        const expected = { digest: m.digest, mediaType: m.mediaType, size: m.size, body: m.body };
        // Served by tag, by digest and by stat: whatever a store keeps of it in memory is now warm.
        assert.deepEqual(await s.findManifestByTag('a/app', 'v1'), expected);
        assert.deepEqual(await s.findManifestByDigest('a/app', m.digest), expected);
        assert.deepEqual(await s.statManifest('a/app', m.digest, T + 1, 1000), expected);
        const other = await more();
        assert.equal(await other.deleteManifest('a/app', m.digest, T + 2), true);
        assert.equal(await s.findManifestByTag('a/app', 'v1'), undefined);
        assert.equal(await s.findManifestByDigest('a/app', m.digest), undefined);
        assert.equal(await s.statManifest('a/app', m.digest, T + 3, 1000), undefined);
        // The same bytes pushed elsewhere are served there, intact, and only there.
        await pushBlob(other, 'b/app', 'layer');
        await other.putManifest('b/app', m, 'v2', T + 4);
        assert.deepEqual(await s.findManifestByTag('b/app', 'v2'), expected);
        assert.equal(await s.findManifestByTag('a/app', 'v2'), undefined);
      });

      test('an index needs its children in the repository (MANIFEST_BLOB_UNKNOWN) and holds them', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer');
        const child = manifest('child', [b.digest]);
        const index = manifest('index', [], { children: [child.digest], mediaType: 'application/vnd.oci.image.index.v1+json' });
        await assert.rejects(s.putManifest('a/app', index, 'v1', T), isError('MANIFEST_BLOB_UNKNOWN'));
        await s.putManifest('a/app', child, undefined, T);
        assert.deepEqual(refs(await s.listManifestCandidates(T, 10)), [{ repository: 'a/app', digest: child.digest }]);
        await s.putManifest('a/app', index, 'v1', T + 1);
        assert.deepEqual(refs(await s.listManifestCandidates(T + 10, 10)), [], 'the index holds its child');
        assert.equal(await s.deleteTag('a/app', 'v1', T + 2), true);
        assert.deepEqual(refs(await s.listManifestCandidates(T + 10, 10)), [{ repository: 'a/app', digest: index.digest }]);
        assert.ok(await s.deleteManifestIfGarbage({ repository: 'a/app', digest: index.digest }, T + 10, T + 3));
        assert.deepEqual(refs(await s.listManifestCandidates(T + 10, 10)), [{ repository: 'a/app', digest: child.digest }], 'released by its parent');
      });

      test('deleteManifest refuses a child an index of the repository references, and changes nothing (references stay whole)', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer');
        const child = manifest('child', [b.digest]);
        const index = manifest('index', [], { children: [child.digest] });
        await s.putManifest('a/app', child, 'c', T);
        await s.putManifest('a/app', index, 'v1', T);
        await assert.rejects(s.deleteManifest('a/app', child.digest, T + 1), (e) => {
          isError('DENIED')(e);
          assert.equal((e as RegistryError).status, 409);
          return true;
        });
        assert.ok(await s.findManifestByDigest('a/app', child.digest));
        assert.ok(await s.findManifestByTag('a/app', 'c'), 'its tag too');
        assert.equal(await s.deleteTag('a/app', 'c', T + 1), true, 'untagging is unaffected');
        assert.equal(await s.deleteManifest('a/app', index.digest, T + 2), true);
        assert.equal(await s.deleteManifest('a/app', child.digest, T + 3), true, 'free once the index is gone');
      });

      test('a child pushed again under an existing index is held by it, not a GC candidate', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer');
        const child = manifest('child', [b.digest]);
        const index = manifest('index', [], { children: [child.digest] });
        await s.putManifest('a/app', child, undefined, T);
        await s.putManifest('a/app', index, 'v1', T);
        await s.putManifest('a/app', child, undefined, T + 2);
        assert.deepEqual(refs(await s.listManifestCandidates(T + 10, 10)), []);
        assert.equal(await s.deleteManifestIfGarbage({ repository: 'a/app', digest: child.digest }, T + 10, T + 3), undefined);
      });

      test('pushing an untagged manifest again renews its grace period, like a new one (invariant 5)', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const m = manifest('m', [b.digest]);
        await s.putManifest('a/app', m, undefined, T);
        await s.putManifest('a/app', m, undefined, T + 5000);
        assert.deepEqual(refs(await s.listManifestCandidates(T + 100, 10)), []);
        assert.equal(await s.deleteManifestIfGarbage({ repository: 'a/app', digest: m.digest }, T + 100, T + 5001), undefined);
        assert.ok(await s.findManifestByDigest('a/app', m.digest));
        assert.ok(await s.deleteManifestIfGarbage({ repository: 'a/app', digest: m.digest }, T + 5000, T + 5001), 'collected after its new grace');
      });

      test('statManifest renews an untagged manifest at most once per touchInterval; an index can then reference it (invariant 5)', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const child = manifest('child', [b.digest]);
        await s.putManifest('a/app', child, undefined, T);
        const expected = { digest: child.digest, mediaType: child.mediaType, size: child.size, body: child.body };
        assert.deepEqual(await s.statManifest('a/app', child.digest, T + 999, 1000), expected);
        assert.deepEqual(refs(await s.listManifestCandidates(T, 10)), [{ repository: 'a/app', digest: child.digest }], 'fresh: not renewed');
        assert.deepEqual(await s.statManifest('a/app', child.digest, T + 5000, 1000), expected);
        assert.equal(await s.deleteManifestIfGarbage({ repository: 'a/app', digest: child.digest }, T + 100, T + 5001), undefined);
        const index = manifest('index', [], { children: [child.digest] });
        await s.putManifest('a/app', index, 'v1', T + 5002);
        assert.equal(await s.statManifest('a/app', digestOf('none'), T, 1000), undefined);
        assert.equal(await s.statManifest('b/app', child.digest, T, 1000), undefined);
      });

      test('a GC deletion committed between statManifest\'s read and its renewal makes it answer unknown (invariant 5)', async (s, more) => {
        const gc = await more();
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const m = manifest('m', [b.digest]);
        await s.putManifest('a/app', m, undefined, T);
        const pause = armPause('stat-after-read');
        const answer = s.statManifest('a/app', m.digest, T + 5000, 1000);
        await pause.reached;
        assert.ok(await gc.deleteManifestIfGarbage({ repository: 'a/app', digest: m.digest }, T + 10, T + 11));
        pause.resume();
        assert.equal(await answer, undefined);
      });

      test('moving a tag releases the manifest it pointed at; deleteTag and deleteManifest', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer');
        const m1 = manifest('m1', [b.digest]);
        const m2 = manifest('m2', [b.digest]);
        await s.putManifest('a/app', m1, 'v', T);
        await s.putManifest('a/app', m1, 'w', T);
        await s.putManifest('a/app', m2, 'v', T + 1);
        assert.deepEqual(refs(await s.listManifestCandidates(T + 10, 10)), [], 'm1 still has tag w');
        assert.equal(await s.deleteTag('a/app', 'w', T + 2), true);
        assert.equal(await s.deleteTag('a/app', 'w', T + 2), false);
        assert.deepEqual(refs(await s.listManifestCandidates(T + 10, 10)), [{ repository: 'a/app', digest: m1.digest }]);
        assert.equal(await s.deleteManifest('a/app', m2.digest, T + 3), true);
        assert.equal(await s.deleteManifest('a/app', m2.digest, T + 3), false);
        assert.equal(await s.findManifestByTag('a/app', 'v'), undefined, 'its tags went with it');
        assert.deepEqual((await s.listTags('a/app', undefined, 10)).items, []);
      });

      test('tagsVersion changes with every tag change, not otherwise, and differs for a re-created repository', async (s) => {
        assert.equal(await s.tagsVersion('a/app'), undefined);
        const b = await pushBlob(s, 'a/app', 'layer');
        const m1 = manifest('m1', [b.digest]);
        const m2 = manifest('m2', [b.digest]);
        const seen = new Set<string>();
        const version = async () => (await s.tagsVersion('a/app'))!;
        const changed = async (what: string) => {
          const v = await version();
          assert.ok(v !== undefined && !seen.has(v), `tagsVersion must change: ${what}`);
          seen.add(v);
        };
        await changed('start');
        await s.putManifest('a/app', m1, undefined, T);
        assert.ok(seen.has(await version()), 'an untagged push changes no tag');
        await s.putManifest('a/app', m1, 'v1', T);
        await changed('tag created');
        await s.putManifest('a/app', m2, 'v1', T);
        await changed('tag moved');
        await s.putManifest('a/app', m2, 'v1', T + 1);
        await changed('tag pushed again');
        await s.putManifest('a/app', m2, 'v2', T);
        await changed('second tag');
        await s.deleteTag('a/app', 'v1', T);
        await changed('tag deleted');
        await s.deleteManifest('a/app', m2.digest, T);
        await changed('tag deleted with its manifest');
        await s.deleteManifest('a/app', m1.digest, T);
        await s.unlinkBlob('a/app', b.digest);
        assert.equal(await s.deleteEmptyRepositories(), 1);
        assert.equal(await s.tagsVersion('a/app'), undefined);
        await pushBlob(s, 'a/app', 'layer');
        await changed('repository created again');
      });

      test('listTags and listRepositories: byte order, strictly after `last`, `more`', async (s) => {
        const b = await pushBlob(s, 'r', 'layer');
        const m = manifest('m', [b.digest]);
        for (const t of ['b', 'B', 'a-1', 'a', 'Z', '_x', '1.0']) await s.putManifest('r', m, t, T);
        const all = ['1.0', 'B', 'Z', '_x', 'a', 'a-1', 'b'];
        assert.deepEqual(await s.listTags('r', undefined, 100), { items: all, more: false });
        assert.deepEqual(await s.listTags('r', undefined, 3), { items: all.slice(0, 3), more: true });
        assert.deepEqual(await s.listTags('r', 'Z', 3), { items: ['_x', 'a', 'a-1'], more: true });
        assert.deepEqual(await s.listTags('r', 'a-1', 3), { items: ['b'], more: false });
        assert.deepEqual(await s.listTags('r', 'b', 3), { items: [], more: false });
        assert.deepEqual(await s.listTags('unknown', undefined, 3), { items: [], more: false });
        for (const repo of ['lib/b', 'Lib/a', 'lib/a-b', 'lib/a']) await pushBlob(s, repo, 'layer');
        const repos = ['Lib/a', 'lib/a', 'lib/a-b', 'lib/b', 'r'];
        assert.deepEqual(await s.listRepositories(undefined, 100), { items: repos, more: false });
        assert.deepEqual(await s.listRepositories('lib/a', 2), { items: ['lib/a-b', 'lib/b'], more: true });
      });

      test('listReferrers: manifests whose subject is the digest, in push order, filtered by artifactType', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer');
        const subject = manifest('subject', [b.digest]);
        await s.putManifest('a/app', subject, 'v1', T);
        const sig = manifest('sig', [b.digest], { subject: subject.digest, artifactType: 'application/sig', annotations: { 'x.y': 'z', a: 'b' } });
        const sbom = manifest('sbom', [b.digest], { subject: subject.digest, artifactType: 'application/sbom' });
        await s.putManifest('a/app', sig, undefined, T);
        await s.putManifest('a/app', sbom, undefined, T);
        await s.putManifest('b/app', manifest('elsewhere', [], { subject: subject.digest }), undefined, T);
        assert.deepEqual(await s.listReferrers('a/app', subject.digest, undefined), [
          { mediaType: sig.mediaType, digest: sig.digest, size: sig.size, artifactType: 'application/sig', annotations: { 'x.y': 'z', a: 'b' } },
          { mediaType: sbom.mediaType, digest: sbom.digest, size: sbom.size, artifactType: 'application/sbom' },
        ]);
        assert.deepEqual((await s.listReferrers('a/app', subject.digest, 'application/sbom')).map((r) => r.digest), [sbom.digest]);
        assert.deepEqual(await s.listReferrers('a/app', digestOf('none'), undefined), []);
      });
    });

    describe('garbage collection protocol', () => {
      test('an unreferenced blob is claimed only after its grace period, then deleted by its key', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        assert.deepEqual(digests(await s.listBlobCandidates(T - 1, 10)), []);
        assert.deepEqual(digests(await s.listBlobCandidates(T, 10)), [b.digest]);
        const early = await s.claimBlobIfGarbage(b.digest, T - 1);
        assert.equal(early.blob, undefined, 'inside its grace period');
        assert.ok(await s.findBlob('a/app', b.digest));
        const claim = await s.claimBlobIfGarbage(b.digest, T);
        assert.equal(claim.linksRemoved, 1);
        assert.deepEqual(claim.blob, { digest: b.digest, size: 5, storageKey: b.storageKey, lastSeen: T });
        assert.equal(await s.findBlob('a/app', b.digest), undefined, 'a blob being deleted reads as absent');
        assert.equal(await s.findAnyBlob(b.digest), undefined);
        assert.equal(await s.mountBlob('b/app', b.digest, undefined, T), undefined);
        assert.deepEqual(await s.listBlobs('', 10), []);
        assert.equal(await s.storageKeyKnown(b.storageKey), true, 'still known while being deleted');
        assert.deepEqual((await s.listDeletingBlobs(10)).map((x) => x.digest), [b.digest]);
        assert.deepEqual(digests(await s.listBlobCandidates(T + 10, 10)), []);
        assert.equal((await s.claimBlobIfGarbage(b.digest, T + 10)).blob, undefined, 'claimed once');
        await s.finishBlobDeletion(b.digest, b.storageKey);
        assert.deepEqual(await s.listDeletingBlobs(10), []);
        assert.equal(await s.storageKeyKnown(b.storageKey), false);
      });

      test('candidate pages continue after the last candidate returned, in candidate order', async (s) => {
        const blobs = [await pushBlob(s, 'a/app', 'b1', T), await pushBlob(s, 'a/app', 'b2', T), await pushBlob(s, 'a/app', 'b3', T + 1)];
        const order = [...blobs.slice(0, 2).map((b) => b.digest).sort(), blobs[2]!.digest];
        const first = await s.listBlobCandidates(T + 1, 2);
        assert.deepEqual(digests(first), order.slice(0, 2));
        const second = await s.listBlobCandidates(T + 1, 2, first[1]);
        assert.deepEqual(second, [{ digest: order[2], since: T + 1 }]);
        assert.deepEqual(await s.listBlobCandidates(T + 1, 2, second[0]), []);
        const ms = [manifest('m1', [blobs[0]!.digest]), manifest('m2', [blobs[1]!.digest]), manifest('m3', [blobs[2]!.digest])];
        await s.putManifest('a/app', ms[0]!, undefined, T);
        await s.putManifest('a/app', ms[1]!, undefined, T);
        await s.putManifest('a/app', ms[2]!, undefined, T + 1);
        const page1 = await s.listManifestCandidates(T + 1, 2);
        assert.deepEqual(refs(page1).map((r) => r.digest), [ms[0]!.digest, ms[1]!.digest], 'same time: in the order they were stored');
        const page2 = await s.listManifestCandidates(T + 1, 2, page1[1]);
        assert.deepEqual(refs(page2).map((r) => r.digest), [ms[2]!.digest]);
        assert.equal(page2[0]!.since, T + 1);
        assert.deepEqual(await s.listManifestCandidates(T + 1, 2, page2[0]), []);
        assert.deepEqual(refs(await s.listManifestCandidates(T, 5, page1[0])), [{ repository: 'a/app', digest: ms[1]!.digest }], 'the cutoff still bounds a later page');
      });

      test('a renewal (HEAD, mount) inside the grace period re-queues the blob instead of claiming it', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        assert.ok(await s.statBlob('a/app', b.digest, T + 100, 50));
        assert.equal((await s.claimBlobIfGarbage(b.digest, T + 50)).blob, undefined);
        assert.deepEqual(digests(await s.listBlobCandidates(T + 50, 10)), [], 're-queued at its renewal');
        assert.deepEqual(digests(await s.listBlobCandidates(T + 100, 10)), [b.digest]);
        assert.ok((await s.claimBlobIfGarbage(b.digest, T + 100)).blob);
      });

      test('a referenced blob is kept; deleting its manifest makes it garbage again', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const m = manifest('m', [b.digest]);
        await s.putManifest('a/app', m, undefined, T);
        const kept = await s.claimBlobIfGarbage(b.digest, T + 10);
        assert.deepEqual(kept, { linksRemoved: 0 });
        assert.deepEqual(digests(await s.listBlobCandidates(T + 10, 10)), [], 'a referenced blob leaves the queue');
        assert.equal(await s.deleteManifestIfGarbage({ repository: 'a/app', digest: m.digest }, T - 1, T + 1), undefined, 'manifest grace');
        const deleted = await s.deleteManifestIfGarbage({ repository: 'a/app', digest: m.digest }, T, T + 1);
        assert.equal(deleted?.digest, m.digest);
        assert.deepEqual(deleted?.body, m.body);
        assert.equal(await s.findManifestByDigest('a/app', m.digest), undefined);
        assert.deepEqual(digests(await s.listBlobCandidates(T + 10, 10)), [b.digest]);
        const claim = await s.claimBlobIfGarbage(b.digest, T + 10);
        assert.equal(claim.blob?.digest, b.digest);
        assert.equal(claim.linksRemoved, 1);
      });

      test('a manifest push does not renew its links: a deleted manifest frees its blobs on their own grace (invariants 5, 6)', async (s) => {
        // The link counts the manifest (refs) while it exists; its grace comes from
        // the upload, HEAD or mount that vouched for it, not from the push.
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const m = manifest('m', [b.digest]);
        await s.putManifest('a/app', m, undefined, T + 100);
        assert.equal((await s.findBlob('a/app', b.digest))?.lastSeen, T, 'the push renewed nothing');
        assert.deepEqual(await s.claimBlobIfGarbage(b.digest, T + 50), { linksRemoved: 0 }, 'referenced: kept whatever its age');
        assert.ok(await s.deleteManifest('a/app', m.digest, T + 101));
        const claim = await s.claimBlobIfGarbage(b.digest, T + 50);
        assert.equal(claim.linksRemoved, 1, 'the link is as old as its upload');
        assert.equal(claim.blob?.digest, b.digest);
        // A HEAD (or mount) still renews the link, so a manifest pushed on its answer finds it.
        const c = await pushBlob(s, 'a/app', 'config', T);
        await s.putManifest('a/app', manifest('m2', [c.digest]), undefined, T + 100);
        assert.ok(await s.statBlob('a/app', c.digest, T + 200, 1));
        assert.ok(await s.deleteManifest('a/app', manifest('m2', [c.digest]).digest, T + 201));
        assert.deepEqual(await s.claimBlobIfGarbage(c.digest, T + 150), { linksRemoved: 0 }, 'renewed by the HEAD');
      });

      test('deleteManifestIfGarbage keeps manifests held by a tag, a parent or a live subject', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const subject = manifest('subject', [b.digest]);
        const referrer = manifest('sig', [b.digest], { subject: subject.digest });
        await s.putManifest('a/app', subject, undefined, T);
        await s.putManifest('a/app', referrer, undefined, T);
        const ref = (d: string) => ({ repository: 'a/app', digest: d });
        assert.equal(await s.deleteManifestIfGarbage(ref(referrer.digest), T, T), undefined, 'its subject is live');
        assert.deepEqual(refs(await s.listManifestCandidates(T, 10)), [ref(subject.digest)], 'the referrer is held until its subject goes');
        await s.putManifest('a/app', subject, 'v1', T);
        assert.equal(await s.deleteManifestIfGarbage(ref(subject.digest), T, T), undefined, 'tagged');
        await s.deleteTag('a/app', 'v1', T + 1);
        assert.ok(await s.deleteManifestIfGarbage(ref(subject.digest), T + 1, T + 2));
        assert.deepEqual(refs(await s.listManifestCandidates(T + 2, 10)), [ref(referrer.digest)], 'released with its subject');
        assert.ok(await s.deleteManifestIfGarbage(ref(referrer.digest), T + 2, T + 3));
        assert.equal(await s.deleteManifestIfGarbage(ref(referrer.digest), T + 2, T + 3), undefined, 'gone');
      });

      test('a claimed blob cannot be referenced: putManifest is MANIFEST_BLOB_UNKNOWN (invariant 2)', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        assert.ok((await s.claimBlobIfGarbage(b.digest, T)).blob);
        await assert.rejects(s.putManifest('a/app', manifest('m', [b.digest]), 'v1', T + 1), isError('MANIFEST_BLOB_UNKNOWN'));
      });

      test('re-uploading a blob GC is deleting replaces it: replacedKey, and GC finishes only its own object (invariant 3)', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const claim = await s.claimBlobIfGarbage(b.digest, T);
        assert.ok(claim.blob);
        const newKey = key(b.digest);
        const again = await s.commitBlob(undefined, 'b/app', { digest: b.digest, size: 5, storageKey: newKey }, T + 5);
        assert.deepEqual(again, { outcome: 'stored', replacedKey: b.storageKey });
        await s.finishBlobDeletion(claim.blob.digest, claim.blob.storageKey);
        assert.deepEqual(await s.findBlob('b/app', b.digest), { digest: b.digest, size: 5, storageKey: newKey, lastSeen: T + 5 });
        assert.deepEqual(await s.listDeletingBlobs(10), []);
        assert.equal(await s.storageKeyKnown(b.storageKey), false);
        assert.equal(await s.storageKeyKnown(newKey), true);
        await s.putManifest('b/app', manifest('m', [b.digest]), 'v1', T + 6);
      });

      test('each link counts the manifests of its repository naming the blob, through every change; GC removes exactly the links none names', async (s, _more, fixture) => {
        // The claim trusts this count instead of asking the manifests (issue 18): a count
        // too low would let GC remove a link a committed manifest needs.
        const shared = await pushBlob(s, 'a/app', 'shared', T);
        const own = await pushBlob(s, 'a/app', 'own', T);
        const loose = await pushBlob(s, 'a/app', 'loose', T);
        await s.mountBlob('b/app', shared.digest, 'a/app', T);
        const bOnly = await pushBlob(s, 'b/app', 'b-only', T);
        const name = (d: string) => ({ [shared.digest]: 'shared', [own.digest]: 'own', [loose.digest]: 'loose', [bOnly.digest]: 'b-only' })[d];
        const counts = async () => (await fixture.linkRefs()).map((line) => line.replace(/sha256:\w+/, (d) => name(d)!)).sort();
        const m1 = manifest('m1', [shared.digest, own.digest]);
        const m2 = manifest('m2', [shared.digest]);
        const twice = manifest('twice', [own.digest, own.digest]);
        const m3 = manifest('m3', [shared.digest, bOnly.digest]);
        await s.putManifest('a/app', m1, 'v1', T);
        await s.putManifest('a/app', m2, undefined, T);
        await s.putManifest('a/app', twice, undefined, T);
        await s.putManifest('b/app', m3, 'latest', T);
        // Pushed again, under a tag of its own: the same manifest, counted once.
        await s.putManifest('a/app', m1, 'v1-again', T + 1);
        assert.deepEqual(await counts(), ['a/app loose 0', 'a/app own 2', 'a/app shared 2', 'b/app b-only 1', 'b/app shared 1']);

        // Deleted through the API, then by GC.
        assert.equal(await s.deleteManifest('a/app', m2.digest, T + 2), true);
        assert.ok(await s.deleteManifestIfGarbage({ repository: 'a/app', digest: twice.digest }, T, T + 2));
        assert.deepEqual(await counts(), ['a/app loose 0', 'a/app own 1', 'a/app shared 1', 'b/app b-only 1', 'b/app shared 1']);

        // The repository's last manifest goes, then its links (GC), then the repository.
        assert.equal(await s.deleteManifest('b/app', m3.digest, T + 2), true);
        assert.deepEqual(await counts(), ['a/app loose 0', 'a/app own 1', 'a/app shared 1', 'b/app b-only 0', 'b/app shared 0']);
        const claims = [];
        for (const b of [shared, own, loose, bOnly]) claims.push(await s.claimBlobIfGarbage(b.digest, T + 10));
        assert.deepEqual(claims.map((c) => [c.linksRemoved, c.blob !== undefined]), [[1, false], [0, false], [1, true], [1, true]]);
        assert.deepEqual(await counts(), ['a/app own 1', 'a/app shared 1']);
        assert.equal(await s.deleteEmptyRepositories(), 1);
        assert.ok(await s.findBlob('a/app', shared.digest));
        assert.ok(await s.findBlob('a/app', own.digest));

        // fsck forgets a referenced blob (its bytes were lost) and its links; uploaded
        // again, the new link starts from the manifests still naming it.
        assert.equal(await s.forgetBlob(own.digest, own.storageKey), true);
        await s.commitBlob(undefined, 'a/app', { digest: own.digest, size: 3, storageKey: key(own.digest) }, T + 3);
        await s.mountBlob('c/app', own.digest, 'a/app', T + 3);
        assert.deepEqual(await counts(), ['a/app own 1', 'a/app shared 1', 'c/app own 0']);
        const again = await s.claimBlobIfGarbage(own.digest, T + 10);
        assert.deepEqual([again.linksRemoved, again.blob], [1, undefined], 'only c/app\'s link goes: m1 still names the blob in a/app');
        assert.ok(await s.findBlob('a/app', own.digest));
        assert.deepEqual(await counts(), ['a/app own 1', 'a/app shared 1']);
      });

      test('deleteEmptyRepositories removes repositories with no manifest and no blob link', async (s) => {
        const b = await pushBlob(s, 'a/empty', 'layer', T);
        await pushBlob(s, 'a/linked', 'layer', T);
        const c = await pushBlob(s, 'a/manifest', 'other', T);
        await s.putManifest('a/manifest', manifest('m', [c.digest]), undefined, T);
        await s.unlinkBlob('a/empty', b.digest);
        assert.equal(await s.deleteEmptyRepositories(), 1);
        assert.deepEqual((await s.listRepositories(undefined, 10)).items, ['a/linked', 'a/manifest']);
        assert.equal(await s.deleteEmptyRepositories(), 0);
      });

      test('listBlobs pages live blobs in digest order; forgetBlob makes a blob unknown (invariant 7)', async (s) => {
        const blobs = await Promise.all(['l1', 'l2', 'l3', 'l4'].map((n) => pushBlob(s, 'a/app', n, T)));
        const sorted = blobs.map((b) => b.digest).sort();
        const first = await s.listBlobs('', 3);
        assert.deepEqual(first.map((b) => b.digest), sorted.slice(0, 3));
        assert.deepEqual((await s.listBlobs(first[2]!.digest, 3)).map((b) => b.digest), sorted.slice(3));
        const victim = blobs[0]!;
        assert.equal(await s.forgetBlob(victim.digest, 'some/other/key'), false);
        assert.equal(await s.forgetBlob(victim.digest, victim.storageKey), true);
        assert.equal(await s.forgetBlob(victim.digest, victim.storageKey), false);
        assert.equal(await s.findBlob('a/app', victim.digest), undefined);
        assert.equal(await s.storageKeyKnown(victim.storageKey), false);
        assert.ok(!(digests(await s.listBlobCandidates(T + 10, 10))).includes(victim.digest));
        const re = await pushBlob(s, 'a/app', 'l1', T + 1);
        assert.deepEqual(re.result, { outcome: 'stored' }, 'clients upload it again');
      });

      test('recordRun and runTotals sum runs per kind', async (s) => {
        assert.deepEqual(await s.runTotals(), []);
        const run = { trigger: 'cli' as const, durationMs: 10, manifestsDeleted: 1, blobsDeleted: 2, bytesReclaimed: 3_000_000_000_000, uploadsPurged: 4, problems: 0 };
        await s.recordRun({ ...run, kind: 'gc', startedAt: T });
        await s.recordRun({ ...run, kind: 'gc', startedAt: T + 5, trigger: 'background' });
        await s.recordRun({ ...run, kind: 'fsck', startedAt: T + 1, problems: 7 });
        const totals = (await s.runTotals()).sort((a, b) => a.kind.localeCompare(b.kind));
        assert.deepEqual(totals, [
          { kind: 'fsck', runs: 1, manifestsDeleted: 1, blobsDeleted: 2, bytesReclaimed: 3e12, uploadsPurged: 4, problems: 7, durationMs: 10, lastRunAt: T + 1 },
          { kind: 'gc', runs: 2, manifestsDeleted: 2, blobsDeleted: 4, bytesReclaimed: 6e12, uploadsPurged: 8, problems: 0, durationMs: 20, lastRunAt: T + 5 },
        ]);
      });

      test('recordRun keeps the newest 1,000 runs; runTotals still counts every run (issue 18)', async (s, more) => {
        // The background GC records a run every 10 minutes per node: the
        // history is bounded, the totals (what /metrics reads) stay exact.
        const run = (i: number) => ({
          kind: i % 3 === 0 ? ('fsck' as const) : ('gc' as const),
          trigger: 'background' as const,
          startedAt: T + i,
          durationMs: 2,
          manifestsDeleted: 1,
          blobsDeleted: i,
          bytesReclaimed: 1_000_000_000 * i,
          uploadsPurged: 3,
          problems: i % 3 === 0 ? 1 : 0,
        });
        // The 5 oldest one by one, then the rest side by side (two nodes
        // at once), then the newest alone: it prunes what its rivals left.
        for (let i = 0; i < 5; i++) await s.recordRun(run(i));
        const other = await more();
        await Promise.all(Array.from({ length: 999 }, (_, k) => (k % 2 ? s : other).recordRun(run(5 + k))));
        await s.recordRun(run(1004));
        const runs = await s.listRuns(2000);
        assert.equal(runs.length, 1000);
        assert.equal(runs[0]!.startedAt, T + 1004, 'newest first');
        assert.deepEqual(runs.filter((r) => r.startedAt < T + 5), [], 'the oldest went first');
        const expected = { fsck: { runs: 0, blobs: 0, last: 0 }, gc: { runs: 0, blobs: 0, last: 0 } };
        for (let i = 0; i < 1005; i++) {
          const e = expected[run(i).kind];
          e.runs++;
          e.blobs += i;
          e.last = T + i;
        }
        const totals = await s.runTotals();
        assert.deepEqual(totals, (['fsck', 'gc'] as const).map((kind) => {
          const e = expected[kind];
          return {
            kind, runs: e.runs, manifestsDeleted: e.runs, blobsDeleted: e.blobs, bytesReclaimed: 1_000_000_000 * e.blobs,
            uploadsPurged: 3 * e.runs, problems: kind === 'fsck' ? e.runs : 0, durationMs: 2 * e.runs, lastRunAt: e.last,
          };
        }));
        assert.equal(totals[0]!.runs + totals[1]!.runs, 1005);
      });

      test('dryRun: the view sees its own changes, a failing operation alone is undone, all is discarded', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const m = manifest('m', [b.digest]);
        await s.putManifest('a/app', m, 'v1', T);
        await s.createUpload('stale', 'a/app', T - 1000);
        const refused = new RegistryError('DENIED', 'immutable tag');
        const result = await s.dryRun(async (view) => {
          const [tag] = await view.listRetentionTags('a/app');
          await assert.rejects(view.deleteTagIfUnchanged('a/app', tag!, T + 1, { refuseTagChange: () => refused }), (e) => e === refused);
          assert.equal((await view.listRetentionTags('a/app')).length, 1, 'the refused deletion is undone');
          assert.ok(await view.deleteTagIfUnchanged('a/app', tag!, T + 1));
          assert.deepEqual(await view.listRetentionTags('a/app'), []);
          // Untagged at T + 1: a candidate from then on.
          assert.deepEqual(refs(await view.listManifestCandidates(T, 10)), []);
          assert.deepEqual(refs(await view.listManifestCandidates(T + 1, 10)), [{ repository: 'a/app', digest: m.digest }]);
          assert.ok(await view.deleteManifestIfGarbage({ repository: 'a/app', digest: m.digest }, T + 1, T + 2));
          assert.equal(await view.deleteManifestIfGarbage({ repository: 'a/app', digest: m.digest }, T + 1, T + 2), undefined);
          assert.deepEqual(refs(await view.listManifestCandidates(T + 10, 10)), []);
          // Queued again by the deletion, at T + 2.
          assert.deepEqual(digests(await view.listBlobCandidates(T + 1, 10)), []);
          assert.deepEqual(digests(await view.listBlobCandidates(T + 10, 10)), [b.digest]);
          const claim = await Promise.all([view.claimBlobIfGarbage(b.digest, T + 10), view.expireUploads(T, 10)]);
          assert.equal(claim[0].blob?.digest, b.digest);
          assert.equal(claim[0].linksRemoved, 1);
          assert.deepEqual(claim[1], ['stale']);
          assert.deepEqual(digests(await view.listBlobCandidates(T + 10, 10)), []);
          assert.deepEqual(await view.expireUploads(T, 10), []);
          assert.equal(await view.deleteEmptyRepositories(), 1);
          assert.deepEqual((await view.listRepositories(undefined, 10)).items, []);
          return 'done';
        });
        assert.equal(result, 'done');
        assert.ok(await s.findManifestByTag('a/app', 'v1'));
        assert.ok(await s.findBlob('a/app', b.digest));
        assert.equal(await s.uploadExists('stale'), true);
        assert.deepEqual(await s.listDeletingBlobs(10), []);
        assert.equal(await s.repositoryExists('a/app'), true);
        // The store still works normally afterwards.
        assert.ok(await s.deleteTag('a/app', 'v1', T + 1));
        assert.ok(await s.deleteManifestIfGarbage({ repository: 'a/app', digest: m.digest }, T + 1, T + 2));
      });
    });

    describe('console queries', () => {
      test('repositorySummaries: counts, bytes with shared blobs once, unique bytes, last push', async (s) => {
        const shared = await pushBlob(s, 'a/app', 'shared-layer', T);
        await s.mountBlob('b/app', shared.digest, 'a/app', T + 1);
        const own = await pushBlob(s, 'a/app', 'own', T + 2);
        const m1 = manifest('m1', [shared.digest, own.digest]);
        const m2 = manifest('m2', [shared.digest]);
        await s.putManifest('a/app', m1, 'v1', T + 3);
        await s.putManifest('a/app', m2, 'v2', T + 4);
        await s.putManifest('b/app', manifest('m3', [shared.digest]), 'latest', T + 5);
        const summaries = await s.repositorySummaries();
        assert.deepEqual(summaries, [
          { name: 'a/app', tags: 2, manifests: 2, bytes: 'shared-layer'.length + 3, uniqueBytes: 3, lastPush: T + 4 },
          { name: 'b/app', tags: 1, manifests: 1, bytes: 'shared-layer'.length, uniqueBytes: 0, lastPush: T + 5 },
        ]);
      });

      test('repositorySummaries stay exact through tag and manifest deletes, unlinks, GC and fsck', async (s) => {
        // The figures are counted as changes happen (not recomputed per request): each path that changes them is checked.
        const shared = await pushBlob(s, 'a/app', 'shared-layer', T);
        await s.mountBlob('b/app', shared.digest, 'a/app', T + 1);
        const own = await pushBlob(s, 'a/app', 'own', T + 2);
        const only = await pushBlob(s, 'b/app', 'b-only', T + 2);
        const loose = await pushBlob(s, 'b/app', 'loose!', T + 2);
        const m1 = manifest('m1', [shared.digest, own.digest]);
        const m3 = manifest('m3', [only.digest]);
        await s.putManifest('a/app', m1, 'v1', T + 3);
        await s.putManifest('a/app', m1, 'v1-again', T + 4);
        await s.putManifest('b/app', m3, 'latest', T + 5);
        const sizes = (...names: string[]) => names.reduce((n, x) => n + x.length, 0);
        assert.deepEqual(await s.repositorySummaries(), [
          { name: 'a/app', tags: 2, manifests: 1, bytes: sizes('shared-layer', 'own'), uniqueBytes: sizes('own'), lastPush: T + 3 },
          { name: 'b/app', tags: 1, manifests: 1, bytes: sizes('shared-layer', 'b-only', 'loose!'), uniqueBytes: sizes('b-only', 'loose!'), lastPush: T + 5 },
        ]);
        // b unlinks the shared layer: it becomes a/app's alone. A tag goes.
        assert.equal(await s.unlinkBlob('b/app', shared.digest), true);
        assert.equal(await s.deleteTag('a/app', 'v1-again', T + 6), true);
        // fsck forgets a blob whose bytes are missing; GC takes a link nothing references.
        assert.equal(await s.forgetBlob(only.digest, only.storageKey), true);
        assert.equal((await s.claimBlobIfGarbage(loose.digest, T + 2)).linksRemoved, 1);
        assert.deepEqual(await s.repositorySummaries(), [
          { name: 'a/app', tags: 1, manifests: 1, bytes: sizes('shared-layer', 'own'), uniqueBytes: sizes('shared-layer', 'own'), lastPush: T + 3 },
          { name: 'b/app', tags: 1, manifests: 1, bytes: 0, uniqueBytes: 0, lastPush: T + 5 },
        ]);
        // Deleting the manifest takes its tag with it; the last push stays when it was.
        assert.equal(await s.deleteManifest('b/app', m3.digest, T + 7), true);
        const b = (await s.repositorySummaries()).find((r) => r.name === 'b/app');
        assert.deepEqual(b, { name: 'b/app', tags: 0, manifests: 0, bytes: 0, uniqueBytes: 0, lastPush: T + 5 });
      });

      test('listTagDetails pages tags in byte order with their manifests; manifestUsage names tags and parent indexes', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const child = manifest('child', [b.digest]);
        await s.putManifest('a/app', child, 'b', T + 1);
        await s.putManifest('a/app', { ...child, blobs: [b.digest] }, 'a', T + 2);
        const index = manifest('index', [], { children: [child.digest], mediaType: 'application/vnd.oci.image.index.v1+json' });
        await s.putManifest('a/app', index, 'c', T + 3);
        const first = await s.listTagDetails('a/app', undefined, 2);
        assert.deepEqual(first.items.map((t) => [t.tag, t.manifest.digest, t.updatedAt]), [['a', child.digest, T + 2], ['b', child.digest, T + 1]]);
        assert.equal(first.more, true);
        assert.equal(first.items[0]!.manifest.body.toString(), child.body.toString());
        assert.equal(first.items[0]!.manifest.createdAt, T + 1);
        const rest = await s.listTagDetails('a/app', 'b', 2);
        assert.deepEqual(rest.items.map((t) => [t.tag, t.manifest.mediaType]), [['c', 'application/vnd.oci.image.index.v1+json']]);
        assert.equal(rest.more, false);
        assert.deepEqual(await s.listTagDetails('nope/app', undefined, 10), { items: [], more: false });
        assert.deepEqual(await s.manifestUsage('a/app', child.digest), { tags: ['a', 'b'], parents: [index.digest] });
        assert.deepEqual(await s.manifestUsage('a/app', index.digest), { tags: ['c'], parents: [] });
        assert.deepEqual(await s.manifestUsage('b/app', child.digest), { tags: [], parents: [] });
      });

      test('storageTotals counts live, unlinked, queued and deleting blobs, untagged manifests and uploads; listRuns newest first', async (s) => {
        const kept = await pushBlob(s, 'a/app', 'kept', T);
        await s.putManifest('a/app', manifest('m', [kept.digest]), 'v1', T);
        const loose = await pushBlob(s, 'a/app', 'loose!', T);
        await s.unlinkBlob('a/app', loose.digest);
        await s.putManifest('a/app', manifest('untagged', [kept.digest]), undefined, T);
        await s.createUpload('u1', 'a/app', T);
        await s.advanceUpload('u1', 0, 10, T);
        const totals = await s.storageTotals();
        assert.equal(totals.blobs, 2);
        assert.equal(totals.bytes, 4 + 6);
        assert.equal(totals.unlinkedBlobs, 1);
        assert.equal(totals.unlinkedBytes, 6);
        assert.equal(totals.deletingBlobs, 0);
        assert.ok(totals.queuedBlobs >= 1);
        assert.equal(totals.untaggedManifests, 1);
        assert.equal(totals.uploads, 1);
        assert.equal(totals.uploadBytes, 10);
        assert.ok((await s.claimBlobIfGarbage(loose.digest, T + 10)).blob);
        const after = await s.storageTotals();
        assert.equal(after.blobs, 1);
        assert.equal(after.deletingBlobs, 1);

        assert.deepEqual(await s.listRuns(10), []);
        const run = { trigger: 'cli' as const, durationMs: 10, manifestsDeleted: 1, blobsDeleted: 2, bytesReclaimed: 3e12, uploadsPurged: 4, problems: 0 };
        await s.recordRun({ ...run, kind: 'gc', startedAt: T });
        await s.recordRun({ ...run, kind: 'fsck', startedAt: T + 1, problems: 7 });
        const runs = await s.listRuns(10);
        assert.deepEqual(runs.map(({ id: _id, ...r }) => r), [{ ...run, kind: 'fsck', startedAt: T + 1, problems: 7 }, { ...run, kind: 'gc', startedAt: T }]);
        assert.equal((await s.listRuns(1)).length, 1);
      });

      test('recordPulls adds batched counts per manifest; pullCounts reads them; they go with their manifest', async (s) => {
        const b = await pushBlob(s, 'a/app', 'layer', T);
        const m1 = manifest('m1', [b.digest]);
        const m2 = manifest('m2', [b.digest]);
        await s.putManifest('a/app', m1, 'v1', T);
        await s.putManifest('a/app', m2, 'v2', T);
        assert.deepEqual(await s.pullCounts('a/app', [m1.digest, m2.digest]), []);
        await s.recordPulls([
          { repository: 'a/app', digest: m1.digest, count: 3, lastPulled: T + 10 },
          { repository: 'a/app', digest: m2.digest, count: 1, lastPulled: T + 5 },
          { repository: 'a/app', digest: digestOf('unknown'), count: 9, lastPulled: T },
          { repository: 'b/none', digest: m1.digest, count: 9, lastPulled: T },
        ]);
        await s.recordPulls([{ repository: 'a/app', digest: m1.digest, count: 2, lastPulled: T + 7 }]);
        const counts = (await s.pullCounts('a/app', [m1.digest, m2.digest, digestOf('unknown')])).sort((x, y) => y.count - x.count);
        assert.deepEqual(counts, [
          { repository: 'a/app', digest: m1.digest, count: 5, lastPulled: T + 10 },
          { repository: 'a/app', digest: m2.digest, count: 1, lastPulled: T + 5 },
        ]);
        assert.deepEqual(await s.pullCounts('a/app', [m2.digest]), [{ repository: 'a/app', digest: m2.digest, count: 1, lastPulled: T + 5 }]);
        assert.ok(await s.deleteManifest('a/app', m1.digest, T + 20));
        await s.putManifest('a/app', m1, 'v1', T + 30);
        assert.deepEqual(await s.pullCounts('a/app', [m1.digest]), [], 'a manifest pushed again starts from zero');
      });
    });

    if (options.concurrency !== false) {
      describe('concurrency between two stores on one database (two nodes)', () => {
        test('manifest push racing a GC claim: never both succeed (invariant 2)', async (a, more) => {
          const b = await more();
          const blobs = await Promise.all(Array.from({ length: 24 }, (_, i) => pushBlob(a, 'r/app', `race-${i}`, T)));
          const outcomes = await Promise.all(
            blobs.map(async (blob, i) => {
              const m = manifest(`m${i}`, [blob.digest]);
              const [pushed, claim] = await Promise.all([
                a.putManifest('r/app', m, `t${i}`, T + 1).then(() => true, (e) => (isError('MANIFEST_BLOB_UNKNOWN')(e), false)),
                b.claimBlobIfGarbage(blob.digest, T + 10),
              ]);
              return { blob, pushed, claimed: claim.blob !== undefined };
            }),
          );
          for (const o of outcomes) {
            assert.ok(!(o.pushed && o.claimed), `both the push and the claim of ${o.blob.digest} succeeded`);
            if (o.pushed) assert.ok(await a.findBlob('r/app', o.blob.digest), 'a pushed manifest keeps its blobs readable');
          }
        });

        test('concurrent uploads of one new digest: exactly one is stored, the others already-present', async (a, more) => {
          const b = await more();
          const digest = digestOf('same');
          const keys = Array.from({ length: 10 }, () => key(digest));
          const results = await Promise.all(keys.map((k, i) => (i % 2 ? a : b).commitBlob(undefined, `r/${i}`, { digest, size: 4, storageKey: k }, T)));
          const stored = results.flatMap((r, i) => (r.outcome === 'stored' ? [keys[i]] : []));
          assert.equal(stored.length, 1, JSON.stringify(results));
          assert.ok(results.every((r) => r.outcome === 'already-present' || r.replacedKey === undefined));
          assert.equal((await a.findAnyBlob(digest))?.storageKey, stored[0]);
          for (let i = 0; i < 10; i++) assert.ok(await b.findBlob(`r/${i}`, digest));
        });

        test('concurrent advanceUpload from the same offset: exactly one wins', async (a, more) => {
          const b = await more();
          await a.createUpload('u', 'r/app', T);
          const wins = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).advanceUpload('u', 0, 10 + i, T + i)));
          assert.equal(wins.filter(Boolean).length, 1);
          const u = await a.findUpload('u');
          assert.equal(u?.offset, 10 + wins.indexOf(true));
        });

        test('concurrent pushes to one tag: one target wins, every other manifest is released, versions all differ', async (a, more) => {
          const b = await more();
          await pushBlob(a, 'r/app', 'layer', T);
          // No blobs: nothing else (a shared link row) serializes these pushes before the tag.
          const ms = Array.from({ length: 12 }, (_, i) => manifest(`m${i}`, []));
          const v0 = await a.tagsVersion('r/app');
          await Promise.all(ms.map((m, i) => (i % 2 ? a : b).putManifest('r/app', m, 'latest', T)));
          const target = (await a.findManifestByTag('r/app', 'latest'))!.digest;
          const candidates = (refs(await b.listManifestCandidates(T + 10, 100))).map((r) => r.digest).sort();
          assert.deepEqual(candidates, ms.map((m) => m.digest).filter((d) => d !== target).sort(), 'no lost release');
          assert.notEqual(await a.tagsVersion('r/app'), v0);
          assert.deepEqual((await a.listTags('r/app', undefined, 10)).items, ['latest']);
        });

        test('a re-upload racing GC claims and deletions: the blob is never lost (invariant 3)', async (a, more) => {
          const b = await more();
          const blobs = await Promise.all(Array.from({ length: 16 }, (_, i) => pushBlob(a, 'r/app', `re-${i}`, T)));
          await Promise.all(
            blobs.map(async (blob) => {
              const newKey = key(blob.digest);
              const [claim, commit] = await Promise.all([
                b.claimBlobIfGarbage(blob.digest, T + 10),
                a.commitBlob(undefined, 'r/app', { digest: blob.digest, size: 5, storageKey: newKey }, T + 20),
              ]);
              if (claim.blob) await b.finishBlobDeletion(claim.blob.digest, claim.blob.storageKey);
              const found = await a.findBlob('r/app', blob.digest);
              assert.ok(found, 'the re-uploaded blob exists');
              // The bytes GC removed are never the ones metadata names.
              if (claim.blob) assert.notEqual(found.storageKey, claim.blob.storageKey);
              if (commit.outcome === 'stored') assert.equal(found.storageKey, newKey);
              else assert.equal(found.storageKey, blob.storageKey);
            }),
          );
        });

        test('pushes into repositories racing deleteEmptyRepositories lose nothing', async (a, more) => {
          const b = await more();
          const names = Array.from({ length: 12 }, (_, i) => `r/e${i}`);
          for (const n of names) {
            const x = await pushBlob(a, n, `seed-${n}`, T);
            await a.unlinkBlob(n, x.digest);
          }
          const pushed = await Promise.all([
            ...names.map((n) => pushBlob(a, n, `blob-${n}`, T + 1)),
            b.deleteEmptyRepositories(),
            b.deleteEmptyRepositories(),
          ]);
          for (let i = 0; i < names.length; i++) {
            const p = pushed[i] as Awaited<ReturnType<typeof pushBlob>>;
            assert.ok(await b.findBlob(names[i]!, p.digest), `${names[i]} lost its blob`);
          }
        });

        test('pushes and deletions of manifests sharing layers, racing claims on another node: every link count stays exact', async (a, more, fixture) => {
          const b = await more();
          const layers = await Promise.all(['l0', 'l1', 'l2', 'l3'].map((n) => pushBlob(a, 'r/app', n, T)));
          const d = layers.map((x) => x.digest);
          // Each manifest names the layers in an order of its own: the count's row locks must not deadlock.
          const ms = Array.from({ length: 16 }, (_, i) => manifest(`race${i}`, i % 2 ? [...d].reverse() : [d[i % 4]!, ...d.filter((_, j) => j !== i % 4)]));
          for (const m of ms.slice(0, 8)) await a.putManifest('r/app', m, undefined, T);
          await Promise.all([
            ...ms.slice(8).map((m, i) => (i % 2 ? a : b).putManifest('r/app', m, undefined, T + 1)),
            ...ms.slice(0, 6).map((m, i) => (i % 2 ? b : a).deleteManifest('r/app', m.digest, T + 1)),
            ...d.map((x) => b.claimBlobIfGarbage(x, T + 1000)),
          ]);
          // 8 pushed at first, 6 deleted, 8 pushed during: 10 manifests name each layer.
          assert.deepEqual((await fixture.linkRefs()).map((line) => line.split(' ')[2]), ['10', '10', '10', '10']);
          for (const x of d) assert.ok(await a.findBlob('r/app', x), 'no claim took a link the manifests need');
        });

        test('a manifest deletion racing a claim of its blob: the blob is never forgotten by GC', async (a, more) => {
          const b = await more();
          const blobs = await Promise.all(Array.from({ length: 24 }, (_, i) => pushBlob(a, 'r/app', `q-${i}`, T)));
          const ms = blobs.map((x, i) => manifest(`qm${i}`, [x.digest]));
          for (const m of ms) await a.putManifest('r/app', m, undefined, T);
          // The push's enqueue is done with; what remains queued is the blobs' upload.
          for (const x of blobs) await a.claimBlobIfGarbage(x.digest, T + 10);
          assert.deepEqual(digests(await a.listBlobCandidates(T + 1000, 100)), [], 'referenced blobs leave the queue');
          const claimed = new Set<string>();
          await Promise.all(
            blobs.map(async (x, i) => {
              const [, claim] = await Promise.all([a.deleteManifest('r/app', ms[i]!.digest, T + 20), b.claimBlobIfGarbage(x.digest, T + 1000)]);
              if (claim.blob) claimed.add(x.digest);
            }),
          );
          // Whatever this pass did not take must still be queued for the next one.
          const queued = new Set(digests(await a.listBlobCandidates(T + 1000, 100)));
          for (const x of blobs) assert.ok(claimed.has(x.digest) || queued.has(x.digest), `${x.digest} dropped out of GC`);
        });

        test('HEADs racing GC claims on another node: a blob is never both answered and claimed (invariant 5)', async (a, more) => {
          const b = await more();
          const blobs = await Promise.all(Array.from({ length: 24 }, (_, i) => pushBlob(a, 'r/app', `h-${i}`, T)));
          await Promise.all(
            blobs.map(async (x) => {
              // touchInterval 0: every answer takes the renewing path.
              const [answer, claim] = await Promise.all([a.statBlob('r/app', x.digest, T + 5000, 0), b.claimBlobIfGarbage(x.digest, T + 10)]);
              assert.ok(!(answer && claim.blob), `${x.digest} was answered "exists" and claimed`);
              if (answer) assert.ok(await b.findBlob('r/app', x.digest), 'answered: blob and link still there');
            }),
          );
        });

        test('collectors on two nodes claim each blob once', async (a, more) => {
          const b = await more();
          const blobs = await Promise.all(Array.from({ length: 20 }, (_, i) => pushBlob(a, 'r/app', `g-${i}`, T)));
          const claims = await Promise.all(blobs.flatMap((x) => [a.claimBlobIfGarbage(x.digest, T), b.claimBlobIfGarbage(x.digest, T)]));
          const claimed = claims.filter((c) => c.blob).map((c) => c.blob!.digest);
          assert.equal(new Set(claimed).size, claimed.length, 'a blob was claimed twice');
          // Whatever was skipped because the other collector held it is found by a later pass.
          for (const d of digests(await a.listBlobCandidates(T, 100))) if ((await a.claimBlobIfGarbage(d, T)).blob) claimed.push(d);
          assert.equal(claimed.length, blobs.length);
        });

        test('a dry run does not block reads and writes elsewhere on the live store', async (a, more) => {
          const b = await more();
          const x = await pushBlob(a, 'r/app', 'dry', T);
          await a.dryRun(async (view) => {
            assert.ok((await view.claimBlobIfGarbage(x.digest, T)).blob);
            // Live requests meanwhile, through the other node: not blocked.
            const y = await pushBlob(b, 'r/other', 'live', T);
            assert.ok(await b.findBlob('r/other', y.digest));
            assert.ok(await b.findBlob('r/app', x.digest), 'the view\'s claim is invisible to the live store');
          });
          assert.ok(await a.findBlob('r/app', x.digest));
        });
      });
    }
  });
}
