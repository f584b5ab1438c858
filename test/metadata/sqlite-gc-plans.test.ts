/**
 * The query plans of SQLite's GC statements: each must start at the
 * candidates (the queue, the untagged index, the blob's own rows) and reach
 * what it checks through an index keyed by the blob or the manifest, never
 * by walking a repository's or the registry's rows. A plan that regresses
 * makes a GC pass cost what the registry holds (issue 18); this catches it
 * without a large database, since SQLite plans without statistics.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type Database from 'better-sqlite3';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';

/** GC statement → what its plan must show; none may SCAN a table (a partial index of the candidates is fine). */
const EXPECTED: Record<string, RegExp[]> = {
  manifestCandidatesAtTime: [/SEARCH m USING INDEX manifests_untagged \(untagged_at=\? AND rowid>\?\)/],
  manifestCandidatesAfterTime: [/SEARCH m USING INDEX manifests_untagged \(untagged_at>\? AND untagged_at<\?\)/],
  blobCandidates: [/SEARCH gc_blob_queue USING COVERING INDEX gc_blob_queue_by_since \(\(since,digest\)>\(\?,\?\) AND since<\?\)/],
  // Only the blob's unreferenced links, by their own count: neither the
  // manifests using the blob nor the links they keep (see NOT_READ).
  deleteDanglingLinks: [/^SEARCH repository_blobs USING INDEX repository_blobs_unreferenced \(digest=\?\)$/],
  isReferenced: [/manifest_blobs_by_digest \(digest=\?\)/],
  newestLink: [/repository_blobs_by_digest \(digest=\?\)/],
  deletingBlobs: [/USING INDEX blobs_deleting/],
  manifestForGc: [/\(repository_id=\? AND digest=\?\)/],
  isTagged: [/tags_by_manifest/],
  hasParent: [/manifest_children_by_child/],
  releaseReferrers: [/manifests_by_subject/],
  staleUploads: [/uploads_by_update/],
};

/** GC statement → tables its plan must not touch: what grows with the registry, not with the garbage. */
const NOT_READ: Record<string, RegExp> = {
  deleteDanglingLinks: /manifest_blobs|manifests|\bmb\b|\bm\b/,
};

describe('SQLite GC statements: plans start at the candidates', () => {
  let dir: string;
  let store: SqliteMetadataStore;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-plans-'));
    store = new SqliteMetadataStore(join(dir, 'metadata.db'));
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [name, patterns] of Object.entries(EXPECTED)) {
    it(name, () => {
      const statement = (store as unknown as { stmt: Record<string, Database.Statement | undefined> }).stmt[name];
      assert.ok(statement, `statement ${name} exists`);
      const named = Object.fromEntries([...statement.source.matchAll(/@(\w+)/g)].map((m) => [m[1]!, 0]));
      const params = Object.keys(named).length > 0 ? [named] : Array((statement.source.match(/\?/g) ?? []).length).fill(0);
      const plan = (store.db.prepare(`EXPLAIN QUERY PLAN ${statement.source}`).all(...params) as { detail: string }[]).map((r) => r.detail).join('\n');
      for (const p of patterns) assert.match(plan, p, `${name}:\n${plan}`);
      if (NOT_READ[name]) assert.doesNotMatch(plan, NOT_READ[name], `${name} reads the manifests:\n${plan}`);
      assert.doesNotMatch(plan, /^SCAN (?!.*USING INDEX blobs_deleting)/m, `${name} scans a table:\n${plan}`);
      // A subquery run again for every row of the outer one multiplies their sizes.
      assert.doesNotMatch(plan, /CORRELATED/, `${name} runs a subquery per row:\n${plan}`);
    });
  }
});
