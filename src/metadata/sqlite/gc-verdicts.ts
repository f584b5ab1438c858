/**
 * GC's two verdicts on SQLite, as one sequence of checks over steps each
 * caller provides: the store (sqlite-store.ts) reads and writes its tables
 * inside its write transaction; the dry-run view (dry-run-view.ts) reads
 * its snapshot and writes its TEMP tables. Both take the same decision in
 * the same order, so that a dry run decides as the run does.
 */
import { blobRecheckAt, manifestDue } from '../decisions.js';
import type { Row } from '../records.js';
import { LIVE } from './schema.js';

export interface ManifestSteps {
  /** The manifest's row (id, repository_id, subject, untagged_at and what the caller returns), if it exists. */
  row(): Row | undefined;
  tagged(id: number): boolean;
  /** Whether an index of the repository names the manifest as a child. */
  hasParent(repoId: number): boolean;
  /** Whether the repository holds a manifest with this digest (the subject). */
  holds(repoId: number, digest: string): boolean;
  /** No longer a candidate until a tag, parent or subject lets it go. */
  hold(id: number): void;
  delete(id: number, repoId: number): void;
}

/** deleteManifestIfGarbage: the row deleted, or undefined (not due, gone, or held and now no longer a candidate). */
export function collectManifest(steps: ManifestSteps, cutoff: number): Row | undefined {
  const row = steps.row();
  if (!row || !manifestDue(row.untagged_at, cutoff)) return undefined;
  const id = row.id as number;
  const repoId = row.repository_id as number;
  const held = steps.tagged(id) || steps.hasParent(repoId) || (row.subject !== null && steps.holds(repoId, row.subject as string));
  if (held) {
    // Live through a tag, a parent or its subject: no longer a candidate until that changes.
    steps.hold(id);
    return undefined;
  }
  steps.delete(id, repoId);
  return row;
}

export interface BlobSteps {
  /** Removes the links no manifest names and nothing renewed since the cutoff; how many. */
  removeDanglingLinks(): number;
  /** The blob's row (digest, size, storage_key, state, last_seen), if it exists. */
  row(): Row | undefined;
  referenced(): boolean;
  /** The newest last_seen among the links left, or null when none is. */
  newestLink(): number | null;
  dequeue(): void;
  requeue(at: number): void;
  markDeleting(): void;
}

/** claimBlobIfGarbage: the row claimed (now being deleted), if it was garbage, and the links removed. */
export function claimBlob(steps: BlobSteps, cutoff: number): { row?: Row; linksRemoved: number } {
  const linksRemoved = steps.removeDanglingLinks();
  const row = steps.row();
  if (!row || row.state !== LIVE || steps.referenced()) {
    // Gone, already being deleted, or referenced: a manifest deletion re-queues it.
    steps.dequeue();
    return { linksRemoved };
  }
  const recheckAt = blobRecheckAt(steps.newestLink(), row.last_seen as number, cutoff);
  if (recheckAt !== undefined) {
    // Recently linked, uploaded or said to exist: look again once that is old enough.
    steps.requeue(recheckAt);
    return { linksRemoved };
  }
  steps.markDeleting();
  steps.dequeue();
  return { row, linksRemoved };
}
