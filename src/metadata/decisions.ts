/**
 * Decisions both MetadataStore implementations make the same way, as pure
 * functions of what the store has just read (under its own locking: SQLite
 * inside its write transaction, PostgreSQL after taking the row locks).
 * Where and how the reads and writes happen stays in each store.
 */
import { RegistryError } from '../registry/errors.js';
import type { RetentionTag } from './store.js';

/** How many digests an error's detail names at the most. */
const DETAIL_DIGESTS = 20;

/** putManifest: some referenced blobs are not live and linked in the repository. */
export function unknownBlobsError(missing: string[]): RegistryError {
  return new RegistryError('MANIFEST_BLOB_UNKNOWN', 'manifest references blobs unknown to the repository', {
    detail: { digests: missing.slice(0, DETAIL_DIGESTS) },
  });
}

/**
 * putManifest: some child manifests of an index are not in the repository.
 * MANIFEST_BLOB_UNKNOWN, as the reference registry and Docker's API
 * documentation answer: to the client a child manifest is content the
 * pushed manifest references, like a layer.
 */
export function unknownChildrenError(missing: string[]): RegistryError {
  return new RegistryError('MANIFEST_BLOB_UNKNOWN', 'index references manifests unknown to the repository', {
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

/**
 * statBlob / statManifest: whether an existence answer must renew the grace
 * period (in a write that re-checks liveness), or may come from the read
 * alone because the row was renewed less than `touchInterval` ago.
 */
export function renewalDue(lastSeen: number, now: number, touchInterval: number): boolean {
  return now - lastSeen >= touchInterval;
}

/**
 * deleteManifest / unlinkBlob: the target is still referenced by a manifest
 * of the repository (an index's child, a manifest's config or layer), so
 * deleting it would leave a manifest that answers 200 and cannot be pulled.
 * 409 Conflict with DENIED, the spec's code for a refused operation (GitLab's
 * registry answers 409 for a child of a list, zot 405 DENIED, Harbor refuses
 * "referenced by others"; the reference registry checks nothing).
 */
export function stillReferencedError(what: 'manifest' | 'blob', digest: string, referencedBy: number): RegistryError {
  const by = what === 'manifest' ? 'index' : 'manifest';
  return new RegistryError(
    'DENIED',
    `${what} is referenced by ${referencedBy} ${by}${referencedBy === 1 ? '' : what === 'manifest' ? 'es' : 's'} of the repository; delete ${referencedBy === 1 ? 'it' : 'them'} (or untag and let GC collect ${referencedBy === 1 ? 'it' : 'them'}) first`,
    { status: 409, detail: { digest, referencedBy } },
  );
}

/**
 * Retention (deleteTagIfUnchanged): whether the tag is still exactly as the
 * decision saw it, same manifest and neither pushed nor pulled since, so a
 * decision taken before a concurrent push or pull never removes its work.
 */
export function tagUnchanged(current: RetentionTag, seen: RetentionTag): boolean {
  return current.digest === seen.digest && current.pushedAt === seen.pushedAt && (current.pulledAt ?? 0) <= (seen.pulledAt ?? 0);
}
