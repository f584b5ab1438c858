/**
 * The console's read-only queries on SQLite (src/console/). Each one is
 * answered from indexes of the schema (tags by (repository, name), tags by
 * manifest, children by (repository, child)) or from the per-repository
 * figures the schema's triggers keep; storageTotals alone reads every blob (once).
 */
import type Database from 'better-sqlite3';

export function prepareConsoleQueries(db: Database.Database) {
  const p = (sql: string) => db.prepare(sql);
  return {
    // The figures the schema keeps per repository (triggers of the same
    // transactions as the changes): one row per repository, however many
    // tags, manifests and links it holds.
    repositorySummaries: p(`
      SELECT name, tag_count AS tags, manifest_count AS manifests, bytes, unique_bytes, coalesce(last_push, created_at) AS last_push
      FROM repositories ORDER BY name`),
    listTagDetails: p(`
      SELECT t.name AS tag, t.updated_at, m.digest, m.media_type, m.artifact_type, m.size, m.body, m.created_at
      FROM tags t
      JOIN manifests m ON m.id = t.manifest_id
      -- The repository's id first, so the page is read in order from the tag key and stops at the limit.
      WHERE t.repository_id = (SELECT id FROM repositories WHERE name = ?) AND t.name > ?
      ORDER BY t.name LIMIT ?`),
    tagsOfManifest: p(`
      SELECT t.name FROM repositories r
      JOIN manifests m ON m.repository_id = r.id
      JOIN tags t ON t.manifest_id = m.id
      WHERE r.name = ? AND m.digest = ? ORDER BY t.name LIMIT 1000`).pluck(),
    parentsOfManifest: p(`
      SELECT p.digest FROM repositories r
      JOIN manifest_children c ON c.repository_id = r.id
      JOIN manifests p ON p.id = c.manifest_id
      WHERE r.name = ? AND c.child_digest = ? ORDER BY p.digest LIMIT 1000`).pluck(),
    // One pass over the blobs (the admin storage page): whether a blob is
    // linked anywhere is its kept link count, not a probe of the link index.
    storageTotals: p(`
      SELECT
        count(*) FILTER (WHERE state = 0) AS blobs,
        coalesce(sum(size) FILTER (WHERE state = 0), 0) AS bytes,
        count(*) FILTER (WHERE state = 0 AND links = 0) AS unlinked_blobs,
        coalesce(sum(size) FILTER (WHERE state = 0 AND links = 0), 0) AS unlinked_bytes,
        count(*) FILTER (WHERE state <> 0) AS deleting_blobs,
        (SELECT count(*) FROM gc_blob_queue) AS queued_blobs,
        (SELECT count(*) FROM manifests WHERE untagged_at IS NOT NULL) AS untagged_manifests,
        (SELECT count(*) FROM uploads) AS uploads,
        (SELECT coalesce(sum("offset"), 0) FROM uploads) AS upload_bytes
      FROM blobs`),
    listRuns: p(`SELECT * FROM lifecycle_runs ORDER BY id DESC LIMIT ?`),
    recordPull: p(`
      INSERT INTO manifest_pulls (manifest_id, count, last_pulled)
      SELECT m.id, ?, ? FROM repositories r JOIN manifests m ON m.repository_id = r.id WHERE r.name = ? AND m.digest = ?
      ON CONFLICT (manifest_id) DO UPDATE SET count = count + excluded.count, last_pulled = max(last_pulled, excluded.last_pulled)`),
    pullCounts: p(`
      SELECT r.name, m.digest, p.count, p.last_pulled
      FROM repositories r
      JOIN manifests m ON m.repository_id = r.id
      JOIN manifest_pulls p ON p.manifest_id = m.id
      WHERE r.name = ? AND m.digest IN (SELECT value FROM json_each(?))`),
  };
}
