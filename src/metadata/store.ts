/**
 * The MetadataStore port: the single source of truth for what Berth holds
 * (consistency contract, invariant 1). Every method is one atomic operation;
 * the checks an operation depends on run in the same transaction as its
 * writes, so concurrent requests, GC runs and other processes cannot
 * interleave between a check and the change it guards.
 *
 * Times are milliseconds since the epoch, passed in by the caller so that
 * tests and GC can reason about grace periods deterministically. A store
 * shared by several nodes stamps the times that grace periods compare with
 * its own clock instead (invariant 10: one clock), and `now()` tells callers
 * that clock.
 */

export interface BlobRecord {
  digest: string;
  size: number;
  /** Where the bytes are in the BlobStore: unique per upload, so GC only removes what it owns. */
  storageKey: string;
  /** Last time the blob was uploaded, mounted or answered "exists" (grace period start). */
  lastSeen: number;
}

export interface UploadRecord {
  id: string;
  repository: string;
  /** Bytes received and acknowledged so far. */
  offset: number;
  createdAt: number;
  updatedAt: number;
  /**
   * The running digest's state after `offset` bytes, saved by stores that
   * cannot read an upload's bytes back (S3 multipart parts), so another
   * process or node can continue the upload.
   */
  hashState?: Buffer;
  /** Who opened the session, with auth on ('' for anonymous); undefined for sessions opened without auth. */
  owner?: string;
  /**
   * Set once a commit has claimed the upload (invariant 9): the storage key
   * that commit is writing. A claimed upload takes no more bytes and no
   * other commit; it ends with its commit, a cancel, or upload expiry.
   */
  committingKey?: string;
}

/** The principal an upload session is opened for, and the most open sessions it may have (0: no limit). */
export interface UploadOwner {
  name: string;
  maxSessions: number;
}

export interface ManifestRecord {
  digest: string;
  mediaType: string;
  size: number;
  body: Buffer;
}

export interface NewManifest extends ManifestRecord {
  artifactType?: string;
  subject?: string;
  annotations?: Record<string, string>;
  /** Blobs (config, layers) that must be present in the repository. */
  blobs: string[];
  /** Child manifests (of an index) that must be present in the repository. */
  children: string[];
}

export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface Page {
  items: string[];
  /** True when more items follow the last one returned. */
  more: boolean;
}

/**
 * Policy decisions (policy/) a write applies inside its transaction, where
 * they cannot race the change they guard. Absent: no policy applies.
 */
export interface WriteGuard {
  /**
   * The error that refuses moving an existing tag to another manifest, or
   * deleting it (directly, or with the manifest it points at); undefined
   * when the tag may change.
   */
  refuseTagChange?(tag: string, action: 'move' | 'delete'): Error | undefined;
  /**
   * Storage quotas of the namespaces the repository belongs to. A write that
   * links a blob (commitBlob, mountBlob) joins the repository to them, and
   * is refused with `refuse(usage before, bytes added)` when it would take a
   * namespace's usage over its limit; putManifest is refused while one is
   * over (a quota lowered below its usage). Checked after the link, in its
   * transaction, so concurrent pushes cannot both squeeze under a limit.
   */
  quotas?: QuotaCheck[];
}

export interface QuotaCheck {
  namespace: string;
  limit: number;
  refuse(usage: number, adding: number): Error;
}

/** A quota namespace and the repositories it holds (by name) as of now. */
export interface QuotaNamespace {
  name: string;
  repositories: string[];
}

export interface RetentionTag {
  tag: string;
  digest: string;
  /** When the tag was last pushed (pointed at its manifest). */
  pushedAt: number;
  /** When it was last pulled (as recorded), or undefined. */
  pulledAt?: number;
  /** The subject of the tagged manifest, if it has one. */
  subject?: string;
}

export interface TagPull {
  repository: string;
  tag: string;
  at: number;
}

export interface QuotaUsage {
  namespace: string;
  /** Bytes of the distinct blobs linked in the namespace's repositories. */
  bytes: number;
}

export type CommitBlobResult =
  | { outcome: 'already-present' }
  /** `replacedKey`: the object of a blob GC was deleting, which this one replaced; the caller removes it. */
  | { outcome: 'stored'; replacedKey?: string };

export interface MetadataStore {
  // Blobs --------------------------------------------------------------------
  /** A live blob linked to the repository, or undefined. */
  findBlob(repository: string, digest: string): Promise<BlobRecord | undefined>;
  /** A live blob in any repository (for mounts without `from`). */
  findAnyBlob(digest: string): Promise<BlobRecord | undefined>;
  /**
   * HEAD/GET of a blob: the live blob linked to the repository, or undefined.
   * Answering "it exists" is a promise (invariant 5): the blob's grace period
   * and that repository link's are renewed in the same atomic operation that
   * checks the blob is still live, so a GC claim committed after the check
   * cannot make the answer a lie. A blob and link renewed less than
   * `touchInterval` ago may be answered from a read (GC's cutoff leaves that
   * much slack, see collector.ts).
   */
  statBlob(repository: string, digest: string, now: number, touchInterval: number): Promise<BlobRecord | undefined>;
  /**
   * Links a live blob into `repository` (a cross-repository mount). Fails
   * (returns false) when the blob is not live in `from` (or anywhere, when
   * `from` is undefined). Renews the blob's grace period and that of its
   * link into `repository`, atomically with the check (invariant 5).
   */
  mountBlob(repository: string, digest: string, from: string | undefined, now: number, ev?: EventContext, guard?: WriteGuard): Promise<BlobRecord | undefined>;
  /**
   * Up to `limit` repositories the live blob is linked to, in no particular
   * order (none when it is not live): the candidate sources of a mount
   * without `from` when the caller may pull only some repositories.
   */
  blobRepositories(digest: string, limit: number): Promise<string[]>;
  /**
   * Removes the repository's link to the blob; false when there was none.
   * Refused (DENIED, 409) while a manifest of the repository references the
   * blob: what a manifest references stays whole.
   */
  unlinkBlob(repository: string, digest: string, ev?: EventContext): Promise<boolean>;

  // Uploads ------------------------------------------------------------------
  /**
   * Records a new upload session. With an owner, the session is bound to it,
   * and is not created (false) when the owner already has `maxSessions` open.
   */
  createUpload(id: string, repository: string, now: number, owner?: UploadOwner): Promise<boolean>;
  findUpload(id: string): Promise<UploadRecord | undefined>;
  /** Compare-and-set of the upload's offset (and hash state); false when it was not at `from`. */
  advanceUpload(id: string, from: number, to: number, now: number, hashState?: Buffer): Promise<boolean>;
  deleteUpload(id: string): Promise<boolean>;
  /**
   * Claims an upload for its one commit before storage is touched
   * (invariant 9): true for the one caller that finds it unclaimed at
   * `offset`; false when it is gone, claimed, or has moved. Records the key
   * the commit will write, so that fsck knows it (and never takes it for an
   * orphan), and renews the upload, which expires like an abandoned one if
   * its committer dies.
   */
  claimUpload(id: string, offset: number, storageKey: string, now: number): Promise<boolean>;
  /**
   * Records an upload that is claimed from the start: a body that arrives
   * whole (`POST ?digest=`) gets the same protection as a session's commit.
   */
  createClaimedUpload(id: string, repository: string, storageKey: string, now: number): Promise<void>;
  /**
   * Ends an upload by recording its bytes as a blob in the repository. When
   * the digest is already live, the existing blob is linked instead and the
   * caller discards its copy ('already-present'). A blob that GC is deleting
   * is replaced by this one (invariant 3: GC only removes the object it owns);
   * the replaced object is then the caller's to remove, since the record
   * that named it for GC is gone.
   */
  commitBlob(uploadId: string | undefined, repository: string, blob: Omit<BlobRecord, 'lastSeen'>, now: number, ev?: EventContext, guard?: WriteGuard): Promise<CommitBlobResult>;

  // Manifests and tags -------------------------------------------------------
  findManifestByDigest(repository: string, digest: string): Promise<ManifestRecord | undefined>;
  findManifestByTag(repository: string, tag: string): Promise<ManifestRecord | undefined>;
  /**
   * HEAD/GET of a manifest by digest. Like statBlob, answering renews the
   * grace period of an untagged manifest (one no tag or index holds) in the
   * operation that checks it is still there, at most once per `touchInterval`,
   * so an index pushed after this answer can still reference it (invariant 5).
   */
  statManifest(repository: string, digest: string, now: number, touchInterval: number): Promise<ManifestRecord | undefined>;
  /**
   * Stores the manifest (and points the tag at it), after checking in the
   * same transaction that every referenced blob and child manifest is
   * present: MANIFEST_BLOB_UNKNOWN otherwise (invariant 2). Pushing a
   * manifest that is already there renews its grace period, like a new one.
   * Moving an existing tag is refused with the guard's error when it says so.
   */
  putManifest(repository: string, manifest: NewManifest, tag: string | undefined, now: number, ev?: EventContext, guard?: WriteGuard): Promise<void>;
  /**
   * Deletes a manifest and every tag pointing at it; false when unknown.
   * Refused (DENIED, 409) while an index of the repository references it,
   * and with the guard's error when it refuses deleting one of those tags.
   */
  deleteManifest(repository: string, digest: string, now: number, ev?: EventContext, guard?: WriteGuard): Promise<boolean>;
  /** Deletes a tag; false when unknown. Refused with the guard's error when it says so. */
  deleteTag(repository: string, tag: string, now: number, ev?: EventContext, guard?: WriteGuard): Promise<boolean>;
  repositoryExists(repository: string): Promise<boolean>;
  /**
   * A value that changes whenever the repository's tags change (and differs
   * for a repository deleted and created again); undefined for an unknown one.
   */
  tagsVersion(repository: string): Promise<string | undefined>;
  /** Tags in lexical (byte) order, strictly after `last`, at most `limit`. */
  listTags(repository: string, last: string | undefined, limit: number): Promise<Page>;
  listRepositories(last: string | undefined, limit: number): Promise<Page>;
  listReferrers(repository: string, subject: string, artifactType: string | undefined): Promise<ReferrerDescriptor[]>;

  // Lifecycle (GC and fsck) --------------------------------------------------
  // Each method re-validates its condition in the transaction that acts on it,
  // so any number of collectors, in any processes, can run at once.

  /**
   * Manifests without tag or parent since at most `cutoff`, in candidate
   * order, after `after` (the last one of the previous page): a pass pages
   * through the candidates once, so one it leaves in place (skipped, or
   * kept) is not listed to it again, and each page starts where the last
   * ended, at the candidates, whatever the registry holds.
   */
  listManifestCandidates(cutoff: number, limit: number, after?: ManifestCandidate): Promise<ManifestCandidate[]>;
  /**
   * Deletes the manifest if it is still garbage: no tag, no parent index, no
   * live subject, and a candidate since at most `cutoff`. Its blobs become
   * blob candidates; its children and referrers become manifest candidates,
   * as of `now`, which is a time from this store's `now()` (GC's pass time).
   */
  deleteManifestIfGarbage(ref: ManifestRef, cutoff: number, now: number): Promise<ManifestRecord | undefined>;
  /**
   * Blobs whose liveness may have changed at or before `cutoff`, in queue
   * order, after `after` (the last one of the previous page): like
   * listManifestCandidates, one pass visits each queued blob at most once.
   */
  listBlobCandidates(cutoff: number, limit: number, after?: BlobCandidate): Promise<BlobCandidate[]>;
  /**
   * Removes the blob's repository links that no manifest of their repository
   * references and that were last seen at or before `cutoff`; then, if
   * nothing links or references the blob and it was last seen at or before
   * `cutoff`, marks it as being deleted and returns it (invariant 2).
   */
  claimBlobIfGarbage(digest: string, cutoff: number): Promise<{ blob?: BlobRecord; linksRemoved: number }>;
  /** Blobs marked as being deleted (by this or a crashed collector). */
  listDeletingBlobs(limit: number): Promise<BlobRecord[]>;
  /** Forgets a blob being deleted once its bytes are gone, unless an upload has since replaced it. */
  finishBlobDeletion(digest: string, storageKey: string): Promise<void>;
  /** Deletes upload sessions idle since before `cutoff`; returns their ids. */
  expireUploads(cutoff: number, limit: number): Promise<string[]>;
  /** Deletes repositories left with no manifest, tag or blob. */
  deleteEmptyRepositories(): Promise<number>;

  /** Live blobs in digest order after `after` (fsck). */
  listBlobs(after: string, limit: number): Promise<BlobRecord[]>;
  /**
   * Whether metadata names `key`: a blob in any state has its bytes there,
   * or a commit has claimed it (fsck: is an object known?). One statement,
   * so a commit moving the name from its upload to its blob is seen once.
   */
  storageKeyKnown(key: string): Promise<boolean>;
  /**
   * fsck's first look at an object no metadata names: records it as an
   * orphan candidate seen at `now` (keeping the first time it was seen) and
   * returns that first time. An object is removed only when a later run,
   * at least fsck's minimum age after the first, still finds it unknown.
   */
  recordOrphanCandidate(key: string, now: number): Promise<number>;
  /** Forgets one orphan candidate (removed). */
  dropOrphanCandidate(key: string): Promise<void>;
  /** Forgets candidates a complete run did not see again before `seenBefore` (known again, or gone). */
  pruneOrphanCandidates(seenBefore: number): Promise<void>;
  /** Whether an upload session exists (fsck: is an upload object known?). */
  uploadExists(id: string): Promise<boolean>;
  /**
   * Makes a blob whose bytes are missing unknown: its record and links go,
   * so clients are told to upload it again (invariant 7).
   */
  forgetBlob(digest: string, storageKey: string): Promise<boolean>;

  // Quotas -------------------------------------------------------------------
  /**
   * Makes the quota namespaces exactly these: creates the new ones, adds the
   * given repositories to them (members are never removed here: a
   * repository created by a push meanwhile joins on its own), recounts the
   * usage of each one that is new or gained repositories (the others are
   * kept exact by every link and unlink: a start does no work per image), and
   * drops namespaces not listed.
   */
  syncQuotaNamespaces(namespaces: QuotaNamespace[]): Promise<void>;
  quotaUsage(): Promise<QuotaUsage[]>;

  // Retention ----------------------------------------------------------------
  /** Every tag of the repository, with what retention decides on. */
  listRetentionTags(repository: string): Promise<RetentionTag[]>;
  /**
   * Deletes the tag only if it is still exactly as `seen` (same manifest,
   * not pushed or pulled since): a decision taken before a concurrent push
   * or tag never removes what that push made. Refused like deleteTag by the
   * guard. False when the tag changed or is gone.
   */
  deleteTagIfUnchanged(repository: string, seen: RetentionTag, now: number, guard?: WriteGuard): Promise<boolean>;
  /** Records pull times by tag (in batches: one write for many pulls); a time never moves back. */
  recordTagPulls(pulls: TagPull[]): Promise<void>;

  /**
   * Records the run and adds it to its kind's totals in one transaction;
   * prunes the history to the newest KEPT_RUNS runs.
   */
  recordRun(run: LifecycleRun): Promise<void>;
  /**
   * What fsck found and did not repair, as one `fsck.drift` event each,
   * written in one transaction (durable, like every event but pulls: fsck
   * may run as its own process, and a serving node delivers them later).
   * Nothing without an outbox.
   */
  recordFsckDrift(drift: FsckDrift[]): Promise<void>;

  // Event outbox (events/) ----------------------------------------------------
  // With an outbox configured (the store's `outbox` option), the methods that
  // change state above write their events in the same transaction as the
  // change: neither can exist without the other. Without one they write none.

  /** Events that change nothing (pulls): written on their own, not durably. */
  appendEvents(events: OutboxEvent[]): Promise<void>;
  /**
   * Takes the endpoint's delivery lease and returns its oldest pending events
   * (at most `limit`), or undefined when another owner holds a live lease or
   * the endpoint is backing off until after `now`. Events older than `maxAge`
   * ms, or beyond the newest `maxCount`, are dead-lettered first.
   */
  claimEvents(endpoint: string, owner: string, now: number, claim: EventClaim): Promise<OutboxRow[] | undefined>;
  /** Delivered: the events are removed and the lease released. */
  ackEvents(endpoint: string, owner: string, seqs: number[]): Promise<void>;
  /** Not delivered: the endpoint backs off until `retryAt`; the events stay pending, in order. */
  failEvents(endpoint: string, owner: string, seqs: number[], retryAt: number, error: string): Promise<void>;
  /** Pending, failing and dead-lettered events per endpoint. */
  eventStats(now: number): Promise<EndpointEventStats[]>;
  /** Moves the endpoint's dead-lettered events back to pending; returns how many. */
  replayEvents(endpoint: string, now: number): Promise<number>;
  runTotals(): Promise<LifecycleTotals[]>;

  /**
   * Runs `fn` against a view of the store, as one consistent state, whose
   * changes are all discarded at the end: how `gc --dry-run` computes
   * exactly what a real run would do. The view answers GC's questions and
   * takes its decisions (GcView); it never stalls the live store's writers.
   */
  dryRun<T>(fn: (view: GcView) => Promise<T>): Promise<T>;

  /**
   * The store's clock, ms since the epoch: the database server's for a store
   * several nodes share (invariant 10). GC takes its cutoffs from it.
   */
  now(): Promise<number>;
  // Console queries (read-only; src/console/) ---------------------------------

  /** Every repository with its counts, sizes and last push, by name. */
  repositorySummaries(): Promise<RepositorySummary[]>;
  /** Tags with their manifests, in lexical (byte) order strictly after `last`, at most `limit`. */
  listTagDetails(repository: string, last: string | undefined, limit: number): Promise<{ items: TagDetail[]; more: boolean }>;
  /** The tags pointing at a manifest and the indexes of its repository that contain it. */
  manifestUsage(repository: string, digest: string): Promise<ManifestUsage>;
  /** What the registry holds in all: blobs, garbage awaiting GC, uploads in flight. */
  storageTotals(): Promise<StorageTotals>;
  /** The latest GC and fsck runs, newest first (at most KEPT_RUNS are kept). */
  listRuns(limit: number): Promise<LifecycleRunRecord[]>;
  /**
   * Adds pull counts, batched by the caller (one call per flush, not per
   * pull). Best effort: counts of a manifest deleted meanwhile are dropped.
   */
  recordPulls(pulls: PullCount[]): Promise<void>;
  /** The pull counts of these manifests of the repository (those pulled at least once). */
  pullCounts(repository: string, digests: string[]): Promise<PullCount[]>;

  close(): Promise<void>;
}

/** What one GC pass reads and decides with: the live store, or a dry run's view of it (dryRun). */
export type GcView = Pick<
  MetadataStore,
  | 'listRepositories'
  | 'listRetentionTags'
  | 'deleteTagIfUnchanged'
  | 'listManifestCandidates'
  | 'deleteManifestIfGarbage'
  | 'listBlobCandidates'
  | 'claimBlobIfGarbage'
  | 'expireUploads'
  | 'deleteEmptyRepositories'
>;

export interface ManifestRef {
  repository: string;
  digest: string;
}

/** A manifest GC may collect, with its place in the candidate order (when it became one, then its row). */
export interface ManifestCandidate extends ManifestRef {
  since: number;
  id: number;
}

/** A blob in GC's queue, with its place in the queue order (when its liveness may have changed, then digest). */
export interface BlobCandidate {
  digest: string;
  since: number;
}

export interface LifecycleRun {
  kind: 'gc' | 'fsck';
  trigger: 'background' | 'admin' | 'cli';
  startedAt: number;
  durationMs: number;
  manifestsDeleted: number;
  blobsDeleted: number;
  bytesReclaimed: number;
  uploadsPurged: number;
  problems: number;
}

/**
 * How many runs recordRun keeps in the history: the background GC records
 * one every 10 minutes per node, so an unbounded history grows with the
 * registry's age (issue 18). The console lists only the newest runs, and the
 * totals /metrics reads live in their own rows (runTotals), kept forever.
 */
export const KEPT_RUNS = 1000;

/** Every run of one kind, ever (not only the runs kept in the history). */
export interface LifecycleTotals {
  kind: string;
  runs: number;
  manifestsDeleted: number;
  blobsDeleted: number;
  bytesReclaimed: number;
  uploadsPurged: number;
  problems: number;
  durationMs: number;
  lastRunAt: number;
}

/** Who caused a change, as the events it writes report it (passed from http/ through registry/). */
export interface EventContext {
  request?: { id: string; addr: string; host: string; method: string; useragent: string };
  /** The authenticated user, with auth on. */
  actor?: string;
  /** `http://host` or `https://host`: the base of the `url` of event targets. */
  base?: string;
}

/** What one event reports (the target of the reference registry's envelope, plus its request). */
/** A problem fsck found: its kind (missing, corrupt, size-mismatch, orphan-blob, orphan-upload) and the blob it is about. */
export interface FsckDrift {
  problem: string;
  digest?: string;
  size?: number;
}

export interface OutboxEvent {
  action: string;
  repository: string;
  digest?: string;
  mediaType?: string;
  size?: number;
  tag?: string;
  fromRepository?: string;
  references?: { mediaType: string; digest: string; size: number }[];
  /** 'blob' or 'manifest': how the target's url is built. */
  kind?: 'blob' | 'manifest';
  /** fsck.drift: what fsck found (FsckDrift.problem). */
  problem?: string;
  ctx?: EventContext;
}

/** A pending event of one endpoint, as the dispatcher delivers it. */
export interface OutboxRow {
  seq: number;
  /** Stable across retries and endpoints: receivers de-duplicate on it. */
  id: string;
  createdAt: number;
  attempts: number;
  event: OutboxEvent;
}

export interface EventClaim {
  limit: number;
  /** How long the lease holds before another node may take over (a crash mid-delivery). */
  leaseMs: number;
  maxAge: number;
  maxCount: number;
}

export interface EndpointEventStats {
  endpoint: string;
  pending: number;
  deadLettered: number;
  /** Consecutive failed deliveries (0 when the last one succeeded). */
  failures: number;
  lastError?: string;
  retryAt?: number;
  oldestPending?: number;
}

export interface RepositorySummary {
  name: string;
  tags: number;
  manifests: number;
  /** Live blobs linked to the repository, each counted once however many manifests share it. */
  bytes: number;
  /** The part of `bytes` no other repository links: what deleting the repository would reclaim. */
  uniqueBytes: number;
  /** When a manifest was last pushed to the repository (ms; deleted ones count too); its creation when none was. Moving a tag to an existing manifest is not a push. */
  lastPush: number;
}

export interface TagDetail {
  tag: string;
  /** When the tag last moved (ms). */
  updatedAt: number;
  manifest: ManifestRecord & { artifactType?: string; createdAt: number };
}

export interface ManifestUsage {
  tags: string[];
  /** Digests of the indexes (in the same repository) that list the manifest. */
  parents: string[];
}

export interface StorageTotals {
  blobs: number;
  bytes: number;
  /** Live blobs no repository links any more: GC removes them once their grace period has passed. */
  unlinkedBlobs: number;
  unlinkedBytes: number;
  /** Blobs GC has marked and is deleting. */
  deletingBlobs: number;
  /** Blobs whose liveness GC will check again. */
  queuedBlobs: number;
  /** Manifests without tag or parent index: GC candidates. */
  untaggedManifests: number;
  uploads: number;
  uploadBytes: number;
}

export interface LifecycleRunRecord extends LifecycleRun {
  id: number;
}

export interface PullCount {
  repository: string;
  digest: string;
  count: number;
  /** ms */
  lastPulled: number;
}
