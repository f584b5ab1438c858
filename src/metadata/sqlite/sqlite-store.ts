/**
 * The embedded MetadataStore: SQLite in WAL mode, so that `berth gc` and
 * `berth fsck` running as separate processes share the database with
 * `berth serve`. Writes run in IMMEDIATE transactions, which SQLite
 * serializes across processes: a check and the write it guards can never be
 * interleaved with another writer's (consistency contract, invariant 2).
 * Concurrent writes share one transaction and one fsync (group commit).
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pausePoint } from '../../pause-points.js';
import { RegistryError } from '../../registry/errors.js';
import type {
  BlobRecord,
  CommitBlobResult,
  ManifestRecord,
  MetadataStore,
  NewManifest,
  Page,
  ReferrerDescriptor,
  FsckDrift,
  LifecycleRun,
  LifecycleTotals,
  ManifestRef,
  ManifestCandidate,
  BlobCandidate,
  UploadOwner,
  UploadRecord,
  EventContext,
  GcView,
  EventClaim,
  EndpointEventStats,
  OutboxEvent,
  OutboxRow,
  WriteGuard,
  QuotaNamespace,
  QuotaUsage,
  RetentionTag,
  TagPull,
} from '../store.js';
import { KEPT_RUNS } from '../store.js';
import { manifestReferences, type OutboxOptions } from '../outbox.js';
import { SqliteOutbox } from './outbox.js';
import { renewalDue, stillReferencedError, tagUnchanged, unknownBlobsError, unknownChildrenError } from '../decisions.js';
import { claimBlob, collectManifest } from './gc-verdicts.js';
import { ManifestBodies } from '../manifest-bodies.js';
import { manifestValues, page, runValues, toBlob, toBlobCandidate, toManifest, toManifestCandidate, toReferrers, toRunTotals, toRetentionTag, toUpload, type Row } from '../records.js';
import { LIVE, MIGRATIONS } from './schema.js';
import { withDryRunView } from './dry-run-view.js';
import { systemNow } from '../../clock.js';
import { digestOfKey } from '../../storage/blob-store.js';
import { prepareConsoleQueries } from './console-queries.js';
import { toPullCount, toRepositorySummary, toRun, toStorageTotals, toTagDetail } from '../records.js';
import type { LifecycleRunRecord, ManifestUsage, PullCount, RepositorySummary, StorageTotals, TagDetail } from '../store.js';

export interface SqliteStoreOptions {
  /** Endpoints events are written for (src/events/); none: no event rows at all. */
  outbox?: OutboxOptions;
  /** A throwaway database (a benchmark's scratch file): commits are never synced to disk. */
  scratch?: boolean;
}

interface PendingWrite {
  fn: () => unknown;
  durable: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** WAL pages (4 KiB each) after which a commit checkpoints the WAL into the database file. */
const WAL_CHECKPOINT_PAGES = 8000;
/** SQLite's page cache per connection, KiB. */
const PAGE_CACHE_KIB = 2000;

export class SqliteMetadataStore implements MetadataStore {
  readonly db: Database.Database;
  private readonly stmt: ReturnType<typeof prepareStatements>;

  /** Pending writes of the current group commit (see write()). */
  private queue: PendingWrite[] = [];
  /** The database file; undefined for an in-memory database. */
  private readonly file: string | undefined;
  private readonly walFile: string | undefined;
  private walHandle: Promise<FileHandle> | undefined;
  /** The WAL sync in flight, and the one that will follow it (see syncWal). */
  private walSync: Promise<void> | undefined;
  private walSyncNext: Promise<void> | undefined;

  /** Whether a read snapshot is open on the connection (see read()). */
  private reading = false;
  private readonly beginRead: Database.Statement;
  private readonly endReadStmt: Database.Statement;

  /** Undefined without endpoints: no outbox rows, and requests pay nothing. */
  private readonly outbox: SqliteOutbox | undefined;

  /** Manifest bytes by digest, so that pulls need not copy the body out of SQLite each time (see withBody). */
  private readonly bodies = new ManifestBodies();

  constructor(file: string | Buffer, options: SqliteStoreOptions = {}) {
    if (typeof file === 'string' && file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    if (typeof file === 'string') this.db.pragma('journal_mode = WAL');
    // NORMAL: commits do not fsync on this thread; write() makes each group of
    // commits durable with an fdatasync of the WAL in the thread pool before
    // any of them is acknowledged (see syncWal), which is what FULL would do,
    // without stalling every request behind the disk.
    this.db.pragma('synchronous = NORMAL');
    // A checkpoint runs inside the commit that crosses the threshold, on the
    // event loop, and costs two fsyncs plus a copy of every page in the WAL.
    // Pushes rewrite the same index pages again and again, so checkpointing
    // 8× less often copies each hot page once instead of eight times: in an
    // interleaved A/B of the small-image push this took ~10% more images/s
    // than SQLite's default of 1,000 pages, for a WAL of up to ~32 MiB.
    this.db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
    // better-sqlite3 is built with a 16 MB page cache per connection, which a
    // growing database fills and never gives back. Pages it misses come from
    // the OS page cache, and every hot query is a few index lookups: with
    // SQLite's own default of 2 MB, 3,000 small-image pushes left the server
    // at 91 instead of 111 MiB, at the same images/s (interleaved A/B).
    this.db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
    this.file = typeof file === 'string' && file !== ':memory:' ? file : undefined;
    // A scratch database's commits need no sync: there is no walFile to sync.
    this.walFile = this.file !== undefined && !options.scratch ? `${file}-wal` : undefined;
    if (options.scratch) this.db.pragma('synchronous = OFF');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 10000');
    migrate(this.db);
    // After migrating (a backfill's sort may be large; it may spill to a file).
    // A write whose statement fires triggers keeps a statement journal, and
    // with temporary files on disk every putManifest opened, wrote and
    // unlinked one (migration 11's triggers on manifest_blobs): in a
    // sequential push A/B that cost ~20% more CPU per image, all of which
    // this gave back (the journals hold a statement's few pages).
    this.db.pragma('temp_store = MEMORY');
    this.stmt = prepareStatements(this.db);
    this.beginRead = this.db.prepare('BEGIN DEFERRED');
    this.endReadStmt = this.db.prepare('COMMIT');
    this.outbox = options.outbox && options.outbox.endpoints.length > 0 ? new SqliteOutbox(this.db, options.outbox) : undefined;
  }

  // Blobs --------------------------------------------------------------------

  async findBlob(repository: string, digest: string): Promise<BlobRecord | undefined> {
    return toBlob(this.read(() => this.stmt.findBlobInRepo.get(repository, digest)) as Row | undefined);
  }

  async findAnyBlob(digest: string): Promise<BlobRecord | undefined> {
    return toBlob(this.read(() => this.stmt.findBlob.get(digest)) as Row | undefined);
  }

  async statBlob(repository: string, digest: string, now: number, touchInterval: number): Promise<BlobRecord | undefined> {
    const read = this.read(() => this.stmt.statBlob.get(repository, digest)) as Row | undefined;
    if (!read) return undefined;
    // Safe to answer from the read: GC claims a blob or removes a link only
    // when it was last seen at or before now - grace - touchInterval, and
    // both were seen after now - touchInterval, so neither can go for a
    // full grace period from this answer.
    const due = renewalDue(read.last_seen as number, now, touchInterval) || renewalDue(read.link_seen as number, now, touchInterval);
    if (!due) return toBlob(read);
    await pausePoint('stat-after-read');
    // The read is only a hint: the write re-checks liveness and renews both
    // rows in one transaction, so a claim committed since gives a 404.
    return this.write(() => {
        const row = this.stmt.statBlob.get(repository, digest) as Row | undefined;
        if (!row) return undefined;
        this.stmt.renewBlob.run(now, digest);
        this.stmt.renewLink.run(now, row.repository_id, digest);
        return toBlob({ ...row, last_seen: Math.max(row.last_seen as number, now) });
      }, false);
  }

  async mountBlob(repository: string, digest: string, from: string | undefined, now: number, ev?: EventContext, guard?: WriteGuard): Promise<BlobRecord | undefined> {
    return this.write(() => {
        const row = (from === undefined ? this.stmt.findBlob.get(digest) : this.stmt.findBlobInRepo.get(from, digest)) as Row | undefined;
        if (!row) return undefined;
        const repoId = this.ensureRepository(repository, now);
        const before = this.quotaBefore(guard, repoId);
        this.stmt.linkBlob.run(repoId, digest, now);
        if (before) this.quotaAfter(guard!, before);
        this.stmt.touchBlob.run(now, digest);
        this.stmt.enqueueBlob.run(digest, now);
        this.outbox?.insert({ action: 'mount', kind: 'blob', repository, digest, size: row.size as number, mediaType: BLOB_MEDIA_TYPE, fromRepository: from, ctx: ev }, now);
        return toBlob({ ...row, last_seen: now });
      });
  }

  async blobRepositories(digest: string, limit: number): Promise<string[]> {
    return this.read(() => this.stmt.blobRepositories.all(digest, limit)) as string[];
  }

  async unlinkBlob(repository: string, digest: string, ev?: EventContext): Promise<boolean> {
    return this.write(() => {
        const referencedBy = this.stmt.blobReferencedInRepo.get(repository, digest) as number;
        if (referencedBy > 0) throw stillReferencedError('blob', digest, referencedBy);
        const changed = this.stmt.unlinkBlob.run(repository, digest).changes > 0;
        if (changed) this.stmt.enqueueBlob.run(digest, 0);
        if (changed) this.outbox?.insert({ action: 'delete', kind: 'blob', repository, digest, ctx: ev }, systemNow());
        return changed;
      });
  }

  // Uploads ------------------------------------------------------------------

  async createUpload(id: string, repository: string, now: number, owner?: UploadOwner): Promise<boolean> {
    // Writers are serialized, so the count and the insert are one atomic step.
    return this.write(() => this.stmt.createUpload.run(id, repository, now, now, owner?.name ?? null, owner?.maxSessions ?? 0, owner?.name ?? null, owner?.maxSessions ?? 0).changes > 0, false);
  }

  async findUpload(id: string): Promise<UploadRecord | undefined> {
    return toUpload(this.read(() => this.stmt.findUpload.get(id)) as Row | undefined);
  }

  async advanceUpload(id: string, from: number, to: number, now: number, hashState?: Buffer): Promise<boolean> {
    return this.write(() => this.stmt.advanceUpload.run(to, now, hashState ?? null, id, from).changes > 0, false);
  }

  async deleteUpload(id: string): Promise<boolean> {
    return this.write(() => this.stmt.deleteUpload.run(id).changes > 0, false);
  }

  async claimUpload(id: string, offset: number, storageKey: string, now: number): Promise<boolean> {
    // Not waiting for the sync: a claim lost on a power cut goes with
    // everything after it in the WAL, the commit included.
    return this.write(() => this.stmt.claimUpload.run(storageKey, now, id, offset).changes > 0, false);
  }

  async createClaimedUpload(id: string, repository: string, storageKey: string, now: number): Promise<void> {
    await this.write(() => this.stmt.createClaimedUpload.run(id, repository, now, now, storageKey), false);
  }

  async commitBlob(
    uploadId: string | undefined,
    repository: string,
    blob: Omit<BlobRecord, 'lastSeen'>,
    now: number,
    ev?: EventContext,
    guard?: WriteGuard,
  ): Promise<CommitBlobResult> {
    return this.write((): CommitBlobResult => {
        if (uploadId !== undefined && this.stmt.consumeUpload.run(uploadId, blob.storageKey).changes === 0) {
          // Another request finished or cancelled this upload first.
          throw new RegistryError('BLOB_UPLOAD_UNKNOWN');
        }
        const repoId = this.ensureRepository(repository, now);
        const existing = this.stmt.findBlobAnyState.get(blob.digest) as Row | undefined;
        let result: CommitBlobResult = { outcome: 'stored' };
        if (existing && existing.state === LIVE) {
          result = { outcome: 'already-present' };
          this.stmt.touchBlob.run(now, blob.digest);
        } else {
          if (existing) result = { outcome: 'stored', replacedKey: existing.storage_key as string };
          // New, or being deleted by GC: this upload's object becomes the blob.
          // GC deletes by the key it marked, so it cannot remove this one.
          this.stmt.upsertBlob.run(blob.digest, blob.size, blob.storageKey, now);
        }
        const before = this.quotaBefore(guard, repoId);
        this.stmt.linkBlob.run(repoId, blob.digest, now);
        if (before) this.quotaAfter(guard!, before);
        this.stmt.enqueueBlob.run(blob.digest, now);
        this.outbox?.insert({ action: 'push', kind: 'blob', repository, digest: blob.digest, size: blob.size, mediaType: BLOB_MEDIA_TYPE, ctx: ev }, now);
        return result;
      });
  }

  // Manifests and tags -------------------------------------------------------

  async findManifestByDigest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    return this.read(() => this.withBody(this.stmt.findManifestByDigest.get(repository, digest) as Row | undefined));
  }

  async findManifestByTag(repository: string, tag: string): Promise<ManifestRecord | undefined> {
    return this.read(() => this.withBody(this.stmt.findManifestByTag.get(repository, tag) as Row | undefined));
  }

  async statManifest(repository: string, digest: string, now: number, touchInterval: number): Promise<ManifestRecord | undefined> {
    const found = this.read(() => {
      const row = this.stmt.manifestForStat.get(repository, digest) as Row | undefined;
      // Held by a tag or an index, or renewed less than touchInterval ago (see statBlob): the read is the answer.
      const answered = !row || row.untagged_at === null || !renewalDue(row.untagged_at as number, now, touchInterval);
      return answered ? { manifest: this.withBody(row) } : undefined;
    });
    if (found) return found.manifest;
    await pausePoint('stat-after-read');
    return this.write(() => {
        const row = this.stmt.manifestForStat.get(repository, digest) as Row | undefined;
        if (row) this.stmt.renewManifest.run(now, row.id);
        return this.withBody(row);
      }, false);
  }

  /**
   * A manifest row found by a pull-path read (id, digest, media_type, size)
   * as a record with its body: from memory when this process has read it
   * before, otherwise by its id. Called inside the read or write that found
   * the row, so the body comes from the same snapshot; existence is always
   * the row's, never the cache's (invariant 1).
   */
  private withBody(row: Row | undefined): ManifestRecord | undefined {
    if (!row) return undefined;
    const digest = row.digest as string;
    let body = this.bodies.get(digest);
    if (body === undefined) {
      body = this.stmt.manifestBody.get(row.id) as Buffer;
      this.bodies.set(digest, body);
    }
    row.body = body;
    return toManifest(row);
  }

  async putManifest(repository: string, m: NewManifest, tag: string | undefined, now: number, ev?: EventContext, guard?: WriteGuard): Promise<void> {
    await this.write(() => {
        const repoId = this.ensureRepository(repository, now);
        const missingBlobs = m.blobs.filter((d) => !this.stmt.blobLinkedLive.get(repoId, d));
        if (missingBlobs.length > 0) throw unknownBlobsError(missingBlobs);
        const missingChildren = m.children.filter((d) => !this.stmt.manifestId.get(repoId, d));
        if (missingChildren.length > 0) throw unknownChildrenError(missingChildren);
        let id = (this.stmt.manifestId.get(repoId, m.digest) as Row | undefined)?.id as number | undefined;
        if (id === undefined && guard?.quotas) {
          for (const q of guard.quotas) {
            const usage = this.quotaUsageOf(q.namespace);
            if (usage > q.limit) throw q.refuse(usage, 0);
          }
        }
        if (id === undefined) {
          const held = tag !== undefined || this.stmt.hasParent.get(repoId, m.digest) !== undefined;
          id = Number(
            this.stmt.insertManifest.run(...manifestValues(repoId, m, now), held ? null : now).lastInsertRowid,
          );
          // Each reference counts itself in its link (refs, a trigger), which keeps
          // the link while the manifest exists; the push does not renew the link's
          // last_seen (a second update of every link): see docs/architecture.md.
          for (const d of m.blobs) this.stmt.insertManifestBlob.run(id, d);
          for (const d of m.children) {
            this.stmt.insertManifestChild.run(id, repoId, d);
            this.stmt.holdManifest.run(repoId, d);
          }
        } else {
          // Pushed again: kept like a new one (a client may push an index referencing it next).
          this.stmt.renewManifest.run(now, id);
        }
        if (tag !== undefined) {
          const previous = this.stmt.tagTarget.get(repoId, tag) as Row | undefined;
          if (guard && previous && previous.manifest_id !== id) {
            const refusal = guard.refuseTagChange?.(tag, 'move');
            if (refusal) throw refusal;
          }
          this.stmt.upsertTag.run(repoId, tag, id, now);
          this.stmt.holdManifestById.run(id);
          if (previous && previous.manifest_id !== id) this.releaseIfOrphan(previous.manifest_id as number, now);
        }
        this.outbox?.insert({ action: 'push', kind: 'manifest', repository, digest: m.digest, mediaType: m.mediaType, size: m.size, tag, references: manifestReferences(m.body), ctx: ev }, now);
      });
  }

  async deleteManifest(repository: string, digest: string, now: number, ev?: EventContext, guard?: WriteGuard): Promise<boolean> {
    return this.write(() => {
        const row = this.stmt.manifestIdByName.get(repository, digest) as Row | undefined;
        if (!row) return false;
        const parents = this.stmt.parentCount.get(row.repository_id, digest) as number;
        if (parents > 0) throw stillReferencedError('manifest', digest, parents);
        if (guard) {
          for (const tag of this.stmt.tagNamesOfManifest.all(row.id) as string[]) {
            const refusal = guard.refuseTagChange?.(tag, 'delete');
            if (refusal) throw refusal;
          }
        }
        const tags = this.outbox?.tagsOf(row.id as number) ?? [];
        this.deleteManifestRow(row.id as number, row.repository_id as number, digest, now);
        for (const tag of tags) this.outbox?.insert({ action: 'delete', repository, tag, ctx: ev }, now);
        this.outbox?.insert({ action: 'delete', kind: 'manifest', repository, digest, ctx: ev }, now);
        return true;
      });
  }

  async deleteTag(repository: string, tag: string, now: number, ev?: EventContext, guard?: WriteGuard): Promise<boolean> {
    return this.write(() => {
        const row = this.stmt.tagTargetByName.get(repository, tag) as Row | undefined;
        if (!row) return false;
        const refusal = guard?.refuseTagChange?.(tag, 'delete');
        if (refusal) throw refusal;
        this.stmt.deleteTag.run(row.repository_id, tag);
        this.releaseIfOrphan(row.manifest_id as number, now);
        this.outbox?.insert({ action: 'delete', repository, tag, ctx: ev }, now);
        return true;
      });
  }

  async repositoryExists(repository: string): Promise<boolean> {
    return this.read(() => this.stmt.repositoryId.get(repository)) !== undefined;
  }

  async tagsVersion(repository: string): Promise<string | undefined> {
    return this.read(() => this.stmt.tagsVersion.get(repository)) as string | undefined;
  }

  async listTags(repository: string, last: string | undefined, limit: number): Promise<Page> {
    return page(this.read(() => this.stmt.listTags.all(repository, last ?? '', limit + 1)) as string[], limit);
  }

  async listRepositories(last: string | undefined, limit: number): Promise<Page> {
    return page(this.read(() => this.stmt.listRepositories.all(last ?? '', limit + 1)) as string[], limit);
  }

  async listReferrers(repository: string, subject: string, artifactType: string | undefined): Promise<ReferrerDescriptor[]> {
    return toReferrers(this.read(() => this.stmt.listReferrers.all(repository, subject)) as Row[], artifactType);
  }

  // Lifecycle ----------------------------------------------------------------

  async listManifestCandidates(cutoff: number, limit: number, after?: ManifestCandidate): Promise<ManifestCandidate[]> {
    // Two index seeks, not one row-value comparison: SQLite seeks (untagged_at, id) > (?, ?)
    // on untagged_at alone when id is the rowid, then steps over every earlier candidate
    // of that time, and a GC pass releases many manifests at one time.
    const rows = after && after.since <= cutoff ? (this.stmt.manifestCandidatesAtTime.all(after.since, after.id, limit) as Row[]) : [];
    if (rows.length < limit) rows.push(...(this.stmt.manifestCandidatesAfterTime.all(after?.since ?? Number.MIN_SAFE_INTEGER, cutoff, limit - rows.length) as Row[]));
    return rows.map(toManifestCandidate);
  }

  async deleteManifestIfGarbage(ref: ManifestRef, cutoff: number, now: number): Promise<ManifestRecord | undefined> {
    return this.write(() => {
      const row = collectManifest(
        {
          row: () => this.stmt.manifestForGc.get(ref.repository, ref.digest) as Row | undefined,
          tagged: (id) => this.stmt.isTagged.get(id) !== undefined,
          hasParent: (repoId) => this.stmt.hasParent.get(repoId, ref.digest) !== undefined,
          holds: (repoId, digest) => this.stmt.manifestId.get(repoId, digest) !== undefined,
          hold: (id) => this.stmt.holdManifestById.run(id),
          delete: (id, repoId) => this.deleteManifestRow(id, repoId, ref.digest, now),
        },
        cutoff,
      );
      if (!row) return undefined;
      this.outbox?.insert({ action: 'gc.delete', kind: 'manifest', repository: ref.repository, digest: ref.digest, mediaType: row.media_type as string, size: row.size as number }, now);
      return toManifest(row);
    });
  }

  async listBlobCandidates(cutoff: number, limit: number, after?: BlobCandidate): Promise<BlobCandidate[]> {
    const rows = this.stmt.blobCandidates.all(cutoff, after?.since ?? Number.MIN_SAFE_INTEGER, after?.digest ?? '', limit) as Row[];
    return rows.map(toBlobCandidate);
  }

  async claimBlobIfGarbage(digest: string, cutoff: number): Promise<{ blob?: BlobRecord; linksRemoved: number }> {
    return this.write(() => {
      const { row, linksRemoved } = claimBlob(
        {
          removeDanglingLinks: () => this.stmt.deleteDanglingLinks.run({ digest, cutoff }).changes,
          row: () => this.stmt.blobForGc.get(digest) as Row | undefined,
          referenced: () => this.stmt.isReferenced.get(digest) !== undefined,
          newestLink: () => (this.stmt.newestLink.get(digest) as Row).newest as number | null,
          dequeue: () => this.stmt.dequeueBlob.run(digest),
          requeue: (at) => this.stmt.requeueBlob.run(at, digest),
          markDeleting: () => this.stmt.markDeleting.run(digest),
        },
        cutoff,
      );
      if (!row) return { linksRemoved };
      this.outbox?.insert({ action: 'gc.delete', kind: 'blob', repository: '', digest, size: row.size as number }, systemNow());
      return { blob: toBlob(row), linksRemoved };
    });
  }

  async listDeletingBlobs(limit: number): Promise<BlobRecord[]> {
    return (this.stmt.deletingBlobs.all(limit) as Row[]).map((r) => toBlob(r)!);
  }

  async finishBlobDeletion(digest: string, storageKey: string): Promise<void> {
    await this.write(() => this.stmt.deleteDeletingBlob.run(digest, storageKey));
  }

  async expireUploads(cutoff: number, limit: number): Promise<string[]> {
    return this.write(() => {
        const ids = (this.stmt.staleUploads.all(cutoff, limit) as Row[]).map((r) => r.id as string);
        for (const id of ids) this.stmt.deleteUpload.run(id);
        return ids;
      });
  }

  async deleteEmptyRepositories(): Promise<number> {
    return this.write(() => this.stmt.deleteEmptyRepositories.run().changes);
  }

  async listBlobs(after: string, limit: number): Promise<BlobRecord[]> {
    return (this.stmt.listBlobs.all(after, limit) as Row[]).map((r) => toBlob(r)!);
  }

  async storageKeyKnown(key: string): Promise<boolean> {
    return this.stmt.storageKeyKnown.get({ digest: digestOfKey(key) ?? null, key }) !== undefined;
  }

  async recordOrphanCandidate(key: string, now: number): Promise<number> {
    return this.write(() => (this.stmt.recordCandidate.get(key, now, now) as Row).first_seen as number, false);
  }

  async dropOrphanCandidate(key: string): Promise<void> {
    await this.write(() => this.stmt.dropCandidate.run(key), false);
  }

  async pruneOrphanCandidates(seenBefore: number): Promise<void> {
    await this.write(() => this.stmt.pruneCandidates.run(seenBefore), false);
  }

  async uploadExists(id: string): Promise<boolean> {
    return this.read(() => this.stmt.findUpload.get(id)) !== undefined;
  }

  async forgetBlob(digest: string, storageKey: string): Promise<boolean> {
    return this.write(() => {
        if (this.stmt.forgetBlob.run(digest, storageKey).changes === 0) return false;
        this.outbox?.insert({ action: 'fsck.forget', kind: 'blob', repository: '', digest }, systemNow());
        this.stmt.deleteLinks.run(digest);
        this.stmt.dequeueBlob.run(digest);
        return true;
      });
  }

  async syncQuotaNamespaces(namespaces: QuotaNamespace[]): Promise<void> {
    await this.write(() => {
        const keep = new Set(namespaces.map((n) => n.name));
        for (const name of this.stmt.quotaNamespaceNames.all() as string[]) if (!keep.has(name)) this.stmt.deleteQuotaNamespace.run(name);
        for (const n of namespaces) {
          const created = this.stmt.insertQuotaNamespace.run(n.name).changes > 0;
          let joined = 0;
          for (const repository of n.repositories) joined += this.stmt.insertQuotaMemberByName.run(n.name, repository).changes;
          // The triggers keep a namespace's usage exact from then on: only a
          // new one, or one that gained repositories (with their links), is
          // counted again, so a start costs nothing per image stored.
          if (created || joined > 0) this.recountQuota(n.name);
        }
      });
  }

  async quotaUsage(): Promise<QuotaUsage[]> {
    return (this.stmt.quotaUsage.all() as Row[]).map((r) => ({ namespace: r.name as string, bytes: r.bytes as number }));
  }

  async listRetentionTags(repository: string): Promise<RetentionTag[]> {
    return (this.stmt.retentionTags.all(repository) as Row[]).map(toRetentionTag);
  }

  async deleteTagIfUnchanged(repository: string, seen: RetentionTag, now: number, guard?: WriteGuard): Promise<boolean> {
    return this.write(() => {
        const row = this.stmt.retentionTag.get(repository, seen.tag) as Row | undefined;
        if (!row) return false;
        if (!tagUnchanged(toRetentionTag(row), seen)) return false;
        const refusal = guard?.refuseTagChange?.(seen.tag, 'delete');
        if (refusal) throw refusal;
        this.stmt.deleteTag.run(row.repository_id, seen.tag);
        this.stmt.deleteTagPull.run(row.repository_id, seen.tag);
        this.releaseIfOrphan(row.manifest_id as number, now);
        this.outbox?.insert({ action: 'retention.delete', repository, tag: seen.tag, digest: seen.digest }, now);
        return true;
      });
  }

  async recordTagPulls(pulls: TagPull[]): Promise<void> {
    await this.write(() => {
        for (const p of pulls) this.stmt.recordPull.run(p.at, p.repository, p.tag);
      }, false);
  }

  async recordRun(run: LifecycleRun): Promise<void> {
    await this.write(() => {
      this.stmt.recordRun.run(...runValues(run));
      this.stmt.addRunTotals.run();
      this.stmt.pruneRuns.run(KEPT_RUNS);
    });
  }

  async recordFsckDrift(drift: FsckDrift[]): Promise<void> {
    const outbox = this.outbox;
    if (!outbox || drift.length === 0) return;
    const now = systemNow();
    await this.write(() => drift.forEach((d) => outbox.insert({ action: 'fsck.drift', repository: '', ...d }, now)));
  }

  async runTotals(): Promise<LifecycleTotals[]> {
    return (this.stmt.runTotals.all() as Row[]).map(toRunTotals);
  }

  async appendEvents(events: OutboxEvent[]): Promise<void> {
    const outbox = this.outbox;
    if (!outbox || events.length === 0) return;
    const now = systemNow();
    // Pulls change nothing: losing the last few on a power cut is acceptable, so no fsync wait.
    await this.write(() => events.forEach((e) => outbox.insert(e, now)), false);
  }

  async claimEvents(endpoint: string, owner: string, now: number, claim: EventClaim): Promise<OutboxRow[] | undefined> {
    const outbox = this.outboxFor();
    if (!outbox.anyPending(endpoint)) return [];
    return this.write(() => outbox.claim(endpoint, owner, now, claim), false);
  }

  async ackEvents(endpoint: string, owner: string, seqs: number[]): Promise<void> {
    const outbox = this.outboxFor();
    // Not waited for on disk: an ack lost on a power cut only means the events are sent again (at least once).
    await this.write(() => outbox.ack(endpoint, owner, seqs), false);
  }

  async failEvents(endpoint: string, owner: string, seqs: number[], retryAt: number, error: string): Promise<void> {
    const outbox = this.outboxFor();
    await this.write(() => outbox.fail(endpoint, owner, seqs, retryAt, error), false);
  }

  async eventStats(_now: number): Promise<EndpointEventStats[]> {
    return this.outboxFor().stats();
  }

  async replayEvents(endpoint: string, now: number): Promise<number> {
    const outbox = this.outboxFor();
    return this.write(() => outbox.replay(endpoint, now));
  }

  /** The outbox for delivery and admin calls, which work on any database (also one whose endpoints are gone from the config). */
  private outboxFor(): SqliteOutbox {
    return (this.adminOutbox ??= this.outbox ?? new SqliteOutbox(this.db, { endpoints: [] }));
  }
  private adminOutbox: SqliteOutbox | undefined;

  async dryRun<T>(fn: (view: GcView) => Promise<T>): Promise<T> {
    // A view of the live file on a connection of its own (see dry-run-view.ts):
    // no copy, whatever the registry's size, and no write lock.
    if (this.file === undefined) throw new Error('a GC dry run needs the SQLite database in a file');
    return withDryRunView(this.file, PAGE_CACHE_KIB, fn);
  }

  async now(): Promise<number> {
    return systemNow();
  }

  // Console queries ----------------------------------------------------------

  private consoleQueries: ReturnType<typeof prepareConsoleQueries> | undefined;
  /** Prepared on first use: a server without the console does not pay for them. */
  private get cq(): ReturnType<typeof prepareConsoleQueries> {
    return (this.consoleQueries ??= prepareConsoleQueries(this.db));
  }

  async repositorySummaries(): Promise<RepositorySummary[]> {
    return (this.cq.repositorySummaries.all() as Row[]).map(toRepositorySummary);
  }

  async listTagDetails(repository: string, last: string | undefined, limit: number): Promise<{ items: TagDetail[]; more: boolean }> {
    const rows = (this.cq.listTagDetails.all(repository, last ?? '', limit + 1) as Row[]).map(toTagDetail);
    return { items: rows.slice(0, limit), more: rows.length > limit };
  }

  async manifestUsage(repository: string, digest: string): Promise<ManifestUsage> {
    return {
      tags: this.cq.tagsOfManifest.all(repository, digest) as string[],
      parents: this.cq.parentsOfManifest.all(repository, digest) as string[],
    };
  }

  async storageTotals(): Promise<StorageTotals> {
    return toStorageTotals(this.cq.storageTotals.get() as Row);
  }

  async listRuns(limit: number): Promise<LifecycleRunRecord[]> {
    return (this.cq.listRuns.all(limit) as Row[]).map(toRun);
  }

  async recordPulls(pulls: PullCount[]): Promise<void> {
    if (pulls.length === 0) return;
    // Not durable: a power cut costs a few seconds of counts, and pulls never wait for a sync.
    await this.write(() => {
      for (const p of pulls) this.cq.recordPull.run(p.count, p.lastPulled, p.repository, p.digest);
    }, false);
  }

  async pullCounts(repository: string, digests: string[]): Promise<PullCount[]> {
    if (digests.length === 0) return [];
    return (this.cq.pullCounts.all(repository, JSON.stringify(digests)) as Row[]).map(toPullCount);
  }

  async close(): Promise<void> {
    // Let pending writes settle first: close() must not strand a group commit.
    while (this.queue.length > 0) await new Promise((r) => setImmediate(r));
    await (await this.walHandle?.catch(() => undefined))?.close();
    this.endRead();
    this.db.close();
  }

  // Internals ----------------------------------------------------------------

  /**
   * Runs `fn` atomically, as its own savepoint inside a group commit: every
   * write that arrives in the same turn of the event loop shares one
   * IMMEDIATE transaction and so one fsync, instead of paying one each. Each
   * write still sees the ones before it and fails alone (its savepoint is
   * rolled back); its promise settles only once the group is durable.
   * Writes whose loss on a power cut is harmless (an upload's creation or
   * offset, a grace-period renewal: the client simply retries) can skip the
   * wait with durable = false.
   */
  private write<T>(fn: () => T, durable = true): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, durable, resolve: resolve as (v: unknown) => void, reject });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  /**
   * Runs a request's read inside the read snapshot of the current event-loop
   * turn. In WAL mode a statement outside a transaction takes and drops the
   * WAL read lock itself (two fcntl calls and a check of the WAL index):
   * about 16 µs against 3 µs inside a transaction, measured with
   * better-sqlite3 on this machine, and most of a HEAD's database time. So
   * the first read of a turn opens a deferred transaction and the turn's
   * end (setImmediate) closes it; every read of the requests handled in
   * that turn shares it. This answers from a snapshot taken after each of
   * those requests arrived, so nothing is said about a state older than
   * the request (a GC claim committed before it is seen; one committed
   * after is the ordinary race invariant 1 already covers: a HEAD's "exists"
   * rests on last_seen, which the snapshot reads as the writer left it).
   * Writes never run inside it: flush() closes it before BEGIN IMMEDIATE, so
   * a write is never a read transaction upgraded from a stale snapshot, and
   * reads after a commit open a fresh one that sees it.
   */
  private read<T>(statement: () => T): T {
    if (!this.db.inTransaction) {
      this.beginRead.run();
      this.reading = true;
      setImmediate(this.endRead);
    }
    return statement();
  }

  private readonly endRead = (): void => {
    if (!this.reading) return;
    this.reading = false;
    if (this.db.inTransaction) this.endReadStmt.run();
  };

  private flush(): void {
    this.endRead();
    const batch = this.queue;
    this.queue = [];
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.db.exec('BEGIN IMMEDIATE');
    } catch (e) {
      for (const w of batch) w.reject(e);
      return;
    }
    for (const w of batch) {
      this.stmt.savepoint.run();
      try {
        const value = w.fn();
        this.stmt.release.run();
        outcomes.push({ ok: true, value });
      } catch (error) {
        this.stmt.rollbackTo.run();
        this.stmt.release.run();
        outcomes.push({ ok: false, error });
      }
    }
    try {
      this.db.exec('COMMIT');
    } catch (e) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      for (const w of batch) w.reject(e);
      return;
    }
    const settle = (w: PendingWrite, i: number) => {
      const o = outcomes[i]!;
      if (o.ok) w.resolve(o.value);
      else w.reject(o.error);
    };
    batch.forEach((w, i) => w.durable || settle(w, i));
    if (!batch.some((w) => w.durable)) return;
    this.syncWal().then(
      () => batch.forEach((w, i) => w.durable && settle(w, i)),
      (e: unknown) => batch.forEach((w) => w.durable && w.reject(e)),
    );
  }

  /**
   * Makes every commit so far durable. SQLite appends committed frames to the
   * WAL file; syncing that file (from any descriptor) persists them. Frames
   * leave the WAL only through a checkpoint, which syncs the database file
   * before the WAL is reused, so a commit is durable once this resolves.
   */
  private syncWal(): Promise<void> {
    if (!this.walFile) return Promise.resolve();
    // One sync at a time: commits made while one runs share the next one,
    // so a burst of group commits costs two fsyncs, not one each.
    if (this.walSync) return (this.walSyncNext ??= this.walSync.then(() => {
      this.walSyncNext = undefined;
      return this.syncWal();
    }));
    // The WAL file (and the database file beside it) exist only once their
    // directory entries are durable: the directory is synced with the first
    // WAL sync, before any commit is acknowledged.
    this.walHandle ??= open(this.walFile, 'r').then(async (h) => {
      try {
        await this.syncDirectory(dirname(this.walFile!));
      } catch (e) {
        await h.close();
        this.walHandle = undefined;
        throw e;
      }
      return h;
    });
    const sync = this.walHandle.then((h) => h.datasync());
    this.walSync = sync.finally(() => (this.walSync = undefined)).catch(() => {});
    return sync;
  }

  /**
   * Joins the repository to its quota namespaces and reads their usage,
   * before a link. Inside a transaction. Undefined when no quota applies.
   */
  private quotaBefore(guard: WriteGuard | undefined, repoId: number): number[] | undefined {
    if (!guard?.quotas || guard.quotas.length === 0) return undefined;
    return guard.quotas.map((q) => {
      this.stmt.insertQuotaNamespace.run(q.namespace);
      // A repository joining with links already (created before the quota) is counted in whole.
      if (this.stmt.insertQuotaMember.run(repoId, q.namespace).changes > 0 && this.stmt.repositoryHasLinks.get(repoId)) this.recountQuota(q.namespace);
      return this.quotaUsageOf(q.namespace);
    });
  }

  /** After the link (the triggers counted it): refuses what took a namespace over its limit. */
  private quotaAfter(guard: WriteGuard, before: number[]): void {
    guard.quotas!.forEach((q, i) => {
      const after = this.quotaUsageOf(q.namespace);
      if (after > before[i]! && after > q.limit) throw q.refuse(before[i]!, after - before[i]!);
    });
  }

  private quotaUsageOf(namespace: string): number {
    return (this.stmt.quotaBytes.get(namespace) as number | undefined) ?? 0;
  }

  /** Counts a namespace's usage again from its members' links. Inside a transaction. */
  private recountQuota(namespace: string): void {
    this.stmt.clearQuotaBlobs.run(namespace);
    this.stmt.fillQuotaBlobs.run(namespace);
    this.stmt.sumQuotaBlobs.run(namespace, namespace);
  }

  /** Makes a directory's entries durable (protected: tests observe it). */
  protected async syncDirectory(dir: string): Promise<void> {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  /** Must run inside a transaction. */
  private ensureRepository(name: string, now: number): number {
    const row = this.stmt.repositoryId.get(name) as Row | undefined;
    if (row) return row.id as number;
    return Number(this.stmt.insertRepository.run(name, now).lastInsertRowid);
  }

  /** Deletes a manifest; its blobs, children and referrers become GC candidates. Inside a transaction. */
  private deleteManifestRow(id: number, repoId: number, digest: string, now: number): void {
    const blobs = this.stmt.manifestBlobs.all(id) as Row[];
    const children = this.stmt.manifestChildren.all(id) as Row[];
    this.stmt.deleteManifest.run(id);
    for (const b of blobs) this.stmt.enqueueBlob.run(b.digest, now);
    for (const c of children) {
      const child = this.stmt.manifestId.get(repoId, c.child_digest) as Row | undefined;
      if (child) this.releaseIfOrphan(child.id as number, now);
    }
    this.stmt.releaseReferrers.run({ now, repoId, subject: digest });
  }

  /** Marks a manifest as a GC candidate if it has no tag and no parent left. Inside a transaction. */
  private releaseIfOrphan(id: number, now: number): void {
    this.stmt.releaseIfOrphan.run(now, id, id, id);
  }
}

/** Applies pending migrations; refuses a schema newer than this code. Returns the versions before and after. */
export function migrate(db: Database.Database): { from: number; to: number } {
  const tooNew = (v: number) => new Error(`metadata schema version ${v} is newer than this Berth understands (${MIGRATIONS.length}); upgrade Berth`);
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) throw tooNew(version);
  // Each step reads the version inside its write transaction: another
  // process starting on the same new database at the same moment may have
  // applied the migration between our first read and our lock.
  for (;;) {
    const applied = db
      .transaction(() => {
        const v = db.pragma('user_version', { simple: true }) as number;
        if (v > MIGRATIONS.length) throw tooNew(v);
        if (v === MIGRATIONS.length) return false;
        db.exec(MIGRATIONS[v]!);
        db.pragma(`user_version = ${v + 1}`);
        return true;
      })
      .immediate();
    if (!applied) break;
  }
  return { from: version, to: MIGRATIONS.length };
}

/** What the reference registry reports as a blob's media type. */
const BLOB_MEDIA_TYPE = 'application/octet-stream';

function prepareStatements(db: Database.Database) {
  const p = (sql: string) => db.prepare(sql);
  return {
    savepoint: p(`SAVEPOINT write`),
    release: p(`RELEASE write`),
    rollbackTo: p(`ROLLBACK TO write`),
    repositoryId: p(`SELECT id FROM repositories WHERE name = ?`),
    tagsVersion: p(`SELECT id || ':' || tags_version FROM repositories WHERE name = ?`).pluck(),
    insertRepository: p(`INSERT INTO repositories (name, created_at) VALUES (?, ?)`),

    findBlob: p(`SELECT digest, size, storage_key, last_seen FROM blobs WHERE digest = ? AND state = ${LIVE}`),
    findBlobAnyState: p(`SELECT state, storage_key FROM blobs WHERE digest = ?`),
    findBlobInRepo: p(`
      SELECT b.digest, b.size, b.storage_key, b.last_seen
      FROM repositories r
      JOIN repository_blobs l ON l.repository_id = r.id
      JOIN blobs b ON b.digest = l.digest
      WHERE r.name = ? AND l.digest = ? AND b.state = ${LIVE}`),
    blobRepositories: p(`
      SELECT r.name FROM repository_blobs l
      JOIN repositories r ON r.id = l.repository_id
      JOIN blobs b ON b.digest = l.digest
      WHERE l.digest = ? AND b.state = ${LIVE} LIMIT ?`).pluck(),
    blobLinkedLive: p(`
      SELECT 1 FROM repository_blobs l JOIN blobs b ON b.digest = l.digest
      WHERE l.repository_id = ? AND l.digest = ? AND b.state = ${LIVE}`),
    touchBlob: p(`UPDATE blobs SET last_seen = ? WHERE digest = ? AND state = ${LIVE}`),
    statBlob: p(`
      SELECT b.digest, b.size, b.storage_key, b.last_seen, l.repository_id, l.last_seen AS link_seen
      FROM repositories r
      JOIN repository_blobs l ON l.repository_id = r.id
      JOIN blobs b ON b.digest = l.digest
      WHERE r.name = ? AND l.digest = ? AND b.state = ${LIVE}`),
    // max(): a renewal never moves a time back.
    renewBlob: p(`UPDATE blobs SET last_seen = max(last_seen, ?) WHERE digest = ? AND state = ${LIVE}`),
    renewLink: p(`UPDATE repository_blobs SET last_seen = max(last_seen, ?) WHERE repository_id = ? AND digest = ?`),
    blobReferencedInRepo: p(`
      SELECT count(*) FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id
      WHERE m.repository_id = (SELECT id FROM repositories WHERE name = ?) AND mb.digest = ?`).pluck(),
    upsertBlob: p(`
      INSERT INTO blobs (digest, size, storage_key, state, last_seen) VALUES (?, ?, ?, ${LIVE}, ?)
      ON CONFLICT (digest) DO UPDATE SET size = excluded.size, storage_key = excluded.storage_key,
        state = ${LIVE}, last_seen = excluded.last_seen`),
    linkBlob: p(`
      INSERT INTO repository_blobs (repository_id, digest, last_seen) VALUES (?, ?, ?)
      ON CONFLICT (repository_id, digest) DO UPDATE SET last_seen = excluded.last_seen`),
    unlinkBlob: p(`
      DELETE FROM repository_blobs
      WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND digest = ?`),
    enqueueBlob: p(`
      INSERT INTO gc_blob_queue (digest, since) VALUES (?, ?)
      ON CONFLICT (digest) DO UPDATE SET since = max(since, excluded.since)`),

    createUpload: p(`INSERT INTO uploads (id, repository, "offset", created_at, updated_at, owner)
      SELECT ?, ?, 0, ?, ?, ? WHERE ? = 0 OR (SELECT count(*) FROM uploads WHERE owner = ?) < ?`),
    findUpload: p(`SELECT id, repository, "offset", created_at, updated_at, hash_state, owner, committing_key FROM uploads WHERE id = ?`),
    advanceUpload: p(`UPDATE uploads SET "offset" = ?, updated_at = ?, hash_state = ? WHERE id = ? AND "offset" = ? AND committing_key IS NULL`),
    deleteUpload: p(`DELETE FROM uploads WHERE id = ?`),
    claimUpload: p(`UPDATE uploads SET committing_key = ?, updated_at = ? WHERE id = ? AND "offset" = ? AND committing_key IS NULL`),
    createClaimedUpload: p(`INSERT INTO uploads (id, repository, "offset", created_at, updated_at, committing_key) VALUES (?, ?, 0, ?, ?, ?)`),
    // Only the commit that claimed an upload (or, unclaimed, any) ends it as a blob.
    consumeUpload: p(`DELETE FROM uploads WHERE id = ? AND (committing_key IS NULL OR committing_key = ?)`),

    manifestId: p(`SELECT id FROM manifests WHERE repository_id = ? AND digest = ?`),
    manifestIdByName: p(`
      SELECT m.id, m.repository_id FROM manifests m JOIN repositories r ON r.id = m.repository_id
      WHERE r.name = ? AND m.digest = ?`),
    // The pull path's reads leave out the body: withBody() adds it, from memory when it can.
    findManifestByDigest: p(`
      SELECT m.id, m.digest, m.media_type, m.size FROM manifests m JOIN repositories r ON r.id = m.repository_id
      WHERE r.name = ? AND m.digest = ?`),
    findManifestByTag: p(`
      SELECT m.id, m.digest, m.media_type, m.size
      FROM repositories r JOIN tags t ON t.repository_id = r.id JOIN manifests m ON m.id = t.manifest_id
      WHERE r.name = ? AND t.name = ?`),
    manifestBody: p(`SELECT body FROM manifests WHERE id = ?`).pluck(),
    insertManifest: p(`
      INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, body, created_at, untagged_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    insertManifestBlob: p(`INSERT OR IGNORE INTO manifest_blobs (manifest_id, digest) VALUES (?, ?)`),
    insertManifestChild: p(`INSERT OR IGNORE INTO manifest_children (manifest_id, repository_id, child_digest) VALUES (?, ?, ?)`),
    hasParent: p(`SELECT 1 FROM manifest_children WHERE repository_id = ? AND child_digest = ? LIMIT 1`),
    parentCount: p(`SELECT count(*) FROM manifest_children WHERE repository_id = ? AND child_digest = ?`).pluck(),
    manifestForStat: p(`
      SELECT m.id, m.digest, m.media_type, m.size, m.untagged_at FROM manifests m JOIN repositories r ON r.id = m.repository_id
      WHERE r.name = ? AND m.digest = ?`),
    renewManifest: p(`UPDATE manifests SET untagged_at = max(untagged_at, ?) WHERE id = ? AND untagged_at IS NOT NULL`),
    holdManifest: p(`UPDATE manifests SET untagged_at = NULL WHERE repository_id = ? AND digest = ?`),
    holdManifestById: p(`UPDATE manifests SET untagged_at = NULL WHERE id = ?`),
    releaseIfOrphan: p(`
      UPDATE manifests SET untagged_at = ? WHERE id = ? AND untagged_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM tags WHERE manifest_id = ?)
        AND NOT EXISTS (SELECT 1 FROM manifest_children c JOIN manifests m ON m.id = ?
                        WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest)`),
    // A referrer is a candidate as of its subject's deletion, whether or not it
    // was one before: GC's verdict must not depend on which of the two it
    // happened to look at first (in a wave they run side by side).
    releaseReferrers: p(`UPDATE manifests SET untagged_at = max(coalesce(untagged_at, @now), @now) WHERE repository_id = @repoId AND subject = @subject`),
    manifestBlobs: p(`SELECT digest FROM manifest_blobs WHERE manifest_id = ?`),
    manifestChildren: p(`SELECT child_digest FROM manifest_children WHERE manifest_id = ?`),
    deleteManifest: p(`DELETE FROM manifests WHERE id = ?`),
    tagTarget: p(`SELECT manifest_id FROM tags WHERE repository_id = ? AND name = ?`),
    tagTargetByName: p(`
      SELECT t.repository_id, t.manifest_id FROM tags t JOIN repositories r ON r.id = t.repository_id
      WHERE r.name = ? AND t.name = ?`),
    upsertTag: p(`
      INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (repository_id, name) DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at`),
    deleteTag: p(`DELETE FROM tags WHERE repository_id = ? AND name = ?`),
    tagNamesOfManifest: p(`SELECT name FROM tags WHERE manifest_id = ?`).pluck(),
    listTags: p(`
      SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
      WHERE r.name = ? AND t.name > ? ORDER BY t.name LIMIT ?`).pluck(),
    listRepositories: p(`SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?`).pluck(),
    listReferrers: p(`
      SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
      FROM manifests m JOIN repositories r ON r.id = m.repository_id
      WHERE r.name = ? AND m.subject = ? ORDER BY m.id`),

    // Keyset pages over manifests_untagged (untagged_at, then the rowid): the rest of
    // the last page's time, then later times; each starts at the candidates.
    manifestCandidatesAtTime: p(`
      SELECT r.name, m.digest, m.untagged_at, m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id
      WHERE m.untagged_at = ? AND m.id > ? ORDER BY m.id LIMIT ?`),
    manifestCandidatesAfterTime: p(`
      SELECT r.name, m.digest, m.untagged_at, m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id
      WHERE m.untagged_at IS NOT NULL AND m.untagged_at > ? AND m.untagged_at <= ? ORDER BY m.untagged_at, m.id LIMIT ?`),
    manifestForGc: p(`
      SELECT m.id, m.repository_id, m.digest, m.media_type, m.size, m.body, m.subject, m.untagged_at
      FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = ? AND m.digest = ?`),
    isTagged: p(`SELECT 1 FROM tags WHERE manifest_id = ? LIMIT 1`),
    // Keyset pages over gc_blob_queue_by_since, which holds (since, digest).
    blobCandidates: p(`
      SELECT digest, since FROM gc_blob_queue WHERE since <= ? AND (since, digest) > (?, ?) ORDER BY since, digest LIMIT ?`),
    // The link's own count of the manifests naming it (migration 11), through the
    // partial index of unreferenced links: a claim reads the links it may remove,
    // not the manifests using the blob nor the links they keep alive.
    deleteDanglingLinks: p(`DELETE FROM repository_blobs WHERE digest = @digest AND refs = 0 AND last_seen <= @cutoff`),
    blobForGc: p(`SELECT digest, size, storage_key, state, last_seen FROM blobs WHERE digest = ?`),
    isReferenced: p(`SELECT 1 FROM manifest_blobs WHERE digest = ? LIMIT 1`),
    newestLink: p(`SELECT max(last_seen) AS newest FROM repository_blobs WHERE digest = ?`),
    requeueBlob: p(`UPDATE gc_blob_queue SET since = ? WHERE digest = ?`),
    dequeueBlob: p(`DELETE FROM gc_blob_queue WHERE digest = ?`),
    markDeleting: p(`UPDATE blobs SET state = 1 WHERE digest = ? AND state = ${LIVE}`),
    deletingBlobs: p(`SELECT digest, size, storage_key, last_seen FROM blobs WHERE state = 1 LIMIT ?`),
    deleteDeletingBlob: p(`DELETE FROM blobs WHERE digest = ? AND storage_key = ? AND state = 1`),
    staleUploads: p(`SELECT id FROM uploads WHERE updated_at < ? ORDER BY updated_at LIMIT ?`),
    deleteEmptyRepositories: p(`
      DELETE FROM repositories AS r WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
        AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.repository_id = r.id)`),
    listBlobs: p(`SELECT digest, size, storage_key, last_seen FROM blobs WHERE digest > ? AND state = ${LIVE} ORDER BY digest LIMIT ?`),
    // A key that names its digest is the blob's own (primary key); any other is in
    // blobs_by_foreign_key, whose predicate (migration 12) this repeats word for word.
    storageKeyKnown: p(`
      SELECT 1 WHERE EXISTS (SELECT 1 FROM blobs WHERE digest = @digest AND storage_key = @key)
        OR EXISTS (SELECT 1 FROM blobs WHERE storage_key = @key
                   AND substr(storage_key, 1, length(digest) + 4) <> replace(digest, ':', '/' || substr(digest, instr(digest, ':') + 1, 2) || '/') || '.')
        OR EXISTS (SELECT 1 FROM uploads WHERE committing_key = @key)`),
    recordCandidate: p(`
      INSERT INTO fsck_candidates (key, first_seen, last_seen) VALUES (?, ?, ?)
      ON CONFLICT (key) DO UPDATE SET last_seen = excluded.last_seen RETURNING first_seen`),
    dropCandidate: p(`DELETE FROM fsck_candidates WHERE key = ?`),
    pruneCandidates: p(`DELETE FROM fsck_candidates WHERE last_seen < ?`),
    forgetBlob: p(`DELETE FROM blobs WHERE digest = ? AND storage_key = ?`),
    deleteLinks: p(`DELETE FROM repository_blobs WHERE digest = ?`),
    quotaNamespaceNames: p(`SELECT name FROM quota_namespaces`).pluck(),
    deleteQuotaNamespace: p(`DELETE FROM quota_namespaces WHERE name = ?`),
    insertQuotaNamespace: p(`INSERT OR IGNORE INTO quota_namespaces (name) VALUES (?)`),
    insertQuotaMember: p(`INSERT OR IGNORE INTO quota_members (repository_id, namespace) VALUES (?, ?)`),
    insertQuotaMemberByName: p(`INSERT OR IGNORE INTO quota_members (repository_id, namespace) SELECT id, ? FROM repositories WHERE name = ?`),
    repositoryHasLinks: p(`SELECT 1 FROM repository_blobs WHERE repository_id = ? LIMIT 1`),
    quotaBytes: p(`SELECT bytes FROM quota_namespaces WHERE name = ?`).pluck(),
    quotaUsage: p(`SELECT name, bytes FROM quota_namespaces ORDER BY name`),
    clearQuotaBlobs: p(`DELETE FROM quota_blobs WHERE namespace = ?`),
    fillQuotaBlobs: p(`
      INSERT INTO quota_blobs (namespace, digest, size, links)
      SELECT m.namespace, l.digest, b.size, count(*) FROM quota_members m
      JOIN repository_blobs l ON l.repository_id = m.repository_id JOIN blobs b ON b.digest = l.digest
      WHERE m.namespace = ? GROUP BY m.namespace, l.digest, b.size`),
    sumQuotaBlobs: p(`UPDATE quota_namespaces SET bytes = (SELECT coalesce(sum(size), 0) FROM quota_blobs WHERE namespace = ?) WHERE name = ?`),
    retentionTags: p(`
      SELECT t.repository_id, t.name, t.manifest_id, t.updated_at, m.digest, m.subject, tp.pulled_at
      FROM repositories r JOIN tags t ON t.repository_id = r.id JOIN manifests m ON m.id = t.manifest_id
      LEFT JOIN tag_pulls tp ON tp.repository_id = t.repository_id AND tp.tag = t.name
      WHERE r.name = ? ORDER BY t.name`),
    retentionTag: p(`
      SELECT t.repository_id, t.name, t.manifest_id, t.updated_at, m.digest, m.subject, tp.pulled_at
      FROM repositories r JOIN tags t ON t.repository_id = r.id JOIN manifests m ON m.id = t.manifest_id
      LEFT JOIN tag_pulls tp ON tp.repository_id = t.repository_id AND tp.tag = t.name
      WHERE r.name = ? AND t.name = ?`),
    deleteTagPull: p(`DELETE FROM tag_pulls WHERE repository_id = ? AND tag = ?`),
    recordPull: p(`
      INSERT INTO tag_pulls (repository_id, tag, pulled_at) SELECT r.id, t.name, ? FROM repositories r
      JOIN tags t ON t.repository_id = r.id WHERE r.name = ? AND t.name = ?
      ON CONFLICT (repository_id, tag) DO UPDATE SET pulled_at = max(pulled_at, excluded.pulled_at)`),
    recordRun: p(`
      INSERT INTO lifecycle_runs (kind, trigger, started_at, duration_ms, manifests_deleted, blobs_deleted,
        bytes_reclaimed, uploads_purged, problems) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    // The run just inserted (by recordRun, in the same transaction) added to its kind's totals.
    addRunTotals: p(`
      INSERT INTO lifecycle_totals (kind, runs, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems, duration_ms, last_run_at)
      SELECT kind, 1, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems, duration_ms, started_at
      FROM lifecycle_runs WHERE id = last_insert_rowid()
      ON CONFLICT (kind) DO UPDATE SET runs = runs + 1,
        manifests_deleted = manifests_deleted + excluded.manifests_deleted, blobs_deleted = blobs_deleted + excluded.blobs_deleted,
        bytes_reclaimed = bytes_reclaimed + excluded.bytes_reclaimed, uploads_purged = uploads_purged + excluded.uploads_purged,
        problems = problems + excluded.problems, duration_ms = duration_ms + excluded.duration_ms,
        last_run_at = max(last_run_at, excluded.last_run_at)`),
    // Keeps the newest ? runs: the bound is found by walking that many keys back from the newest.
    pruneRuns: p(`DELETE FROM lifecycle_runs WHERE id <= (SELECT id FROM lifecycle_runs ORDER BY id DESC LIMIT 1 OFFSET ?)`),
    runTotals: p(`
      SELECT kind, runs, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems, duration_ms, last_run_at
      FROM lifecycle_totals ORDER BY kind`),
  };
}
