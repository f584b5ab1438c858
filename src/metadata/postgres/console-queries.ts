/**
 * The console's read-only queries on PostgreSQL (src/console/), named like
 * the store's other statements (prepared once per connection). Sums of
 * bigint columns are numeric in PostgreSQL: cast back to bigint, which the
 * pool parses as numbers.
 */
export const CONSOLE_SQL = {
  // The figures the schema keeps per repository (triggers of the same
  // transactions as the changes): one row per repository, however many
  // tags, manifests and links it holds.
  // Plus the deltas appended since GC last folded them in (see migration 9).
  repositorySummaries: `
    SELECT r.name, r.tag_count + coalesce(d.tags, 0) AS tags, r.manifest_count + coalesce(d.manifests, 0) AS manifests,
      r.bytes + coalesce(d.bytes, 0) AS bytes, r.unique_bytes + coalesce(d.unique_bytes, 0) AS unique_bytes,
      coalesce(greatest(r.last_push, d.last_push), r.created_at) AS last_push
    FROM repositories r
    LEFT JOIN (SELECT repository_id, sum(tags)::bigint AS tags, sum(manifests)::bigint AS manifests, max(last_push) AS last_push,
                 sum(bytes)::bigint AS bytes, sum(unique_bytes)::bigint AS unique_bytes
               FROM repository_stat_deltas GROUP BY repository_id) d ON d.repository_id = r.id
    ORDER BY r.name`,
  listTagDetails: `
    SELECT t.name AS tag, t.updated_at, m.digest, m.media_type, m.artifact_type, m.size, m.body, m.created_at
    FROM tags t
    JOIN manifests m ON m.id = t.manifest_id
    -- The repository's id first, so the page is read in order from the tag key and stops at the limit.
    WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.name > $2
    ORDER BY t.name LIMIT $3`,
  tagsOfManifest: `
    SELECT t.name FROM repositories r
    JOIN manifests m ON m.repository_id = r.id
    JOIN tags t ON t.manifest_id = m.id
    WHERE r.name = $1 AND m.digest = $2 ORDER BY t.name LIMIT 1000`,
  parentsOfManifest: `
    SELECT p.digest FROM repositories r
    JOIN manifest_children c ON c.repository_id = r.id
    JOIN manifests p ON p.id = c.manifest_id
    WHERE r.name = $1 AND c.child_digest = $2 ORDER BY p.digest LIMIT 1000`,
  // One pass over the blobs (the admin storage page): whether a blob is
  // linked anywhere is its kept link count, not a probe of the link index.
  storageTotals: `
    SELECT
      count(*) FILTER (WHERE state = 0) AS blobs,
      coalesce(sum(size) FILTER (WHERE state = 0), 0)::bigint AS bytes,
      count(*) FILTER (WHERE state = 0 AND links = 0) AS unlinked_blobs,
      coalesce(sum(size) FILTER (WHERE state = 0 AND links = 0), 0)::bigint AS unlinked_bytes,
      count(*) FILTER (WHERE state <> 0) AS deleting_blobs,
      (SELECT count(*) FROM gc_blob_queue) AS queued_blobs,
      (SELECT count(*) FROM manifests WHERE untagged_at IS NOT NULL) AS untagged_manifests,
      (SELECT count(*) FROM uploads) AS uploads,
      (SELECT coalesce(sum("offset"), 0)::bigint FROM uploads) AS upload_bytes
    FROM blobs`,
  listRuns: `SELECT * FROM lifecycle_runs ORDER BY id DESC LIMIT $1`,
  // One statement per batch; rows in (name, digest) order so that two nodes' flushes lock them in the same order.
  recordPulls: `
    INSERT INTO manifest_pulls (manifest_id, count, last_pulled)
    SELECT m.id, v.count, v.last
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS v(name, digest, count, last)
    JOIN repositories r ON r.name = v.name
    JOIN manifests m ON m.repository_id = r.id AND m.digest = v.digest
    ORDER BY v.name, v.digest
    ON CONFLICT (manifest_id) DO UPDATE SET count = manifest_pulls.count + excluded.count,
      last_pulled = GREATEST(manifest_pulls.last_pulled, excluded.last_pulled)`,
  pullCounts: `
    SELECT r.name, m.digest, p.count, p.last_pulled
    FROM repositories r
    JOIN manifests m ON m.repository_id = r.id
    JOIN manifest_pulls p ON p.manifest_id = m.id
    WHERE r.name = $1 AND m.digest = ANY($2::text[])`,
} as const;
