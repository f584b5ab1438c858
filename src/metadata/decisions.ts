/**
 * Decisions both MetadataStore implementations make the same way, as pure
 * functions of what the store has just read (under its own locking: SQLite
 * inside its write transaction, PostgreSQL after taking the row locks).
 * Where and how the reads and writes happen stays in each store.
 */
import { RegistryError } from '../registry/errors.js';

/** How many digests an error's detail names at the most. */
const DETAIL_DIGESTS = 20;

/** putManifest: some referenced blobs are not live and linked in the repository. */
export function unknownBlobsError(missing: string[]): RegistryError {
  return new RegistryError('MANIFEST_BLOB_UNKNOWN', 'manifest references blobs unknown to the repository', {
    detail: { digests: missing.slice(0, DETAIL_DIGESTS) },
  });
}

/** putManifest: some child manifests of an index are not in the repository. */
export function unknownChildrenError(missing: string[]): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', 'index references manifests unknown to the repository', {
    detail: { digests: missing.slice(0, DETAIL_DIGESTS) },
  });
}

/**
 * GC: whether a manifest (untagged_at of its row; null while a tag or parent
 * holds it) has been a candidate since `cutoff` or before. It still has to
 * be checked for tags, parents and its subject.
 */
export function manifestDue(untaggedAt: unknown, cutoff: number): boolean {
  return untaggedAt !== null && !((untaggedAt as number) > cutoff);
}

/**
 * GC: for an unreferenced live blob, when to look at it again, or undefined
 * when it is garbage now. `newestLink` is the newest last_seen among its
 * repository links (null when none is left), `lastSeen` the blob's own. A
 * remaining link, or a recent upload or existence check, keeps it for now.
 */
export function blobRecheckAt(newestLink: number | null, lastSeen: number, cutoff: number): number | undefined {
  const newest = Math.max(newestLink ?? 0, lastSeen);
  return newestLink !== null || newest > cutoff ? newest : undefined;
}
