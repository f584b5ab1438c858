/**
 * The scale-out MetadataStore: PostgreSQL, shared by any number of Berth
 * processes on any number of nodes. Same observable semantics as the SQLite
 * store (the shared suite in test/metadata/ holds both to it).
 *
 * Locking strategy (READ COMMITTED + explicit row locks, not SERIALIZABLE):
 * SQLite gets atomicity for free because it serializes writers; PostgreSQL
 * runs transactions side by side, and in READ COMMITTED each statement sees
 * what was committed when it started. So every check an operation acts on is
 * made *after* taking the row lock that its rival must take too, in a
 * statement that starts after the lock was granted (a fresh snapshot):
 *
 * - Blob rows are the meeting point of pushes and GC (invariant 2).
 *   putManifest locks every referenced blob `FOR SHARE` (ordered by digest)
 *   and only then checks state and links; claimBlobIfGarbage locks the blob
 *   `FOR UPDATE` before it looks for references. Whichever comes second sees
 *   the first one's commit: the claim sees the new manifest's references and
 *   keeps the blob, or the push sees the blob marked deleting and answers
 *   MANIFEST_BLOB_UNKNOWN. Never both. commitBlob and mountBlob lock the blob
 *   row as well (invariant 3, and mounts renew the grace period under lock),
 *   and so do a HEAD's renewal (liveness re-checked under the lock,
 *   invariant 5) and unlinkBlob (it waits for a manifest push holding the
 *   row shared, then counts that push's references).
 * - GC never waits: its claims take the queue row, the blob row and dangling
 *   links with `SKIP LOCKED`, and manifest deletions and upload expiry do
 *   too. A row some request (or another node's collector) is working on is
 *   simply left for a later pass, so collectors on many nodes split the work
 *   instead of queueing behind each other or behind pushes.
 * - Manifests: putManifest locks its child manifests and its own row
 *   (`FOR NO KEY UPDATE`), GC locks the manifest `FOR UPDATE` before checking
 *   tags, parents and subject; a push that loses the race re-inserts the
 *   manifest (its blobs are still held by its share locks).
 * - Repositories: writers lock the repository row `FOR KEY SHARE`
 *   (ensureRepository); deleteEmptyRepositories locks candidates
 *   `FOR UPDATE SKIP LOCKED` and re-checks emptiness in a later statement.
 * - Tags: a tag is read `FOR UPDATE` and then updated, or inserted with
 *   `ON CONFLICT DO NOTHING` and retried: no lost update, and the previous
 *   target is known exactly. A trigger bumps tags_version on every change.
 * - Upload offsets: `UPDATE ... WHERE offset = $from` is a compare-and-set,
 *   since PostgreSQL re-checks the condition on the newest row version.
 *
 * SERIALIZABLE would give the same guarantees with less thought, but turns
 * ordinary contention (many pushes sharing base layers) into aborted
 * transactions that all need retrying; explicit locks make only the true
 * conflicts wait. The remaining lock-order cycles are rare and harmless to
 * retry: a transaction that dies with a deadlock (40P01) or serialization
 * failure (40001) is run again from the start (each operation is a closed
 * transaction with no side effects outside the database).
 *
 * Hot reads (findBlob, findAnyBlob, findManifestByTag/Digest, tagsVersion)
 * are single statements over the pool, as named prepared statements: one
 * round trip each.
 */
import pg from 'pg';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { systemNow } from '../../clock.js';
import { digestOfKey } from '../../storage/blob-store.js';
import { pausePoint } from '../../pause-points.js';
import { RegistryError } from '../../registry/errors.js';
import type {
  BlobRecord,
  CommitBlobResult,
  FsckDrift,
  LifecycleRun,
  LifecycleTotals,
  ManifestRecord,
  ManifestRef,
  ManifestCandidate,
  BlobCandidate,
  GcView,
  MetadataStore,
  NewManifest,
  Page,
  ReferrerDescriptor,
  UploadOwner,
  UploadRecord,
  EventContext,
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
import * as outbox from './outbox.js';
import { blobRecheckAt, manifestDue, stillReferencedError, tagUnchanged, unknownBlobsError, unknownChildrenError } from '../decisions.js';
import { manifestValues, page, runValues, toBlob, toBlobCandidate, toManifest, toManifestCandidate, toReferrers, toRunTotals, toRetentionTag, toUpload, type Row } from '../records.js';
import { migrate, schemaStatus, SchemaTooNewError, LATEST_VERSION } from './migrations.js';
import { redactUrl } from './url.js';
import { CONSOLE_SQL } from './console-queries.js';
import { toPullCount, toRepositorySummary, toRun, toStorageTotals, toTagDetail } from '../records.js';
import type { LifecycleRunRecord, ManifestUsage, PullCount, RepositorySummary, StorageTotals, TagDetail } from '../store.js';

const LIVE = 0;
const DELETING = 1;
/** What the reference registry reports as a blob's media type. */
const BLOB_MEDIA_TYPE = 'application/octet-stream';

export interface PostgresStoreOptions {
  /** Connections in the pool (default 10, or `?pool=N` in the URL). */
  poolSize?: number;
  /** Apply pending migrations at open (default true); a newer schema is refused either way. */
  migrate?: boolean;
  /**
   * Whose clock stamps the times grace periods compare: 'database' (the
   * default: the server's, one clock for every node, invariant 10) or
   * 'caller' (the `now` arguments, for the shared contract suite, which
   * reasons about fixed times).
   */
  clock?: Clock;
  /** Endpoints events are written for (src/events/); none: no event rows at all. */
  outbox?: OutboxOptions;
}

export type Clock = 'database' | 'caller';

export { redactUrl };

/** Connection failures name the database (password hidden); schema errors pass through as they are. */
export function describeConnectError(e: unknown, url: string): unknown {
  const code = (e as { code?: string }).code;
  if (e instanceof SchemaTooNewError || !(e instanceof Error)) return e;
  if (code === undefined || /^(E[A-Z]+|28|3D)/.test(code)) {
    const error = new Error(`cannot open the metadata store at ${redactUrl(url)}: ${e.message}`, { cause: e });
    error.name = 'MetadataUnavailableError';
    return error;
  }
  return e;
}

/** int8 as a JS number (times, sizes, ids: all far below 2^53), for this pool only. */
const INT8 = 20;
const typeParsers = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8 && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as never,
};

/** Splits `?pool=N` off the URL (pg does not know it) and builds a pool. */
export function createPool(url: string, poolSize?: number): pg.Pool {
  const u = new URL(url);
  const fromUrl = u.searchParams.get('pool');
  u.searchParams.delete('pool');
  const max = poolSize ?? (fromUrl !== null ? Number(fromUrl) : 10);
  if (!Number.isInteger(max) || max < 1) throw new Error(`invalid pool size "${fromUrl}" in metadata URL`);
  const pool = new pg.Pool({ connectionString: u.toString(), max, types: typeParsers, application_name: 'berth' });
  // An idle client losing its connection (server restart) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

// --- SQL ---------------------------------------------------------------------
// Every statement has a name: pg prepares it once per connection and then
// sends only Bind/Execute, so a single-statement read is one round trip.

/**
 * The database server's clock, ms since the epoch. Times that grace periods
 * compare (last_seen, untagged_at, the GC queue's since, an upload's
 * updated_at) are written as `coalesce($n, DB_NOW)`: with the database clock
 * the store sends NULL for $n (see STAMPS), so no node's own clock, ahead or
 * behind, can shorten a grace period (invariant 10). clock_timestamp(), not
 * now(): a transaction that waited for a lock stamps when it acts.
 */
const DB_NOW = `(extract(epoch from clock_timestamp()) * 1000)::bigint`;

export const SQL = {
  findBlobInRepo: `
    SELECT b.digest, b.size, b.storage_key, b.last_seen
    FROM repositories r
    JOIN repository_blobs l ON l.repository_id = r.id
    JOIN blobs b ON b.digest = l.digest
    WHERE r.name = $1 AND l.digest = $2 AND b.state = ${LIVE}`,
  findBlob: `SELECT digest, size, storage_key, last_seen FROM blobs WHERE digest = $1 AND state = ${LIVE}`,
  touchBlob: `UPDATE blobs SET last_seen = coalesce($1::bigint, ${DB_NOW}) WHERE digest = $2 AND state = ${LIVE}`,
  statBlob: `
    SELECT b.digest, b.size, b.storage_key, b.last_seen,
      least(b.last_seen, l.last_seen) > coalesce($3::bigint, ${DB_NOW}) - $4::bigint AS fresh
    FROM repositories r
    JOIN repository_blobs l ON l.repository_id = r.id
    JOIN blobs b ON b.digest = l.digest
    WHERE r.name = $1 AND l.digest = $2 AND b.state = ${LIVE}`,
  // One statement: lock the live blob (a claim's FOR UPDATE conflicts, and
  // its commit is re-checked: marked deleting = no row), renew the link
  // (one a claim has removed since is skipped: no row), then the blob.
  // Blob before link, the order every writer takes them in.
  renewBlobInRepo: `
    WITH hit AS (
      SELECT b.digest, l.repository_id
      FROM repositories r
      JOIN repository_blobs l ON l.repository_id = r.id
      JOIN blobs b ON b.digest = l.digest
      WHERE r.name = $1 AND l.digest = $2 AND b.state = ${LIVE}
      FOR NO KEY UPDATE OF b),
    link AS (
      UPDATE repository_blobs l SET last_seen = greatest(l.last_seen, coalesce($3::bigint, ${DB_NOW}))
      FROM hit WHERE l.repository_id = hit.repository_id AND l.digest = hit.digest
      RETURNING l.digest)
    UPDATE blobs b SET last_seen = greatest(b.last_seen, coalesce($3::bigint, ${DB_NOW}))
    WHERE b.digest = (SELECT digest FROM link)
    RETURNING b.digest, b.size, b.storage_key, b.last_seen`,
  lockBlobRow: `SELECT 1 FROM blobs WHERE digest = $1 FOR NO KEY UPDATE`,
  blobReferencedInRepo: `
    SELECT count(*)::int AS n FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id
    WHERE m.repository_id = (SELECT id FROM repositories WHERE name = $1) AND mb.digest = $2`,
  lockLiveBlob: `SELECT digest, size, storage_key, last_seen FROM blobs WHERE digest = $1 AND state = ${LIVE} FOR NO KEY UPDATE`,
  lockLiveBlobInRepo: `
    SELECT b.digest, b.size, b.storage_key, b.last_seen
    FROM repositories r
    JOIN repository_blobs l ON l.repository_id = r.id
    JOIN blobs b ON b.digest = l.digest
    WHERE r.name = $1 AND l.digest = $2 AND b.state = ${LIVE}
    FOR NO KEY UPDATE OF b`,
  blobRepositories: `
    SELECT r.name FROM repository_blobs l
    JOIN repositories r ON r.id = l.repository_id
    JOIN blobs b ON b.digest = l.digest
    WHERE l.digest = $1 AND b.state = ${LIVE} LIMIT $2`,
  linkBlob: `
    INSERT INTO repository_blobs (repository_id, digest, last_seen) VALUES ($1, $2, coalesce($3::bigint, ${DB_NOW}))
    ON CONFLICT (repository_id, digest) DO UPDATE SET last_seen = excluded.last_seen`,
  enqueueBlob: `
    INSERT INTO gc_blob_queue (digest, since) VALUES ($1, coalesce($2::bigint, ${DB_NOW}))
    ON CONFLICT (digest) DO UPDATE SET since = greatest(gc_blob_queue.since, excluded.since)`,
  enqueueBlobs: `
    INSERT INTO gc_blob_queue (digest, since) SELECT DISTINCT d, coalesce($2::bigint, ${DB_NOW}) FROM unnest($1::text[]) AS d ORDER BY d
    ON CONFLICT (digest) DO UPDATE SET since = greatest(gc_blob_queue.since, excluded.since)`,
  unlinkBlob: `
    WITH gone AS (
      DELETE FROM repository_blobs
      WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2
      RETURNING digest)
    INSERT INTO gc_blob_queue (digest, since) SELECT digest, 0 FROM gone
    ON CONFLICT (digest) DO UPDATE SET since = greatest(gc_blob_queue.since, excluded.since)
    RETURNING digest`,

  repositoryIdLocked: `SELECT id FROM repositories WHERE name = $1 FOR KEY SHARE`,
  insertRepository: `INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id`,
  repositoryExists: `SELECT 1 FROM repositories WHERE name = $1`,
  tagsVersion: `SELECT id::text || ':' || tags_version::text AS v FROM repositories WHERE name = $1`,

  createUpload: `INSERT INTO uploads (id, repository, "offset", created_at, updated_at, owner)
    SELECT $1, $2, 0, coalesce($3::bigint, ${DB_NOW}), coalesce($3::bigint, ${DB_NOW}), $4
    WHERE $5::int = 0 OR (SELECT count(*) FROM uploads WHERE owner = $4) < $5::int`,
  findUpload: `SELECT id, repository, "offset", created_at, updated_at, hash_state, owner, committing_key FROM uploads WHERE id = $1`,
  uploadExists: `SELECT 1 FROM uploads WHERE id = $1`,
  advanceUpload: `UPDATE uploads SET "offset" = $1, updated_at = coalesce($2::bigint, ${DB_NOW}), hash_state = $3 WHERE id = $4 AND "offset" = $5 AND committing_key IS NULL`,
  deleteUpload: `DELETE FROM uploads WHERE id = $1`,
  claimUpload: `UPDATE uploads SET committing_key = $1, updated_at = coalesce($2::bigint, ${DB_NOW}) WHERE id = $3 AND "offset" = $4 AND committing_key IS NULL`,
  createClaimedUpload: `INSERT INTO uploads (id, repository, "offset", created_at, updated_at, committing_key)
    VALUES ($1, $2, 0, coalesce($3::bigint, ${DB_NOW}), coalesce($3::bigint, ${DB_NOW}), $4)`,
  // Only the commit that claimed an upload (or, unclaimed, any) ends it as a blob.
  consumeUpload: `DELETE FROM uploads WHERE id = $1 AND (committing_key IS NULL OR committing_key = $2)`,

  insertBlob: `
    INSERT INTO blobs (digest, size, storage_key, state, last_seen) VALUES ($1, $2, $3, ${LIVE}, coalesce($4::bigint, ${DB_NOW}))
    ON CONFLICT (digest) DO NOTHING RETURNING digest`,
  lockBlobAnyState: `SELECT state, storage_key FROM blobs WHERE digest = $1 FOR UPDATE`,
  replaceBlob: `UPDATE blobs SET size = $2, storage_key = $3, state = ${LIVE}, last_seen = coalesce($4::bigint, ${DB_NOW}) WHERE digest = $1`,

  findManifestByDigest: `
    SELECT m.digest, m.media_type, m.size, m.body FROM manifests m JOIN repositories r ON r.id = m.repository_id
    WHERE r.name = $1 AND m.digest = $2`,
  manifestForStat: `
    SELECT m.digest, m.media_type, m.size, m.body,
      m.untagged_at IS NULL OR m.untagged_at > coalesce($3::bigint, ${DB_NOW}) - $4::bigint AS fresh
    FROM manifests m JOIN repositories r ON r.id = m.repository_id
    WHERE r.name = $1 AND m.digest = $2`,
  // A manifest GC deletes meanwhile: its lock is waited for, the row is gone, no row.
  renewManifest: `
    UPDATE manifests m SET untagged_at = greatest(m.untagged_at, coalesce($3::bigint, ${DB_NOW}))
    FROM repositories r
    WHERE r.id = m.repository_id AND r.name = $1 AND m.digest = $2 AND m.untagged_at IS NOT NULL
    RETURNING m.digest, m.media_type, m.size, m.body`,
  renewManifestById: `
    UPDATE manifests SET untagged_at = greatest(untagged_at, coalesce($1::bigint, ${DB_NOW})) WHERE id = $2 AND untagged_at IS NOT NULL`,
  parentCount: `SELECT count(*)::int AS n FROM manifest_children WHERE repository_id = $1 AND child_digest = $2`,
  findManifestByTag: `
    SELECT m.digest, m.media_type, m.size, m.body
    FROM repositories r JOIN tags t ON t.repository_id = r.id JOIN manifests m ON m.id = t.manifest_id
    WHERE r.name = $1 AND t.name = $2`,
  shareLiveBlobs: `
    SELECT digest FROM blobs WHERE digest = ANY($1::text[]) AND state = ${LIVE} ORDER BY digest FOR SHARE`,
  linkedDigests: `SELECT digest FROM repository_blobs WHERE repository_id = $1 AND digest = ANY($2::text[])`,
  lockManifestsByDigest: `
    SELECT digest FROM manifests WHERE repository_id = $1 AND digest = ANY($2::text[]) ORDER BY digest FOR NO KEY UPDATE`,
  lockManifest: `SELECT id FROM manifests WHERE repository_id = $1 AND digest = $2 FOR NO KEY UPDATE`,
  insertManifest: `
    INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, body, created_at, untagged_at)
    -- Untagged (a GC candidate from now) unless a tag or a parent index already holds it.
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9::bigint, ${DB_NOW}), CASE WHEN $10::boolean OR EXISTS (
      SELECT 1 FROM manifest_children WHERE repository_id = $1 AND child_digest = $2) THEN NULL ELSE coalesce($9::bigint, ${DB_NOW}) END)
    ON CONFLICT (repository_id, digest) DO NOTHING RETURNING id`,
  insertManifestBlobs: `
    INSERT INTO manifest_blobs (manifest_id, digest) SELECT $1, d FROM unnest($2::text[]) WITH ORDINALITY AS u(d, i) ORDER BY i ON CONFLICT DO NOTHING`,
  insertManifestChildren: `
    INSERT INTO manifest_children (manifest_id, repository_id, child_digest) SELECT $1, $2, d FROM unnest($3::text[]) AS d
    ON CONFLICT DO NOTHING`,
  holdManifests: `UPDATE manifests SET untagged_at = NULL WHERE repository_id = $1 AND digest = ANY($2::text[]) AND untagged_at IS NOT NULL`,
  holdManifestById: `UPDATE manifests SET untagged_at = NULL WHERE id = $1 AND untagged_at IS NOT NULL`,
  releaseIfOrphan: `
    UPDATE manifests m SET untagged_at = coalesce($1::bigint, ${DB_NOW})
    WHERE m.repository_id = $2 AND m.digest = ANY($3::text[]) AND m.untagged_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id)
      AND NOT EXISTS (SELECT 1 FROM manifest_children c WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest)`,
  // As of the subject's deletion, candidate before or not: the verdict must not depend on
  // whether GC looked at the referrer before its subject (a wave runs them in parallel).
  releaseReferrers: `UPDATE manifests SET untagged_at = greatest(untagged_at, coalesce($1::bigint, ${DB_NOW})) WHERE repository_id = $2 AND subject = $3`,
  lockTag: `SELECT manifest_id FROM tags WHERE repository_id = $1 AND name = $2 FOR UPDATE`,
  updateTag: `UPDATE tags SET manifest_id = $3, updated_at = $4 WHERE repository_id = $1 AND name = $2`,
  insertTag: `
    INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (repository_id, name) DO NOTHING RETURNING name`,
  tagNamesOfManifest: `SELECT name FROM tags WHERE manifest_id = $1`,
  tagExistsByName: `SELECT 1 FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = $1 AND t.name = $2`,
  manifestIdOf: `SELECT id FROM manifests WHERE repository_id = $1 AND digest = $2`,
  quotaBytes: `SELECT bytes FROM quota_namespaces WHERE name = $1`,
  lockQuotaBytes: `SELECT bytes FROM quota_namespaces WHERE name = $1 FOR UPDATE`,
  insertQuotaNamespace: `INSERT INTO quota_namespaces (name) VALUES ($1) ON CONFLICT DO NOTHING`,
  insertQuotaMember: `INSERT INTO quota_members (repository_id, namespace) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1`,
  insertQuotaMembersByName: `
    INSERT INTO quota_members (repository_id, namespace) SELECT id, $1 FROM repositories WHERE name = ANY($2::text[])
    ON CONFLICT DO NOTHING`,
  repositoryHasLinks: `SELECT 1 FROM repository_blobs WHERE repository_id = $1 LIMIT 1`,
  quotaNamespaceNames: `SELECT name FROM quota_namespaces`,
  deleteQuotaNamespace: `DELETE FROM quota_namespaces WHERE name = $1`,
  quotaUsage: `SELECT name, bytes FROM quota_namespaces ORDER BY name`,
  clearQuotaBlobs: `DELETE FROM quota_blobs WHERE namespace = $1`,
  fillQuotaBlobs: `
    INSERT INTO quota_blobs (namespace, digest, size, links)
    SELECT m.namespace, l.digest, b.size, count(*) FROM quota_members m
    JOIN repository_blobs l ON l.repository_id = m.repository_id JOIN blobs b ON b.digest = l.digest
    WHERE m.namespace = $1 GROUP BY m.namespace, l.digest, b.size`,
  sumQuotaBlobs: `UPDATE quota_namespaces SET bytes = (SELECT coalesce(sum(size), 0) FROM quota_blobs WHERE namespace = $1) WHERE name = $1`,
  retentionTags: `
    SELECT t.repository_id, t.name, t.manifest_id, t.updated_at, m.digest, m.subject, tp.pulled_at
    FROM repositories r JOIN tags t ON t.repository_id = r.id JOIN manifests m ON m.id = t.manifest_id
    LEFT JOIN tag_pulls tp ON tp.repository_id = t.repository_id AND tp.tag = t.name
    WHERE r.name = $1 ORDER BY t.name`,
  lockRetentionTag: `
    SELECT t.repository_id, t.name, t.manifest_id, t.updated_at, m.digest, m.subject, tp.pulled_at
    FROM repositories r JOIN tags t ON t.repository_id = r.id JOIN manifests m ON m.id = t.manifest_id
    LEFT JOIN tag_pulls tp ON tp.repository_id = t.repository_id AND tp.tag = t.name
    WHERE r.name = $1 AND t.name = $2 FOR UPDATE OF t`,
  deleteTagById: `DELETE FROM tags WHERE repository_id = $1 AND name = $2`,
  deleteTagPull: `DELETE FROM tag_pulls WHERE repository_id = $1 AND tag = $2`,
  recordTagPulls: `
    INSERT INTO tag_pulls (repository_id, tag, pulled_at)
    SELECT t.repository_id, t.name, max(p.at) FROM unnest($1::text[], $2::text[], $3::bigint[]) AS p(repository, tag, at)
    JOIN repositories r ON r.name = p.repository JOIN tags t ON t.repository_id = r.id AND t.name = p.tag
    GROUP BY t.repository_id, t.name
    ON CONFLICT (repository_id, tag) DO UPDATE SET pulled_at = greatest(tag_pulls.pulled_at, excluded.pulled_at)`,
  deleteTagByName: `
    DELETE FROM tags t USING repositories r
    WHERE r.id = t.repository_id AND r.name = $1 AND t.name = $2
    RETURNING t.repository_id, t.manifest_id`,
  releaseIfOrphanById: `
    UPDATE manifests m SET untagged_at = coalesce($1::bigint, ${DB_NOW})
    WHERE m.id = $2 AND m.untagged_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id)
      AND NOT EXISTS (SELECT 1 FROM manifest_children c WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest)`,
  lockManifestByName: `
    SELECT m.id, m.repository_id FROM manifests m JOIN repositories r ON r.id = m.repository_id
    WHERE r.name = $1 AND m.digest = $2 FOR UPDATE OF m`,
  manifestBlobs: `SELECT digest FROM manifest_blobs WHERE manifest_id = $1 ORDER BY digest`,
  manifestChildren: `SELECT child_digest FROM manifest_children WHERE manifest_id = $1`,
  deleteManifest: `DELETE FROM manifests WHERE id = $1`,
  // The repository's id as a constant, not a join: only then does the planner
  // read the page in order from the (repository_id, name) key and stop at the
  // limit; joined, it sorted every tag after `last` (100,000 for a first page).
  listTags: `
    SELECT name FROM tags
    WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND name > $2 ORDER BY name LIMIT $3`,
  listRepositories: `SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2`,
  listReferrers: `
    SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
    FROM manifests m JOIN repositories r ON r.id = m.repository_id
    WHERE r.name = $1 AND m.subject = $2 ORDER BY m.id`,

  // Keyset pages: an index range read on manifests_candidates (untagged_at, id) after the last one.
  manifestCandidates: `
    SELECT r.name, m.digest, m.untagged_at, m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id
    WHERE m.untagged_at IS NOT NULL AND m.untagged_at <= $1 AND (m.untagged_at, m.id) > ($2::bigint, $3::bigint)
    ORDER BY m.untagged_at, m.id LIMIT $4`,
  lockManifestForGc: `
    SELECT m.id, m.repository_id, m.digest, m.media_type, m.size, m.body, m.subject, m.untagged_at
    FROM manifests m JOIN repositories r ON r.id = m.repository_id
    WHERE r.name = $1 AND m.digest = $2
    FOR UPDATE OF m SKIP LOCKED`,
  manifestHeld: `
    SELECT EXISTS (SELECT 1 FROM tags WHERE manifest_id = $1)
        OR EXISTS (SELECT 1 FROM manifest_children WHERE repository_id = $2 AND child_digest = $3)
        OR ($4::text IS NOT NULL AND EXISTS (SELECT 1 FROM manifests WHERE repository_id = $2 AND digest = $4::text))
      AS held`,
  // Keyset pages: an index range read on gc_blob_queue_by_position (since, digest) after the last one.
  blobCandidates: `
    SELECT digest, since FROM gc_blob_queue WHERE since <= $1 AND (since, digest) > ($2::bigint, $3::text)
    ORDER BY since, digest LIMIT $4`,
  lockQueueEntry: `SELECT digest FROM gc_blob_queue WHERE digest = $1 FOR UPDATE SKIP LOCKED`,
  queueEntryExists: `SELECT 1 FROM gc_blob_queue WHERE digest = $1`,
  lockBlobForGc: `SELECT digest, size, storage_key, state, last_seen FROM blobs WHERE digest = $1 FOR UPDATE SKIP LOCKED`,
  blobExists: `SELECT 1 FROM blobs WHERE digest = $1`,
  // The link's own count of the manifests naming it (migration 11), through the
  // partial index of unreferenced links: neither the manifests using the blob nor
  // the links they keep are read. FOR UPDATE re-checks refs on the newest version
  // of a link changed since the snapshot; one being changed now is skipped.
  deleteDanglingLinks: `
    DELETE FROM repository_blobs l USING (
      SELECT x.repository_id FROM repository_blobs x
      WHERE x.digest = $1 AND x.refs = 0 AND x.last_seen <= $2
      FOR UPDATE SKIP LOCKED) d
    WHERE l.repository_id = d.repository_id AND l.digest = $1`,
  blobReferences: `
    SELECT EXISTS (SELECT 1 FROM manifest_blobs WHERE digest = $1) AS referenced,
           (SELECT max(last_seen) FROM repository_blobs WHERE digest = $1) AS newest`,
  requeueBlob: `UPDATE gc_blob_queue SET since = $1 WHERE digest = $2`,
  dequeueBlob: `DELETE FROM gc_blob_queue WHERE digest = $1`,
  markDeleting: `UPDATE blobs SET state = ${DELETING} WHERE digest = $1 AND state = ${LIVE}`,
  deletingBlobs: `SELECT digest, size, storage_key, last_seen FROM blobs WHERE state = ${DELETING} ORDER BY digest LIMIT $1`,
  deleteDeletingBlob: `DELETE FROM blobs WHERE digest = $1 AND storage_key = $2 AND state = ${DELETING}`,
  expireUploads: `
    DELETE FROM uploads WHERE id IN (
      SELECT id FROM uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING id, updated_at`,
  lockEmptyRepositories: `
    SELECT id FROM repositories r
    WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
      AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.repository_id = r.id)
    FOR UPDATE SKIP LOCKED`,
  // One folder at a time (a transaction-scoped advisory lock, skipped when
  // taken): two folds would lock repository rows in opposite orders.
  foldLock: `SELECT pg_try_advisory_xact_lock(7362291) AS locked`,
  foldRepositoryStats: `
    WITH moved AS (DELETE FROM repository_stat_deltas RETURNING *),
    sums AS (SELECT repository_id, sum(tags) AS tags, sum(manifests) AS manifests, max(last_push) AS last_push,
               sum(bytes) AS bytes, sum(unique_bytes) AS unique_bytes FROM moved GROUP BY repository_id)
    UPDATE repositories r SET tag_count = r.tag_count + s.tags, manifest_count = r.manifest_count + s.manifests,
      last_push = greatest(r.last_push, s.last_push), bytes = r.bytes + s.bytes, unique_bytes = r.unique_bytes + s.unique_bytes
    FROM sums s WHERE r.id = s.repository_id`,
  deleteEmptyRepositories: `
    DELETE FROM repositories r WHERE r.id = ANY($1::bigint[])
      AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
      AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.repository_id = r.id)`,
  listBlobs: `
    SELECT digest, size, storage_key, last_seen FROM blobs WHERE digest > $1 AND state = ${LIVE} ORDER BY digest LIMIT $2`,
  // A key that names its digest ($2) is the blob's own (primary key); any other is in
  // blobs_by_foreign_key, whose predicate (migration 12) this repeats word for word.
  storageKeyKnown: `
    SELECT 1 WHERE EXISTS (SELECT 1 FROM blobs WHERE digest = $2 AND storage_key = $1)
      OR EXISTS (SELECT 1 FROM blobs WHERE storage_key = $1
                 AND left(storage_key, length(digest) + 4) <> replace(digest, ':', '/' || substr(digest, strpos(digest, ':') + 1, 2) || '/') || '.')
      OR EXISTS (SELECT 1 FROM uploads WHERE committing_key = $1)`,
  recordCandidate: `
    INSERT INTO fsck_candidates (key, first_seen, last_seen) VALUES ($1, $2, $2)
    ON CONFLICT (key) DO UPDATE SET last_seen = excluded.last_seen RETURNING first_seen`,
  dropCandidate: `DELETE FROM fsck_candidates WHERE key = $1`,
  pruneCandidates: `DELETE FROM fsck_candidates WHERE last_seen < $1`,
  forgetBlob: `DELETE FROM blobs WHERE digest = $1 AND storage_key = $2`,
  deleteLinks: `DELETE FROM repository_blobs WHERE digest = $1`,
  // One statement, its own transaction: the run; its kind's totals added to
  // (the upsert is atomic: runs recorded by two nodes at once both count);
  // and the history pruned to the newest runs. The DELETE's snapshot is the
  // statement's, without the run it inserts, so it keeps $10 = KEPT_RUNS - 1
  // older ones. One pruner at a time (a transaction-scoped advisory lock,
  // skipped when taken: the next run prunes what is left): two deleting the
  // same old runs could deadlock.
  recordRun: `
    WITH run AS (
      INSERT INTO lifecycle_runs (kind, trigger, started_at, duration_ms, manifests_deleted, blobs_deleted,
        bytes_reclaimed, uploads_purged, problems) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
      RETURNING kind, started_at, duration_ms, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems),
    totals AS (
      INSERT INTO lifecycle_totals AS t (kind, runs, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems, duration_ms, last_run_at)
      SELECT kind, 1, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems, duration_ms, started_at FROM run
      ON CONFLICT (kind) DO UPDATE SET runs = t.runs + 1,
        manifests_deleted = t.manifests_deleted + excluded.manifests_deleted, blobs_deleted = t.blobs_deleted + excluded.blobs_deleted,
        bytes_reclaimed = t.bytes_reclaimed + excluded.bytes_reclaimed, uploads_purged = t.uploads_purged + excluded.uploads_purged,
        problems = t.problems + excluded.problems, duration_ms = t.duration_ms + excluded.duration_ms,
        last_run_at = greatest(t.last_run_at, excluded.last_run_at))
    DELETE FROM lifecycle_runs
    WHERE id <= (SELECT id FROM lifecycle_runs ORDER BY id DESC LIMIT 1 OFFSET $10)
      AND (SELECT pg_try_advisory_xact_lock(7362292))`,
  runTotals: `
    SELECT kind, runs, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems, duration_ms, last_run_at
    FROM lifecycle_totals ORDER BY kind`,
  dbNow: `SELECT ${DB_NOW} AS now`,
  ...CONSOLE_SQL,
} as const;

type Statement = keyof typeof SQL;

/**
 * Which parameter of a statement is a grace-period time (0-based): sent as
 * NULL with the database clock, so the SQL stamps DB_NOW instead.
 */
const STAMPS: Partial<Record<Statement, number>> = {
  touchBlob: 0,
  statBlob: 2,
  renewBlobInRepo: 2,
  linkBlob: 2,
  enqueueBlob: 1,
  enqueueBlobs: 1,
  createUpload: 2,
  advanceUpload: 1,
  claimUpload: 1,
  createClaimedUpload: 2,
  insertBlob: 3,
  replaceBlob: 3,
  manifestForStat: 2,
  renewManifest: 2,
  renewManifestById: 0,
  insertManifest: 8,
  releaseIfOrphan: 0,
  releaseReferrers: 0,
  releaseIfOrphanById: 0,
};

function stamped(name: Statement, values: unknown[], clock: Clock): unknown[] {
  const i = STAMPS[name];
  if (clock === 'caller' || i === undefined) return values;
  const v = values.slice();
  v[i] = null;
  return v;
}

/** Runs named statements on one connection (inside a transaction, or the pool for single statements). */
interface Exec extends outbox.RawExec {
  q<R extends QueryResultRow = Row>(name: Statement, values?: unknown[]): Promise<QueryResult<R>>;
}

function execOn(client: PoolClient | pg.Pool, clock: Clock): Exec {
  return {
    q: <R extends QueryResultRow>(name: Statement, values: unknown[] = []) =>
      client.query<R>({ name: `berth_${name}`, text: SQL[name], values: stamped(name, values, clock) }),
    raw: <R extends QueryResultRow>(name: string, text: string, values: unknown[] = []) => client.query<R>({ name, text, values }),
  };
}

/** How the store reaches the database: the live pool, or a dry run's single transaction. */
interface Runner {
  /** One statement, atomically on its own. */
  one<R extends QueryResultRow = Row>(name: Statement, values?: unknown[]): Promise<QueryResult<R>>;
  /**
   * A transaction (retried as a whole on deadlock or serialization failure).
   * `clock` 'caller': the `now` values it is given already come from the
   * database's clock (GC's, read by now()), so they are sent as they are.
   */
  tx<T>(fn: (x: Exec) => Promise<T>, clock?: Clock): Promise<T>;
}

const RETRYABLE = new Set(['40001', '40P01']);
const MAX_ATTEMPTS = 8;

function retryable(e: unknown): boolean {
  return RETRYABLE.has((e as { code?: string } | undefined)?.code ?? '');
}

function backoff(attempt: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.random() * 5 * 2 ** attempt));
}

class PoolRunner implements Runner {
  private readonly exec: Exec;
  constructor(private readonly pool: pg.Pool, private readonly clock: Clock) {
    this.exec = execOn(pool, clock);
  }

  async one<R extends QueryResultRow = Row>(name: Statement, values?: unknown[]): Promise<QueryResult<R>> {
    // A statement on its own is its own transaction: one that lost a deadlock was undone whole, so run it again.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.exec.q<R>(name, values);
      } catch (e) {
        if (attempt >= MAX_ATTEMPTS || !retryable(e)) throw e;
        await backoff(attempt);
      }
    }
  }

  async tx<T>(fn: (x: Exec) => Promise<T>, clock: Clock = this.clock): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN ISOLATION LEVEL READ COMMITTED'); // explicit: the locking design assumes it, whatever the database default
        const value = await fn(execOn(client, clock));
        await client.query('COMMIT');
        return value;
      } catch (e) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError as Error; // the connection is unusable: do not return it to the pool
        }
        if (attempt < MAX_ATTEMPTS && retryable(e)) {
          await backoff(attempt);
          continue;
        }
        throw e;
      } finally {
        client.release(broken);
      }
    }
  }
}

/**
 * A dry run's view: one connection, one transaction that is rolled back at
 * the end. Each operation runs as a savepoint (undone alone if it fails), one
 * at a time, so the view behaves like the store: later operations see earlier
 * ones' changes, and nobody else sees any of them.
 */
class DryRunRunner implements Runner {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly exec: Exec;
  constructor(private readonly client: PoolClient, private readonly clock: Clock) {
    this.exec = execOn(client, clock);
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  one<R extends QueryResultRow = Row>(name: Statement, values?: unknown[]): Promise<QueryResult<R>> {
    return this.tx((x) => x.q<R>(name, values));
  }

  tx<T>(fn: (x: Exec) => Promise<T>, clock: Clock = this.clock): Promise<T> {
    const exec = clock === this.clock ? this.exec : execOn(this.client, clock);
    return this.exclusive(async () => {
      for (let attempt = 1; ; attempt++) {
        await this.client.query('SAVEPOINT berth_op');
        try {
          const value = await fn(exec);
          await this.client.query('RELEASE SAVEPOINT berth_op');
          return value;
        } catch (e) {
          await this.client.query('ROLLBACK TO SAVEPOINT berth_op');
          await this.client.query('RELEASE SAVEPOINT berth_op');
          if (attempt < MAX_ATTEMPTS && retryable(e)) {
            await backoff(attempt);
            continue;
          }
          throw e;
        }
      }
    });
  }
}

export class PostgresMetadataStore implements MetadataStore {
  /**
   * Connects, checks the schema version (refusing a newer one) and, unless
   * told not to, applies pending migrations.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresMetadataStore> {
    const pool = createPool(url, options.poolSize);
    try {
      if (options.migrate ?? true) {
        await migrate(pool);
      } else {
        const status = await schemaStatus(pool);
        if (status.from > LATEST_VERSION) throw new SchemaTooNewError(status.from, LATEST_VERSION);
        if (status.from < LATEST_VERSION) {
          throw new Error(`metadata schema version ${status.from} is older than this Berth needs (${LATEST_VERSION}); run berth migrate`);
        }
      }
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw describeConnectError(e, url);
    }
    const clock = options.clock ?? 'database';
    const events = options.outbox && options.outbox.endpoints.length > 0 ? options.outbox : undefined;
    return new PostgresMetadataStore(pool, new PoolRunner(pool, clock), clock, events);
  }

  private constructor(
    /** Undefined for a dry run's view, which borrows one connection of its parent's pool. */
    private readonly pool: pg.Pool | undefined,
    private readonly db: Runner,
    private readonly clock: Clock,
    /** Undefined without endpoints: no outbox rows, and requests pay nothing. */
    private readonly events?: OutboxOptions,
  ) {}

  /** Writes the event's outbox rows in the transaction `x` (nothing without an outbox). */
  private async emit(x: Exec, event: OutboxEvent): Promise<void> {
    if (this.events) await outbox.insertEvent(x, this.events, event);
  }

  // Blobs --------------------------------------------------------------------

  async findBlob(repository: string, digest: string): Promise<BlobRecord | undefined> {
    return toBlob((await this.db.one('findBlobInRepo', [repository, digest])).rows[0]);
  }

  async findAnyBlob(digest: string): Promise<BlobRecord | undefined> {
    return toBlob((await this.db.one('findBlob', [digest])).rows[0]);
  }

  async statBlob(repository: string, digest: string, now: number, touchInterval: number): Promise<BlobRecord | undefined> {
    const read = (await this.db.one('statBlob', [repository, digest, now, touchInterval])).rows[0];
    if (!read) return undefined;
    // Safe to answer from the read: GC claims a blob or removes a link only
    // when it was last seen at or before (database) now - grace -
    // touchInterval, and both were seen after now - touchInterval, so
    // neither can go for a full grace period from this answer.
    if (read.fresh) return toBlob(read);
    await pausePoint('stat-after-read');
    // The read is only a hint: this statement re-checks liveness under the
    // blob's lock and renews link and blob, or returns nothing (404).
    return toBlob((await this.db.one('renewBlobInRepo', [repository, digest, now])).rows[0]);
  }

  async mountBlob(repository: string, digest: string, from: string | undefined, now: number, ev?: EventContext, guard?: WriteGuard): Promise<BlobRecord | undefined> {
    return this.db.tx(async (x) => {
      // Locked (as a claim would) before anything acts on it: a blob GC has
      // marked is not mounted, and a mounted one has its grace renewed first.
      const row = (from === undefined ? await x.q('lockLiveBlob', [digest]) : await x.q('lockLiveBlobInRepo', [from, digest])).rows[0];
      if (!row) return undefined;
      const repoId = await ensureRepository(x, repository, now);
      const before = await quotaBefore(x, guard, repoId);
      await x.q('linkBlob', [repoId, digest, now]);
      if (before) await quotaAfter(x, guard!, before);
      await x.q('touchBlob', [now, digest]);
      await x.q('enqueueBlob', [digest, now]);
      await this.emit(x, { action: 'mount', kind: 'blob', repository, digest, size: Number(row.size), mediaType: BLOB_MEDIA_TYPE, fromRepository: from, ctx: ev });
      return toBlob({ ...row, last_seen: now });
    });
  }

  async blobRepositories(digest: string, limit: number): Promise<string[]> {
    return (await this.db.one<{ name: string }>('blobRepositories', [digest, limit])).rows.map((r) => r.name);
  }

  async unlinkBlob(repository: string, digest: string, ev?: EventContext): Promise<boolean> {
    return this.db.tx(async (x) => {
      // putManifest share-locks the blob row before it checks links: after
      // this lock, a manifest pushed concurrently has committed (and the
      // count below sees it), or it will find the link gone.
      await x.q('lockBlobRow', [digest]);
      const referencedBy = (await x.q('blobReferencedInRepo', [repository, digest])).rows[0]!.n as number;
      if (referencedBy > 0) throw stillReferencedError('blob', digest, referencedBy);
      const unlinked = ((await x.q('unlinkBlob', [repository, digest])).rowCount ?? 0) > 0;
      if (unlinked) await this.emit(x, { action: 'delete', kind: 'blob', repository, digest, ctx: ev });
      return unlinked;
    });
  }

  // Uploads ------------------------------------------------------------------

  async createUpload(id: string, repository: string, now: number, owner?: UploadOwner): Promise<boolean> {
    // READ COMMITTED: starts racing in parallel may each see the count below
    // the cap, so it can be passed by as many starts as run at once (those
    // are themselves capped per client: limits.uploadsPerClient).
    return ((await this.db.one('createUpload', [id, repository, now, owner?.name ?? null, owner?.maxSessions ?? 0])).rowCount ?? 0) > 0;
  }

  async findUpload(id: string): Promise<UploadRecord | undefined> {
    if (!storable(id)) return undefined;
    return toUpload((await this.db.one('findUpload', [id])).rows[0]);
  }

  async advanceUpload(id: string, from: number, to: number, now: number, hashState?: Buffer): Promise<boolean> {
    if (!storable(id)) return false;
    // PostgreSQL re-checks `"offset" = from` on the newest row version after
    // waiting for a concurrent update: a compare-and-set.
    return ((await this.db.one('advanceUpload', [to, now, hashState ?? null, id, from])).rowCount ?? 0) > 0;
  }

  async deleteUpload(id: string): Promise<boolean> {
    if (!storable(id)) return false;
    return ((await this.db.one('deleteUpload', [id])).rowCount ?? 0) > 0;
  }

  async claimUpload(id: string, offset: number, storageKey: string, now: number): Promise<boolean> {
    if (!storable(id)) return false;
    // Re-evaluated on the newest row version after a concurrent claim or append: one winner.
    return ((await this.db.one('claimUpload', [storageKey, now, id, offset])).rowCount ?? 0) > 0;
  }

  async createClaimedUpload(id: string, repository: string, storageKey: string, now: number): Promise<void> {
    await this.db.one('createClaimedUpload', [id, repository, now, storageKey]);
  }

  async commitBlob(
    uploadId: string | undefined,
    repository: string,
    blob: Omit<BlobRecord, 'lastSeen'>,
    now: number,
    ev?: EventContext,
    guard?: WriteGuard,
  ): Promise<CommitBlobResult> {
    return this.db.tx(async (x): Promise<CommitBlobResult> => {
      if (uploadId !== undefined && (!storable(uploadId) || (await x.q('consumeUpload', [uploadId, blob.storageKey])).rowCount === 0)) {
        // Another request finished or cancelled this upload first.
        throw new RegistryError('BLOB_UPLOAD_UNKNOWN');
      }
      const repoId = await ensureRepository(x, repository, now);
      let result: CommitBlobResult;
      for (;;) {
        // New digest: insert. Otherwise lock the row (a concurrent commit of
        // the same digest waits here) and look at its state.
        if ((await x.q('insertBlob', [blob.digest, blob.size, blob.storageKey, now])).rowCount) {
          result = { outcome: 'stored' };
          break;
        }
        const existing = (await x.q('lockBlobAnyState', [blob.digest])).rows[0];
        if (!existing) continue; // GC finished deleting it in between: insert again
        if (existing.state === LIVE) {
          await x.q('touchBlob', [now, blob.digest]);
          result = { outcome: 'already-present' };
        } else {
          // Being deleted by GC: this upload's object becomes the blob. GC
          // deletes by the key it marked, so it cannot remove this one.
          await x.q('replaceBlob', [blob.digest, blob.size, blob.storageKey, now]);
          result = { outcome: 'stored', replacedKey: existing.storage_key as string };
        }
        break;
      }
      // After the blob row's lock, as GC takes them (blob, then the namespace in the unlink trigger).
      const before = await quotaBefore(x, guard, repoId);
      await x.q('linkBlob', [repoId, blob.digest, now]);
      if (before) await quotaAfter(x, guard!, before);
      await x.q('enqueueBlob', [blob.digest, now]);
      await this.emit(x, { action: 'push', kind: 'blob', repository, digest: blob.digest, size: blob.size, mediaType: BLOB_MEDIA_TYPE, ctx: ev });
      return result;
    });
  }

  // Manifests and tags -------------------------------------------------------

  async findManifestByDigest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    return toManifest((await this.db.one('findManifestByDigest', [repository, digest])).rows[0]);
  }

  async findManifestByTag(repository: string, tag: string): Promise<ManifestRecord | undefined> {
    return toManifest((await this.db.one('findManifestByTag', [repository, tag])).rows[0]);
  }

  async statManifest(repository: string, digest: string, now: number, touchInterval: number): Promise<ManifestRecord | undefined> {
    const read = (await this.db.one('manifestForStat', [repository, digest, now, touchInterval])).rows[0];
    // Held by a tag or an index, or renewed less than touchInterval ago (see statBlob): the read is the answer.
    if (!read || read.fresh) return toManifest(read);
    await pausePoint('stat-after-read');
    const renewed = (await this.db.one('renewManifest', [repository, digest, now])).rows[0];
    // No row: deleted by GC since (gone), or held by a tag or index since (still there).
    return toManifest(renewed ?? (await this.db.one('findManifestByDigest', [repository, digest])).rows[0]);
  }

  async putManifest(repository: string, m: NewManifest, tag: string | undefined, now: number, ev?: EventContext, guard?: WriteGuard): Promise<void> {
    if (m.artifactType !== undefined && !storable(m.artifactType)) {
      // PostgreSQL text cannot hold NUL, and no media type contains one.
      throw new RegistryError('MANIFEST_INVALID', 'artifactType is not a media type');
    }
    // Sorted: each reference locks its link (the link_refs trigger), in this order.
    const blobs = [...new Set(m.blobs)].sort();
    const children = [...new Set(m.children)];
    await this.db.tx(async (x) => {
      const repoId = await ensureRepository(x, repository, now);
      // Invariant 2: share-lock the blobs first (a claim needs FOR UPDATE, so
      // it waits for this transaction or has already marked the blob, which
      // this lock then sees), then check links in a statement that starts
      // after the locks were granted.
      if (blobs.length > 0) {
        const live = new Set((await x.q('shareLiveBlobs', [blobs])).rows.map((r) => r.digest as string));
        const linked = new Set((await x.q('linkedDigests', [repoId, blobs])).rows.map((r) => r.digest as string));
        const missing = m.blobs.filter((d) => !live.has(d) || !linked.has(d));
        if (missing.length > 0) throw unknownBlobsError([...new Set(missing)]);
      }
      if (children.length > 0) {
        // Locked: GC cannot delete a child this index is about to hold.
        const present = new Set((await x.q('lockManifestsByDigest', [repoId, children])).rows.map((r) => r.digest as string));
        const missing = m.children.filter((d) => !present.has(d));
        if (missing.length > 0) throw unknownChildrenError([...new Set(missing)]);
      }
      if (guard?.quotas && (await x.q('manifestIdOf', [repoId, m.digest])).rows.length === 0) {
        for (const q of guard.quotas) {
          const usage = Number((await x.q('quotaBytes', [q.namespace])).rows[0]?.bytes ?? 0);
          if (usage > q.limit) throw q.refuse(usage, 0);
        }
      }
      let id: number | undefined;
      for (;;) {
        id = (await x.q('lockManifest', [repoId, m.digest])).rows[0]?.id as number | undefined;
        if (id !== undefined) {
          // Pushed again: kept like a new one (a client may push an index referencing it next).
          await x.q('renewManifestById', [now, id]);
          break;
        }
        id = (
          await x.q('insertManifest', [...manifestValues(repoId, m, now), tag !== undefined])
        ).rows[0]?.id as number | undefined;
        if (id === undefined) continue; // pushed concurrently: lock that one
        // Each reference counts itself in its link (refs, a trigger), which keeps the
        // link while the manifest exists; the push does not also renew last_seen.
        if (blobs.length > 0) await x.q('insertManifestBlobs', [id, blobs]);
        if (children.length > 0) {
          await x.q('insertManifestChildren', [id, repoId, children]);
          await x.q('holdManifests', [repoId, children]);
        }
        break;
      }
      if (tag !== undefined) {
        const previous = await upsertTag(x, repoId, tag, id, now, guard);
        await x.q('holdManifestById', [id]);
        if (previous !== undefined && previous !== id) await x.q('releaseIfOrphanById', [now, previous]);
      }
      await this.emit(x, { action: 'push', kind: 'manifest', repository, digest: m.digest, mediaType: m.mediaType, size: m.size, tag, references: manifestReferences(m.body), ctx: ev });
    });
  }

  async deleteManifest(repository: string, digest: string, now: number, ev?: EventContext, guard?: WriteGuard): Promise<boolean> {
    return this.db.tx(async (x) => {
      const row = (await x.q('lockManifestByName', [repository, digest])).rows[0];
      if (!row) return false;
      // After the lock: an index pushed concurrently (it locks its children) has committed, and is counted.
      const parents = (await x.q('parentCount', [row.repository_id, digest])).rows[0]!.n as number;
      if (parents > 0) throw stillReferencedError('manifest', digest, parents);
      if (guard) {
        // After the lock too: a push tagging this manifest locks its row first (lockManifest).
        for (const r of (await x.q('tagNamesOfManifest', [row.id])).rows) {
          const refusal = guard.refuseTagChange?.(r.name as string, 'delete');
          if (refusal) throw refusal;
        }
      }
      const tags = this.events ? await outbox.tagsOf(x, row.id as number) : [];
      await deleteManifestRow(x, row.id as number, row.repository_id as number, digest, now);
      for (const tag of tags) await this.emit(x, { action: 'delete', repository, tag, ctx: ev });
      await this.emit(x, { action: 'delete', kind: 'manifest', repository, digest, ctx: ev });
      return true;
    });
  }

  async deleteTag(repository: string, tag: string, now: number, ev?: EventContext, guard?: WriteGuard): Promise<boolean> {
    return this.db.tx(async (x) => {
      if (guard?.refuseTagChange?.(tag, 'delete')) {
        // An immutable tag is never deleted here: refused while it exists, unknown otherwise.
        const exists = (await x.q('tagExistsByName', [repository, tag])).rows.length > 0;
        if (exists) throw guard.refuseTagChange(tag, 'delete')!;
        return false;
      }
      const row = (await x.q('deleteTagByName', [repository, tag])).rows[0];
      if (!row) return false;
      await x.q('releaseIfOrphanById', [now, row.manifest_id]);
      await this.emit(x, { action: 'delete', repository, tag, ctx: ev });
      return true;
    });
  }

  async repositoryExists(repository: string): Promise<boolean> {
    return ((await this.db.one('repositoryExists', [repository])).rowCount ?? 0) > 0;
  }

  async tagsVersion(repository: string): Promise<string | undefined> {
    return (await this.db.one('tagsVersion', [repository])).rows[0]?.v as string | undefined;
  }

  async listTags(repository: string, last: string | undefined, limit: number): Promise<Page> {
    const rows = (await this.db.one('listTags', [repository, afterKey(last), limit + 1])).rows;
    return page(rows.map((r) => r.name as string), limit);
  }

  async listRepositories(last: string | undefined, limit: number): Promise<Page> {
    const rows = (await this.db.one('listRepositories', [afterKey(last), limit + 1])).rows;
    return page(rows.map((r) => r.name as string), limit);
  }

  async listReferrers(repository: string, subject: string, artifactType: string | undefined): Promise<ReferrerDescriptor[]> {
    return toReferrers((await this.db.one('listReferrers', [repository, subject])).rows, artifactType);
  }

  // Lifecycle ----------------------------------------------------------------

  async listManifestCandidates(cutoff: number, limit: number, after?: ManifestCandidate): Promise<ManifestCandidate[]> {
    const values = [cutoff, after?.since ?? Number.MIN_SAFE_INTEGER, after?.id ?? 0, limit];
    return (await this.db.one('manifestCandidates', values)).rows.map(toManifestCandidate);
  }

  async deleteManifestIfGarbage(ref: ManifestRef, cutoff: number, now: number): Promise<ManifestRecord | undefined> {
    // `now` is GC's pass time, read from this store's clock: what it releases
    // is due from that time, so a pass at grace 0 takes the blobs of the
    // manifests it deletes too.
    return this.db.tx(async (x) => {
      // SKIP LOCKED: a manifest a push (or another collector) is working on is left for a later pass.
      const row = (await x.q('lockManifestForGc', [ref.repository, ref.digest])).rows[0];
      if (!row || !manifestDue(row.untagged_at, cutoff)) return undefined;
      const id = row.id as number;
      const repoId = row.repository_id as number;
      const held = (await x.q('manifestHeld', [id, repoId, ref.digest, row.subject ?? null])).rows[0]!.held as boolean;
      if (held) {
        // Live through a tag, a parent or its subject: no longer a candidate until that changes.
        await x.q('holdManifestById', [id]);
        return undefined;
      }
      await deleteManifestRow(x, id, repoId, ref.digest, now);
      await this.emit(x, { action: 'gc.delete', kind: 'manifest', repository: ref.repository, digest: ref.digest, mediaType: row.media_type as string, size: Number(row.size) });
      return toManifest(row);
    }, 'caller');
  }

  async listBlobCandidates(cutoff: number, limit: number, after?: BlobCandidate): Promise<BlobCandidate[]> {
    const values = [cutoff, after?.since ?? Number.MIN_SAFE_INTEGER, after?.digest ?? '', limit];
    return (await this.db.one('blobCandidates', values)).rows.map(toBlobCandidate);
  }

  async claimBlobIfGarbage(digest: string, cutoff: number): Promise<{ blob?: BlobRecord; linksRemoved: number }> {
    return this.db.tx(async (x) => {
      // A claim waits for nothing: whatever another transaction holds (a push
      // share-locking the blob, a manifest deletion re-queueing it, another
      // node's collector) is skipped and stays queued for a later pass.
      const queued = (await x.q('lockQueueEntry', [digest])).rowCount! > 0;
      // Only the queue entry locked here is ours to remove or move: one that
      // appears while this runs was added by a transaction (a manifest
      // deletion) that knew more than this claim's snapshot, and must stay.
      const dequeue = async () => void (queued && (await x.q('dequeueBlob', [digest])));
      if (!queued && (await x.q('queueEntryExists', [digest])).rowCount! > 0) return { linksRemoved: 0 };
      const row = (await x.q('lockBlobForGc', [digest])).rows[0];
      if (!row && (await x.q('blobExists', [digest])).rowCount! > 0) return { linksRemoved: 0 };
      // From here on the blob row is ours: no push can reference it or link it until we commit.
      const linksRemoved = (await x.q('deleteDanglingLinks', [digest, cutoff])).rowCount ?? 0;
      if (!row || row.state !== LIVE) {
        await dequeue();
        return { linksRemoved };
      }
      const refs = (await x.q('blobReferences', [digest])).rows[0]!;
      if (refs.referenced) {
        // Referenced: a manifest deletion re-queues it.
        await dequeue();
        return { linksRemoved };
      }
      const recheckAt = blobRecheckAt(refs.newest as number | null, row.last_seen as number, cutoff);
      if (recheckAt !== undefined) {
        // Still linked (recently, or by a row someone holds), uploaded or said to exist: look again later.
        if (queued) await x.q('requeueBlob', [recheckAt, digest]);
        return { linksRemoved };
      }
      await x.q('markDeleting', [digest]);
      await dequeue();
      await this.emit(x, { action: 'gc.delete', kind: 'blob', repository: '', digest, size: Number(row.size) });
      return { blob: toBlob(row), linksRemoved };
    });
  }

  async listDeletingBlobs(limit: number): Promise<BlobRecord[]> {
    return (await this.db.one('deletingBlobs', [limit])).rows.map((r) => toBlob(r)!);
  }

  async finishBlobDeletion(digest: string, storageKey: string): Promise<void> {
    await this.db.one('deleteDeletingBlob', [digest, storageKey]);
  }

  async expireUploads(cutoff: number, limit: number): Promise<string[]> {
    const rows = (await this.db.one('expireUploads', [cutoff, limit])).rows;
    return rows.sort((a, b) => (a.updated_at as number) - (b.updated_at as number)).map((r) => r.id as string);
  }

  async deleteEmptyRepositories(): Promise<number> {
    // GC's last step: fold the per-repository figure deltas first (migration
    // 9), so that those of a repository about to be removed go with it.
    await this.db.tx(async (x) => {
      if ((await x.q('foldLock')).rows[0]!.locked) await x.q('foldRepositoryStats');
    });
    return this.db.tx(async (x) => {
      // Lock first, re-check after: a writer that linked something into the
      // repository committed before our lock (and the check sees it), or
      // waits for it (and then creates the repository again).
      const ids = (await x.q('lockEmptyRepositories')).rows.map((r) => r.id as number);
      if (ids.length === 0) return 0;
      return (await x.q('deleteEmptyRepositories', [ids])).rowCount ?? 0;
    });
  }

  async listBlobs(after: string, limit: number): Promise<BlobRecord[]> {
    return (await this.db.one('listBlobs', [after, limit])).rows.map((r) => toBlob(r)!);
  }

  async storageKeyKnown(key: string): Promise<boolean> {
    return ((await this.db.one('storageKeyKnown', [key, digestOfKey(key) ?? null])).rowCount ?? 0) > 0;
  }

  async recordOrphanCandidate(key: string, now: number): Promise<number> {
    return (await this.db.one('recordCandidate', [key, now])).rows[0]!.first_seen as number;
  }

  async dropOrphanCandidate(key: string): Promise<void> {
    await this.db.one('dropCandidate', [key]);
  }

  async pruneOrphanCandidates(seenBefore: number): Promise<void> {
    await this.db.one('pruneCandidates', [seenBefore]);
  }

  async uploadExists(id: string): Promise<boolean> {
    if (!storable(id)) return false;
    return ((await this.db.one('uploadExists', [id])).rowCount ?? 0) > 0;
  }

  async forgetBlob(digest: string, storageKey: string): Promise<boolean> {
    return this.db.tx(async (x) => {
      if ((await x.q('forgetBlob', [digest, storageKey])).rowCount === 0) return false;
      await x.q('deleteLinks', [digest]);
      await x.q('dequeueBlob', [digest]);
      // Last: the repository event lock is held only from here to the commit.
      await this.emit(x, { action: 'fsck.forget', kind: 'blob', repository: '', digest });
      return true;
    });
  }

  async syncQuotaNamespaces(namespaces: QuotaNamespace[]): Promise<void> {
    const keep = new Set(namespaces.map((n) => n.name));
    for (const r of (await this.db.one('quotaNamespaceNames', [])).rows) {
      if (!keep.has(r.name as string)) await this.db.one('deleteQuotaNamespace', [r.name]);
    }
    for (const n of namespaces) {
      await this.db.tx(async (x) => {
        const created = ((await x.q('insertQuotaNamespace', [n.name])).rowCount ?? 0) > 0;
        await x.q('lockQuotaBytes', [n.name]);
        const joined = (await x.q('insertQuotaMembersByName', [n.name, n.repositories])).rowCount ?? 0;
        // The triggers keep a namespace's usage exact from then on: only a new
        // one, or one that gained repositories (with their links), is counted
        // again, so a start costs nothing per image stored.
        if (created || joined > 0) await recountQuota(x, n.name);
      });
    }
  }

  async quotaUsage(): Promise<QuotaUsage[]> {
    return (await this.db.one('quotaUsage', [])).rows.map((r) => ({ namespace: r.name as string, bytes: Number(r.bytes) }));
  }

  async listRetentionTags(repository: string): Promise<RetentionTag[]> {
    return (await this.db.one('retentionTags', [repository])).rows.map(toRetentionTag);
  }

  async deleteTagIfUnchanged(repository: string, seen: RetentionTag, now: number, guard?: WriteGuard): Promise<boolean> {
    if (!storable(seen.tag)) return false;
    return this.db.tx(async (x) => {
      // Locked as a push moving the tag locks it (upsertTag): one of the two sees the other's commit.
      const row = (await x.q('lockRetentionTag', [repository, seen.tag])).rows[0];
      if (!row) return false;
      if (!tagUnchanged(toRetentionTag(row), seen)) return false;
      const refusal = guard?.refuseTagChange?.(seen.tag, 'delete');
      if (refusal) throw refusal;
      await x.q('deleteTagById', [row.repository_id, seen.tag]);
      await x.q('deleteTagPull', [row.repository_id, seen.tag]);
      await x.q('releaseIfOrphanById', [now, row.manifest_id]);
      await this.emit(x, { action: 'retention.delete', repository, tag: seen.tag, digest: seen.digest });
      return true;
      // `now` is GC's pass time (this store's clock): what retention releases is due from then.
    }, 'caller');
  }

  async recordTagPulls(pulls: TagPull[]): Promise<void> {
    const usable = pulls.filter((p) => storable(p.tag) && storable(p.repository));
    if (usable.length === 0) return;
    await this.db.one('recordTagPulls', [usable.map((p) => p.repository), usable.map((p) => p.tag), usable.map((p) => p.at)]);
  }

  async recordRun(run: LifecycleRun): Promise<void> {
    await this.db.one('recordRun', [...runValues(run), KEPT_RUNS - 1]);
  }

  async recordFsckDrift(drift: FsckDrift[]): Promise<void> {
    if (!this.events || drift.length === 0) return;
    await this.db.tx(async (x) => {
      for (const d of drift) await this.emit(x, { action: 'fsck.drift', repository: '', ...d });
    });
  }

  async runTotals(): Promise<LifecycleTotals[]> {
    return (await this.db.one('runTotals')).rows.map(toRunTotals);
  }

  /**
   * The view runs in one READ COMMITTED transaction on one connection, each
   * operation in a savepoint, and is rolled back at the end. Nothing it does
   * is ever visible to anyone else. Locking consequence: rows the view
   * changes stay locked until the dry run ends — garbage manifests, their
   * tags-free children and referrers, dangling links, queue entries, blobs it
   * "marks", expired uploads, empty repositories. Live requests touching
   * exactly those rows (re-pushing a garbage manifest, re-uploading a blob the
   * view marked, pushing into an empty repository it "removed") wait until
   * the dry run finishes; everything else proceeds, and live collectors skip
   * the locked rows. The view itself skips rows live requests hold, like a
   * real run. A dry run is as long as a real run, so keep it for operators.
   */
  async dryRun<T>(fn: (view: GcView) => Promise<T>): Promise<T> {
    if (!this.pool) return fn(this); // already a view: its changes are discarded anyway
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN ISOLATION LEVEL READ COMMITTED'); // explicit: the locking design assumes it, whatever the database default
      // A process that dies mid-run loses its connection and so its locks; a hung one is cut off.
      await client.query(`SET LOCAL idle_in_transaction_session_timeout = '60s'`);
      const view = new PostgresMetadataStore(undefined, new DryRunRunner(client, this.clock), this.clock);
      return await fn(view);
    } finally {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e));
      client.release(broken);
    }
  }

  async appendEvents(events: OutboxEvent[]): Promise<void> {
    if (!this.events || events.length === 0) return;
    // By repository: every writer takes repository event locks in this order, so two batches cannot deadlock.
    const sorted = [...events].sort((a, b) => (a.repository < b.repository ? -1 : a.repository > b.repository ? 1 : 0));
    await this.db.tx(async (x) => {
      for (const e of sorted) await this.emit(x, e);
    });
  }

  async claimEvents(endpoint: string, owner: string, now: number, claim: EventClaim): Promise<OutboxRow[] | undefined> {
    if (!(await this.db.tx((x) => outbox.anyPending(x, endpoint)))) return [];
    return this.db.tx((x) => outbox.claimEvents(x, endpoint, owner, now, claim));
  }

  async ackEvents(endpoint: string, owner: string, seqs: number[]): Promise<void> {
    await this.db.tx((x) => outbox.ackEvents(x, endpoint, owner, seqs));
  }

  async failEvents(endpoint: string, owner: string, seqs: number[], retryAt: number, error: string): Promise<void> {
    await this.db.tx((x) => outbox.failEvents(x, endpoint, owner, seqs, retryAt, error));
  }

  async eventStats(_now: number): Promise<EndpointEventStats[]> {
    return this.db.tx((x) => outbox.eventStats(x));
  }

  async replayEvents(endpoint: string, now: number): Promise<number> {
    return this.db.tx((x) => outbox.replayEvents(x, endpoint, now));
  }

  async now(): Promise<number> {
    if (this.clock === 'caller') return systemNow();
    return (await this.db.one('dbNow')).rows[0]!.now as number;
  }

  // Console queries ----------------------------------------------------------

  async repositorySummaries(): Promise<RepositorySummary[]> {
    return (await this.db.one('repositorySummaries')).rows.map(toRepositorySummary);
  }

  async listTagDetails(repository: string, last: string | undefined, limit: number): Promise<{ items: TagDetail[]; more: boolean }> {
    const rows = (await this.db.one('listTagDetails', [repository, afterKey(last), limit + 1])).rows.map(toTagDetail);
    return { items: rows.slice(0, limit), more: rows.length > limit };
  }

  async manifestUsage(repository: string, digest: string): Promise<ManifestUsage> {
    const [tags, parents] = await Promise.all([
      this.db.one('tagsOfManifest', [repository, digest]),
      this.db.one('parentsOfManifest', [repository, digest]),
    ]);
    return { tags: tags.rows.map((r) => r.name as string), parents: parents.rows.map((r) => r.digest as string) };
  }

  async storageTotals(): Promise<StorageTotals> {
    return toStorageTotals((await this.db.one('storageTotals')).rows[0]!);
  }

  async listRuns(limit: number): Promise<LifecycleRunRecord[]> {
    return (await this.db.one('listRuns', [limit])).rows.map(toRun);
  }

  async recordPulls(pulls: PullCount[]): Promise<void> {
    if (pulls.length === 0) return;
    const values = [pulls.map((p) => p.repository), pulls.map((p) => p.digest), pulls.map((p) => p.count), pulls.map((p) => p.lastPulled)];
    for (let attempt = 1; ; attempt++) {
      try {
        return void (await this.db.one('recordPulls', values));
      } catch (e) {
        // A manifest deleted between the join and the foreign-key check: once more, and the join leaves it out.
        if ((e as { code?: string }).code !== '23503' || attempt >= 3) throw e;
      }
    }
  }

  async pullCounts(repository: string, digests: string[]): Promise<PullCount[]> {
    if (digests.length === 0) return [];
    return (await this.db.one('pullCounts', [repository, digests])).rows.map(toPullCount);
  }

  async close(): Promise<void> {
    await this.pool?.end();
  }
}

// Internals (each runs inside the caller's transaction) -------------------------

/** The repository's id, creating it if needed; key-share locked so deleteEmptyRepositories cannot remove it under us. */
async function ensureRepository(x: Exec, name: string, now: number): Promise<number> {
  for (;;) {
    const found = (await x.q('repositoryIdLocked', [name])).rows[0];
    if (found) return found.id as number;
    const created = (await x.q('insertRepository', [name, now])).rows[0];
    if (created) return created.id as number;
    // Created by a concurrent transaction that has committed since: lock that one.
  }
}

/** Points the tag at the manifest; returns the manifest it pointed at before, if any. */
/**
 * Joins the repository to its quota namespaces and reads their usage with
 * the namespace rows locked, before a link: concurrent links into one
 * namespace then count one after the other. Undefined when no quota applies.
 */
async function quotaBefore(x: Exec, guard: WriteGuard | undefined, repoId: number): Promise<number[] | undefined> {
  if (!guard?.quotas || guard.quotas.length === 0) return undefined;
  const quotas = [...guard.quotas].sort((a, b) => (a.namespace < b.namespace ? -1 : 1));
  const usage = new Map<string, number>();
  for (const q of quotas) {
    await x.q('insertQuotaNamespace', [q.namespace]);
    await x.q('lockQuotaBytes', [q.namespace]);
    // A repository joining with links already (created before the quota) is counted in whole.
    if ((await x.q('insertQuotaMember', [repoId, q.namespace])).rows.length > 0 && (await x.q('repositoryHasLinks', [repoId])).rows.length > 0) {
      await recountQuota(x, q.namespace);
    }
    usage.set(q.namespace, Number((await x.q('quotaBytes', [q.namespace])).rows[0]!.bytes));
  }
  return guard.quotas.map((q) => usage.get(q.namespace)!);
}

/** After the link (the trigger counted it): refuses what took a namespace over its limit. */
async function quotaAfter(x: Exec, guard: WriteGuard, before: number[]): Promise<void> {
  for (const [i, q] of guard.quotas!.entries()) {
    const after = Number((await x.q('quotaBytes', [q.namespace])).rows[0]!.bytes);
    if (after > before[i]! && after > q.limit) throw q.refuse(before[i]!, after - before[i]!);
  }
}

/** Counts a namespace's usage again from its members' links (its row locked first). */
async function recountQuota(x: Exec, namespace: string): Promise<void> {
  await x.q('lockQuotaBytes', [namespace]);
  await x.q('clearQuotaBlobs', [namespace]);
  await x.q('fillQuotaBlobs', [namespace]);
  await x.q('sumQuotaBlobs', [namespace]);
}

async function upsertTag(x: Exec, repoId: number, tag: string, manifestId: number, now: number, guard?: WriteGuard): Promise<number | undefined> {
  for (;;) {
    const current = (await x.q('lockTag', [repoId, tag])).rows[0];
    if (current) {
      // Checked under the tag's lock: a push racing to create the tag is seen here.
      if (guard && current.manifest_id !== manifestId) {
        const refusal = guard.refuseTagChange?.(tag, 'move');
        if (refusal) throw refusal;
      }
      await x.q('updateTag', [repoId, tag, manifestId, now]);
      return current.manifest_id as number;
    }
    if ((await x.q('insertTag', [repoId, tag, manifestId, now])).rowCount) return undefined;
    // Inserted concurrently and committed: lock and update that row.
  }
}

/** Deletes a manifest; its blobs, children and referrers become GC candidates. The row must be locked. */
async function deleteManifestRow(x: Exec, id: number, repoId: number, digest: string, now: number): Promise<void> {
  const blobs = (await x.q('manifestBlobs', [id])).rows.map((r) => r.digest as string);
  const children = (await x.q('manifestChildren', [id])).rows.map((r) => r.child_digest as string);
  await x.q('deleteManifest', [id]);
  if (blobs.length > 0) await x.q('enqueueBlobs', [blobs, now]);
  if (children.length > 0) await x.q('releaseIfOrphan', [now, repoId, children]);
  await x.q('releaseReferrers', [now, repoId, digest]);
}

/**
 * PostgreSQL text cannot hold NUL. Identifiers from the network that contain
 * one (an upload id in a URL) name nothing Berth stores: the lookup is a miss,
 * not an error.
 */
function storable(text: string): boolean {
  return !text.includes('\0');
}

/**
 * `last` of a listing, for `name > last`. Names never contain NUL, so for
 * them "after 'a\0x'" is "after 'a'": cut at the first NUL.
 */
function afterKey(last: string | undefined): string {
  if (last === undefined) return '';
  const nul = last.indexOf('\0');
  return nul < 0 ? last : last.slice(0, nul);
}
