/**
 * GC's dry run on SQLite, without copying the database (issue 18: at a
 * million images the copy was 11.2 s of an 11.6 s dry run).
 *
 * SQLite has one writer at a time, so a dry run cannot do what PostgreSQL's
 * does (the real statements in a transaction rolled back at the end): that
 * would hold the write lock, and every push, for the whole pass. Instead
 * this view holds a read transaction on its own connection (one consistent
 * snapshot, taken once; the server and other processes go on writing) and
 * keeps what the pass would change in TEMP tables, which belong to this
 * connection alone and vanish with it. Each GC decision below is the store's
 * own (SqliteMetadataStore, "Lifecycle"), asked of the snapshot as the pass's
 * earlier would-be changes left it:
 *
 *   gone_manifests, gone_tags, gone_links, gone_uploads, gone_repositories:
 *     rows the pass would have deleted;
 *   manifest_untagged: a manifest's untagged_at as the pass would have set it
 *     (NULL: held by a tag, a parent or its subject);
 *   link_refs: a link's count of referencing manifests after the pass's
 *     manifest deletions;
 *   queue: a GC-queue entry as the pass left it (since NULL: dequeued);
 *   deleting_blobs: blobs the pass would have claimed.
 *
 * The TEMP tables live in a temporary file bounded by the page cache, not in
 * memory: a first pass after a bulk load dequeues a million candidates.
 * The differential test (test/lifecycle/gc-dry-run-differential.test.ts)
 * checks that a dry run reports exactly what the real run then does.
 */
import Database from 'better-sqlite3';
import type { BlobCandidate, BlobRecord, GcView, ManifestCandidate, ManifestRecord, ManifestRef, Page, RetentionTag, WriteGuard } from '../store.js';
import { claimBlob, collectManifest } from './gc-verdicts.js';
import { tagUnchanged } from '../decisions.js';
import { page, toBlob, toBlobCandidate, toManifest, toManifestCandidate, toRetentionTag, type Row } from '../records.js';


const OVERLAY = `
  CREATE TEMP TABLE gone_manifests (id INTEGER PRIMARY KEY);
  CREATE TEMP TABLE manifest_untagged (id INTEGER PRIMARY KEY, untagged_at INTEGER);
  CREATE INDEX temp.manifest_untagged_by_time ON manifest_untagged(untagged_at, id) WHERE untagged_at IS NOT NULL;
  CREATE TEMP TABLE gone_tags (repository_id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (repository_id, name)) WITHOUT ROWID;
  CREATE TEMP TABLE gone_links (repository_id INTEGER NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (repository_id, digest)) WITHOUT ROWID;
  CREATE TEMP TABLE link_refs (digest TEXT NOT NULL, repository_id INTEGER NOT NULL, refs INTEGER NOT NULL, PRIMARY KEY (digest, repository_id)) WITHOUT ROWID;
  CREATE TEMP TABLE queue (digest TEXT PRIMARY KEY, since INTEGER) WITHOUT ROWID;
  CREATE INDEX temp.queue_by_since ON queue(since, digest) WHERE since IS NOT NULL;
  CREATE TEMP TABLE deleting_blobs (digest TEXT PRIMARY KEY) WITHOUT ROWID;
  CREATE TEMP TABLE gone_uploads (id TEXT PRIMARY KEY) WITHOUT ROWID;
  CREATE TEMP TABLE gone_repositories (id INTEGER PRIMARY KEY);
`;

/**
 * Runs `fn` against a dry-run view of the SQLite database in `file`; nothing
 * it does reaches the file. `cacheKib`: the store's page cache, given to the
 * snapshot's pages and to the TEMP tables each.
 */
export async function withDryRunView<T>(file: string, cacheKib: number, fn: (view: GcView) => Promise<T>): Promise<T> {
  // Read-only: whatever this code does, it cannot write the registry's data.
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 10000');
    // Each schema has a cache of its own, 16 MB by default in better-sqlite3's
    // build: the TEMP tables' would have added that to a first pass's peak.
    db.pragma('temp_store = FILE'); // first: changing it drops the TEMP schema
    db.pragma(`cache_size = -${cacheKib}`);
    db.pragma(`temp.cache_size = -${cacheKib}`);
    db.exec(OVERLAY);
    db.exec('BEGIN');
    // The first read of the main database takes the snapshot every decision reads.
    db.prepare('SELECT count(*) FROM main.sqlite_master').get();
    try {
      return await fn(new SqliteDryRunView(db));
    } finally {
      db.exec('ROLLBACK');
    }
  } finally {
    db.close();
  }
}

/** Whether a row of main.manifests `m` is still there as the pass left it. */
const MANIFEST_KEPT = `NOT EXISTS (SELECT 1 FROM temp.gone_manifests g WHERE g.id = m.id)`;
/** The untagged_at of `m` as the pass left it (`o`: its manifest_untagged row, LEFT JOINed). */
const UNTAGGED_AT = `CASE WHEN o.id IS NULL THEN m.untagged_at ELSE o.untagged_at END`;

class SqliteDryRunView implements GcView {
  private readonly s: ReturnType<typeof prepare>;

  constructor(private readonly db: Database.Database) {
    this.s = prepare(db);
  }

  async listRepositories(last: string | undefined, limit: number): Promise<Page> {
    return page(this.s.listRepositories.all(last ?? '', limit + 1) as string[], limit);
  }

  async listRetentionTags(repository: string): Promise<RetentionTag[]> {
    return (this.s.retentionTags.all(repository) as Row[]).map(toRetentionTag);
  }

  async deleteTagIfUnchanged(repository: string, seen: RetentionTag, now: number, guard?: WriteGuard): Promise<boolean> {
    return this.change(() => {
      const row = this.s.retentionTag.get(repository, seen.tag) as Row | undefined;
      if (!row) return false;
      if (!tagUnchanged(toRetentionTag(row), seen)) return false;
      const refusal = guard?.refuseTagChange?.(seen.tag, 'delete');
      if (refusal) throw refusal;
      this.s.goneTag.run(row.repository_id, seen.tag);
      this.releaseIfOrphan(row.manifest_id as number, now);
      return true;
    });
  }

  async listManifestCandidates(cutoff: number, limit: number, after?: ManifestCandidate): Promise<ManifestCandidate[]> {
    // As the store's two keyset seeks (the rest of the last page's time, then
    // later times), each over the untouched rows and the pass's own, merged.
    const byTime = (a: Row, b: Row) => (a.untagged_at as number) - (b.untagged_at as number) || (a.id as number) - (b.id as number);
    const atTime = { since: after?.since, id: after?.id, limit };
    const rows = after && after.since <= cutoff ? merge(this.s.liveCandidatesAtTime, this.s.ownCandidatesAtTime, atTime, byTime, limit) : [];
    if (rows.length < limit) {
      const later = { since: after?.since ?? Number.MIN_SAFE_INTEGER, cutoff, limit: limit - rows.length };
      rows.push(...merge(this.s.liveCandidatesAfterTime, this.s.ownCandidatesAfterTime, later, byTime, later.limit));
    }
    return rows.map(toManifestCandidate);
  }

  async deleteManifestIfGarbage(ref: ManifestRef, cutoff: number, now: number): Promise<ManifestRecord | undefined> {
    return this.change(() => {
      const row = collectManifest(
        {
          row: () => this.s.manifestForGc.get(ref.repository, ref.digest) as Row | undefined,
          tagged: (id) => this.s.isTagged.get(id) !== undefined,
          hasParent: (repoId) => this.s.hasParent.get(repoId, ref.digest) !== undefined,
          holds: (repoId, digest) => this.s.manifestId.get(repoId, digest) !== undefined,
          hold: (id) => this.s.setUntagged.run(id, null),
          delete: (id, repoId) => this.deleteManifestRow(id, repoId, ref.digest, now),
        },
        cutoff,
      );
      return toManifest(row);
    });
  }

  async listBlobCandidates(cutoff: number, limit: number, after?: BlobCandidate): Promise<BlobCandidate[]> {
    const bySince = (a: Row, b: Row) => (a.since as number) - (b.since as number) || ((a.digest as string) < (b.digest as string) ? -1 : 1);
    const params = { cutoff, since: after?.since ?? Number.MIN_SAFE_INTEGER, digest: after?.digest ?? '', limit };
    return merge(this.s.liveBlobCandidates, this.s.ownBlobCandidates, params, bySince, limit).map(toBlobCandidate);
  }

  async claimBlobIfGarbage(digest: string, cutoff: number): Promise<{ blob?: BlobRecord; linksRemoved: number }> {
    return this.change(() => {
      const { row, linksRemoved } = claimBlob(
        {
          removeDanglingLinks: () => {
            const dangling = this.s.danglingLinks.all({ digest, cutoff }) as number[];
            for (const repoId of dangling) this.s.goneLink.run(repoId, digest);
            return dangling.length;
          },
          row: () => this.s.blobForGc.get(digest) as Row | undefined,
          referenced: () => this.s.isReferenced.get(digest) !== undefined,
          newestLink: () => this.s.newestLink.get(digest) as number | null,
          dequeue: () => this.s.setQueued.run(digest, null),
          // As the store's UPDATE: only a blob still in the queue moves.
          requeue: (at) => this.queuedSince(digest) !== undefined && this.s.setQueued.run(digest, at),
          markDeleting: () => this.s.markDeleting.run(digest),
        },
        cutoff,
      );
      return row ? { blob: toBlob(row), linksRemoved } : { linksRemoved };
    });
  }

  async expireUploads(cutoff: number, limit: number): Promise<string[]> {
    return this.change(() => {
      const ids = this.s.staleUploads.all(cutoff, limit) as string[];
      for (const id of ids) this.s.goneUpload.run(id);
      return ids;
    });
  }

  async deleteEmptyRepositories(): Promise<number> {
    return this.change(() => this.s.goneEmptyRepositories.run().changes);
  }

  /**
   * As the store's deleteManifestRow: the manifest goes (with its references
   * and its rows as a parent), its blobs are queued, its children and
   * referrers become candidates.
   */
  private deleteManifestRow(id: number, repoId: number, digest: string, now: number): void {
    const blobs = this.s.manifestBlobs.all(id) as string[];
    const children = this.s.manifestChildren.all(id) as string[];
    this.s.goneManifest.run(id);
    for (const blob of blobs) {
      this.s.dropReference.run({ repoId, digest: blob });
      // As the store's enqueueBlob: a time in the queue never moves back.
      this.s.setQueued.run(blob, Math.max(this.queuedSince(blob) ?? now, now));
    }
    for (const child of children) {
      const childId = this.s.manifestId.get(repoId, child) as number | undefined;
      if (childId !== undefined) this.releaseIfOrphan(childId, now);
    }
    this.s.releaseReferrers.run({ now, repoId, subject: digest });
  }

  /** One operation's would-be changes, all or none (as the store's savepoint per write). */
  private change<T>(fn: () => T): Promise<T> {
    this.db.exec('SAVEPOINT op');
    try {
      const value = fn();
      this.db.exec('RELEASE op');
      return Promise.resolve(value);
    } catch (e) {
      this.db.exec('ROLLBACK TO op');
      this.db.exec('RELEASE op');
      return Promise.reject(e);
    }
  }

  /** When the blob is in GC's queue since, as the pass left it; undefined when it is not. */
  private queuedSince(digest: string): number | undefined {
    const own = this.s.ownQueued.get(digest) as Row | undefined;
    const since = own ? own.since : this.s.liveQueued.get(digest);
    return since === null ? undefined : (since as number | undefined);
  }

  /** As the store's releaseIfOrphan: a candidate from now, unless a tag or a parent still holds it. */
  private releaseIfOrphan(id: number, now: number): void {
    this.s.releaseIfOrphan.run({ id, now });
  }
}

/** The first `limit` rows of two pages, each already in `order`. */
function merge(a: Database.Statement, b: Database.Statement, params: object, order: (x: Row, y: Row) => number, limit: number): Row[] {
  return [...(a.all(params) as Row[]), ...(b.all(params) as Row[])].sort(order).slice(0, limit);
}

function prepare(db: Database.Database) {
  const p = (sql: string) => db.prepare(sql);
  const tagKept = (t: string) => `NOT EXISTS (SELECT 1 FROM temp.gone_tags gt WHERE gt.repository_id = ${t}.repository_id AND gt.name = ${t}.name)`;
  const linkKept = (l: string) => `NOT EXISTS (SELECT 1 FROM temp.gone_links gl WHERE gl.repository_id = ${l}.repository_id AND gl.digest = ${l}.digest)`;
  const parentKept = (c: string) => `NOT EXISTS (SELECT 1 FROM temp.gone_manifests g WHERE g.id = ${c}.manifest_id)`;
  const retentionTags = `
    SELECT t.repository_id, t.name, t.manifest_id, t.updated_at, m.digest, m.subject, tp.pulled_at
    FROM main.repositories r JOIN main.tags t ON t.repository_id = r.id JOIN main.manifests m ON m.id = t.manifest_id
    LEFT JOIN main.tag_pulls tp ON tp.repository_id = t.repository_id AND tp.tag = t.name
    WHERE r.name = ? AND ${tagKept('t')}`;
  const liveCandidates = (where: string) => `
    SELECT r.name, m.digest, m.untagged_at, m.id FROM main.manifests m JOIN main.repositories r ON r.id = m.repository_id
    WHERE m.untagged_at IS NOT NULL AND ${where}
      AND NOT EXISTS (SELECT 1 FROM temp.manifest_untagged o WHERE o.id = m.id) AND ${MANIFEST_KEPT}
    ORDER BY m.untagged_at, m.id LIMIT @limit`;
  const ownCandidates = (where: string) => `
    SELECT r.name, m.digest, o.untagged_at, m.id FROM temp.manifest_untagged o
    JOIN main.manifests m ON m.id = o.id JOIN main.repositories r ON r.id = m.repository_id
    WHERE o.untagged_at IS NOT NULL AND ${where} AND ${MANIFEST_KEPT}
    ORDER BY o.untagged_at, o.id LIMIT @limit`;
  return {
    listRepositories: p(`
      SELECT name FROM main.repositories r WHERE name > ?
        AND NOT EXISTS (SELECT 1 FROM temp.gone_repositories g WHERE g.id = r.id) ORDER BY name LIMIT ?`).pluck(),
    retentionTags: p(`${retentionTags} ORDER BY t.name`),
    retentionTag: p(`${retentionTags} AND t.name = ?`),
    goneTag: p(`INSERT INTO temp.gone_tags (repository_id, name) VALUES (?, ?)`),

    // Candidates, as the store's keyset seeks over manifests_untagged: rows the
    // pass has not touched (live), and those whose untagged_at it set (own).
    liveCandidatesAtTime: p(liveCandidates(`m.untagged_at = @since AND m.id > @id`)),
    liveCandidatesAfterTime: p(liveCandidates(`m.untagged_at > @since AND m.untagged_at <= @cutoff`)),
    ownCandidatesAtTime: p(ownCandidates(`o.untagged_at = @since AND o.id > @id`)),
    ownCandidatesAfterTime: p(ownCandidates(`o.untagged_at > @since AND o.untagged_at <= @cutoff`)),
    manifestForGc: p(`
      SELECT m.id, m.repository_id, m.digest, m.media_type, m.size, m.body, m.subject, ${UNTAGGED_AT} AS untagged_at
      FROM main.manifests m JOIN main.repositories r ON r.id = m.repository_id
      LEFT JOIN temp.manifest_untagged o ON o.id = m.id
      WHERE r.name = ? AND m.digest = ? AND ${MANIFEST_KEPT}`),
    manifestId: p(`SELECT id FROM main.manifests m WHERE repository_id = ? AND digest = ? AND ${MANIFEST_KEPT}`).pluck(),
    isTagged: p(`SELECT 1 FROM main.tags t WHERE t.manifest_id = ? AND ${tagKept('t')} LIMIT 1`),
    hasParent: p(`SELECT 1 FROM main.manifest_children c WHERE c.repository_id = ? AND c.child_digest = ? AND ${parentKept('c')} LIMIT 1`),
    setUntagged: p(`
      INSERT INTO temp.manifest_untagged (id, untagged_at) VALUES (?, ?)
      ON CONFLICT (id) DO UPDATE SET untagged_at = excluded.untagged_at`),
    releaseIfOrphan: p(`
      INSERT INTO temp.manifest_untagged (id, untagged_at)
      SELECT m.id, @now FROM main.manifests m LEFT JOIN temp.manifest_untagged o ON o.id = m.id
      WHERE m.id = @id AND ${MANIFEST_KEPT} AND ${UNTAGGED_AT} IS NULL
        AND NOT EXISTS (SELECT 1 FROM main.tags t WHERE t.manifest_id = m.id AND ${tagKept('t')})
        AND NOT EXISTS (SELECT 1 FROM main.manifest_children c
                        WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest AND ${parentKept('c')})
      ON CONFLICT (id) DO UPDATE SET untagged_at = excluded.untagged_at`),
    releaseReferrers: p(`
      INSERT INTO temp.manifest_untagged (id, untagged_at)
      SELECT m.id, max(coalesce(${UNTAGGED_AT}, @now), @now) FROM main.manifests m LEFT JOIN temp.manifest_untagged o ON o.id = m.id
      WHERE m.repository_id = @repoId AND m.subject = @subject AND ${MANIFEST_KEPT}
      ON CONFLICT (id) DO UPDATE SET untagged_at = excluded.untagged_at`),
    manifestBlobs: p(`SELECT digest FROM main.manifest_blobs WHERE manifest_id = ?`).pluck(),
    manifestChildren: p(`SELECT child_digest FROM main.manifest_children WHERE manifest_id = ?`).pluck(),
    goneManifest: p(`INSERT INTO temp.gone_manifests (id) VALUES (?)`),
    // As the trigger link_refs_manifest_removed: the link, if it is still there, loses one reference.
    dropReference: p(`
      INSERT INTO temp.link_refs (digest, repository_id, refs)
      SELECT l.digest, l.repository_id, coalesce(o.refs, l.refs) - 1 FROM main.repository_blobs l
      LEFT JOIN temp.link_refs o ON o.digest = l.digest AND o.repository_id = l.repository_id
      WHERE l.repository_id = @repoId AND l.digest = @digest AND ${linkKept('l')}
      ON CONFLICT (digest, repository_id) DO UPDATE SET refs = excluded.refs`),
    liveBlobCandidates: p(`
      SELECT digest, since FROM main.gc_blob_queue q WHERE since <= @cutoff AND (since, digest) > (@since, @digest)
        AND NOT EXISTS (SELECT 1 FROM temp.queue o WHERE o.digest = q.digest)
      ORDER BY since, digest LIMIT @limit`),
    ownBlobCandidates: p(`
      SELECT digest, since FROM temp.queue WHERE since IS NOT NULL AND since <= @cutoff AND (since, digest) > (@since, @digest)
      ORDER BY since, digest LIMIT @limit`),
    liveQueued: p(`SELECT since FROM main.gc_blob_queue WHERE digest = ?`).pluck(),
    ownQueued: p(`SELECT since FROM temp.queue WHERE digest = ?`),
    // As the store's deleteDanglingLinks: links no manifest names (their count as the pass left it), not seen since the cutoff.
    danglingLinks: p(`
      SELECT l.repository_id FROM main.repository_blobs l
      WHERE l.digest = @digest AND l.refs = 0 AND l.last_seen <= @cutoff AND ${linkKept('l')}
        AND NOT EXISTS (SELECT 1 FROM temp.link_refs o WHERE o.digest = l.digest AND o.repository_id = l.repository_id)
      UNION ALL
      SELECT l.repository_id FROM temp.link_refs o
      JOIN main.repository_blobs l ON l.digest = o.digest AND l.repository_id = o.repository_id
      WHERE o.digest = @digest AND o.refs = 0 AND l.last_seen <= @cutoff AND ${linkKept('l')}`).pluck(),
    goneLink: p(`INSERT INTO temp.gone_links (repository_id, digest) VALUES (?, ?)`),
    blobForGc: p(`
      SELECT digest, size, storage_key, last_seen,
        CASE WHEN EXISTS (SELECT 1 FROM temp.deleting_blobs d WHERE d.digest = b.digest) THEN 1 ELSE state END AS state
      FROM main.blobs b WHERE digest = ?`),
    isReferenced: p(`SELECT 1 FROM main.manifest_blobs mb WHERE mb.digest = ? AND ${parentKept('mb')} LIMIT 1`),
    newestLink: p(`SELECT max(last_seen) FROM main.repository_blobs l WHERE l.digest = ? AND ${linkKept('l')}`).pluck(),
    setQueued: p(`INSERT INTO temp.queue (digest, since) VALUES (?, ?) ON CONFLICT (digest) DO UPDATE SET since = excluded.since`),
    markDeleting: p(`INSERT OR IGNORE INTO temp.deleting_blobs (digest) VALUES (?)`),

    staleUploads: p(`
      SELECT id FROM main.uploads u WHERE updated_at < ?
        AND NOT EXISTS (SELECT 1 FROM temp.gone_uploads g WHERE g.id = u.id) ORDER BY updated_at LIMIT ?`).pluck(),
    goneUpload: p(`INSERT INTO temp.gone_uploads (id) VALUES (?)`),
    goneEmptyRepositories: p(`
      INSERT INTO temp.gone_repositories (id)
      SELECT r.id FROM main.repositories r WHERE NOT EXISTS (SELECT 1 FROM temp.gone_repositories g WHERE g.id = r.id)
        AND NOT EXISTS (SELECT 1 FROM main.manifests m WHERE m.repository_id = r.id AND ${MANIFEST_KEPT})
        AND NOT EXISTS (SELECT 1 FROM main.repository_blobs l WHERE l.repository_id = r.id AND ${linkKept('l')})`),
  };
}
