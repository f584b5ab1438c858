/**
 * Row → record mapping shared by the SQLite and PostgreSQL stores. Both
 * schemas use the same column names, and both drivers hand back plain JS
 * values: better-sqlite3 numbers and Buffers, and pg the same (the
 * PostgreSQL pool parses int8, so sizes, times, counts and bigint sums, as
 * numbers; bytea arrives as a Buffer). Nothing here touches a database.
 */
import type {
  BlobRecord,
  LifecycleRun,
  LifecycleRunRecord,
  LifecycleTotals,
  ManifestRecord,
  ManifestCandidate,
  BlobCandidate,
  NewManifest,
  Page,
  PullCount,
  ReferrerDescriptor,
  RepositorySummary,
  StorageTotals,
  TagDetail,
  UploadRecord,
} from './store.js';

export type Row = Record<string, unknown>;

/** Columns: digest, size, storage_key, last_seen. */
export function toBlob(row: Row | undefined): BlobRecord | undefined {
  if (!row) return undefined;
  return { digest: row.digest as string, size: row.size as number, storageKey: row.storage_key as string, lastSeen: row.last_seen as number };
}

/** Columns: digest, media_type, size, body. */
export function toManifest(row: Row | undefined): ManifestRecord | undefined {
  if (!row) return undefined;
  return { digest: row.digest as string, mediaType: row.media_type as string, size: row.size as number, body: row.body as Buffer };
}

/** Columns: id, repository, offset, created_at, updated_at, hash_state, owner. */
export function toUpload(row: Row | undefined): UploadRecord | undefined {
  if (!row) return undefined;
  return {
    id: row.id as string,
    repository: row.repository as string,
    offset: row.offset as number,
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    ...(row.hash_state ? { hashState: row.hash_state as Buffer } : {}),
    ...(typeof row.owner === 'string' ? { owner: row.owner } : {}),
    ...(row.committing_key ? { committingKey: row.committing_key as string } : {}),
  };
}

/** Columns: name (the repository), digest. */
export function toManifestCandidate(row: Row): ManifestCandidate {
  return { repository: row.name as string, digest: row.digest as string, since: Number(row.untagged_at), id: Number(row.id) };
}

export function toBlobCandidate(row: Row): BlobCandidate {
  return { digest: row.digest as string, since: Number(row.since) };
}

/**
 * Referrer rows (digest, media_type, size, artifact_type, annotations as JSON
 * text), in the order given, keeping only `artifactType` when one is asked for.
 */
export function toReferrers(rows: Row[], artifactType: string | undefined): ReferrerDescriptor[] {
  return rows
    .filter((r) => artifactType === undefined || r.artifact_type === artifactType)
    .map((r) => {
      const d: ReferrerDescriptor = { mediaType: r.media_type as string, digest: r.digest as string, size: r.size as number };
      if (r.artifact_type) d.artifactType = r.artifact_type as string;
      if (r.annotations) d.annotations = JSON.parse(r.annotations as string);
      return d;
    });
}

/** One row per kind of the runTotals query (sums and counts as numbers). */
export function toRunTotals(row: Row): LifecycleTotals {
  return {
    kind: row.kind as string,
    runs: row.runs as number,
    manifestsDeleted: row.manifests_deleted as number,
    blobsDeleted: row.blobs_deleted as number,
    bytesReclaimed: row.bytes_reclaimed as number,
    uploadsPurged: row.uploads_purged as number,
    problems: row.problems as number,
    durationMs: row.duration_ms as number,
    lastRunAt: row.last_run_at as number,
  };
}

/**
 * A run's values in the column order of lifecycle_runs: kind, trigger,
 * started_at, duration_ms, manifests_deleted, blobs_deleted, bytes_reclaimed,
 * uploads_purged, problems.
 */
export function runValues(run: LifecycleRun): unknown[] {
  return [
    run.kind, run.trigger, run.startedAt, run.durationMs, run.manifestsDeleted, run.blobsDeleted,
    run.bytesReclaimed, run.uploadsPurged, run.problems,
  ];
}

/**
 * A new manifest's values in the column order of manifests: repository_id,
 * digest, media_type, artifact_type, subject, annotations (JSON text),
 * size, body, created_at. The stores add untagged_at their own way.
 */
export function manifestValues(repoId: number, m: NewManifest, now: number): unknown[] {
  return [
    repoId, m.digest, m.mediaType, m.artifactType ?? null, m.subject ?? null,
    m.annotations ? JSON.stringify(m.annotations) : null, m.size, m.body, now,
  ];
}

/** A listing fetched with `limit + 1` rows: the first `limit`, and whether more follow. */
export function page(items: string[], limit: number): Page {
  return { items: items.slice(0, limit), more: items.length > limit };
}

/** Columns: name, tags, manifests, bytes, unique_bytes, last_push. */
export function toRepositorySummary(row: Row): RepositorySummary {
  return {
    name: row.name as string,
    tags: Number(row.tags),
    manifests: Number(row.manifests),
    bytes: Number(row.bytes),
    uniqueBytes: Number(row.unique_bytes),
    lastPush: Number(row.last_push),
  };
}

/** Columns: tag, updated_at, digest, media_type, artifact_type, size, body, created_at. */
export function toTagDetail(row: Row): TagDetail {
  const manifest: TagDetail['manifest'] = {
    digest: row.digest as string,
    mediaType: row.media_type as string,
    size: Number(row.size),
    body: row.body as Buffer,
    createdAt: Number(row.created_at),
  };
  if (row.artifact_type) manifest.artifactType = row.artifact_type as string;
  return { tag: row.tag as string, updatedAt: Number(row.updated_at), manifest };
}

/** One row of the storageTotals query. */
export function toStorageTotals(row: Row): StorageTotals {
  const n = (k: string) => Number(row[k] ?? 0);
  return {
    blobs: n('blobs'),
    bytes: n('bytes'),
    unlinkedBlobs: n('unlinked_blobs'),
    unlinkedBytes: n('unlinked_bytes'),
    deletingBlobs: n('deleting_blobs'),
    queuedBlobs: n('queued_blobs'),
    untaggedManifests: n('untagged_manifests'),
    uploads: n('uploads'),
    uploadBytes: n('upload_bytes'),
  };
}

/** Columns of lifecycle_runs. */
export function toRun(row: Row): LifecycleRunRecord {
  return {
    id: Number(row.id),
    kind: row.kind as LifecycleRun['kind'],
    trigger: row.trigger as LifecycleRun['trigger'],
    startedAt: Number(row.started_at),
    durationMs: Number(row.duration_ms),
    manifestsDeleted: Number(row.manifests_deleted),
    blobsDeleted: Number(row.blobs_deleted),
    bytesReclaimed: Number(row.bytes_reclaimed),
    uploadsPurged: Number(row.uploads_purged),
    problems: Number(row.problems),
  };
}

/** Columns: name, digest, count, last_pulled. */
export function toPullCount(row: Row): PullCount {
  return { repository: row.name as string, digest: row.digest as string, count: Number(row.count), lastPulled: Number(row.last_pulled) };
}

/** A tag row with its manifest's digest and subject and its pull time (retention, policy/). */
export function toRetentionTag(r: Row): import('./store.js').RetentionTag {
  const detail: import('./store.js').RetentionTag = { tag: r.name as string, digest: r.digest as string, pushedAt: Number(r.updated_at) };
  if (r.pulled_at !== null && r.pulled_at !== undefined) detail.pulledAt = Number(r.pulled_at);
  if (r.subject !== null && r.subject !== undefined) detail.subject = r.subject as string;
  return detail;
}
