/**
 * The one hook through which registry/ asks for content it does not have:
 * a pull-through cache (src/proxy/) implements it. It is consulted only for
 * repositories it `serves`, and only on a local miss (or, for a tag, when the
 * cache says the tag is due for a re-check), so hosted repositories pay
 * one `undefined` test for it.
 */
import type { Writable } from 'node:stream';
import type { BlobRecord, ManifestRecord } from '../metadata/store.js';
import type { RegistryContext } from './context.js';
import { RegistryError } from './errors.js';
import type { Digest, ManifestReference } from './reference.js';

/** How a pulled manifest or blob was answered: from the cache, from upstream, or from the cache because upstream failed. */
export type CacheOutcome = 'hit' | 'miss' | 'stale';

export interface PulledManifest extends ManifestRecord {
  cache: CacheOutcome;
}

/** A blob being fetched from upstream: its bytes stream to `copyTo` as they arrive. */
export interface RemoteBlob {
  digest: string;
  /** Known when the upstream said (Content-Length). */
  size?: number;
  /** Writes the whole blob to `out`, calling `opened` before the first byte; rejects if the fetch fails or the digest does not verify. */
  copyTo(out: Writable, opened: () => void): Promise<void>;
}

export interface PullThrough {
  /** Whether the repository is a cached one (then pushes to it are refused). */
  serves(repository: string): boolean;
  /**
   * A manifest of a cached repository. `local` is what metadata holds for the
   * reference (undefined on a miss); for a tag, the cache decides whether to
   * re-check upstream. Undefined when neither has it.
   */
  manifest(repository: string, reference: ManifestReference, local: ManifestRecord | undefined): Promise<PulledManifest | undefined>;
  /**
   * A blob missing locally: joins or starts the single upstream fetch; the
   * local record when a fetch finished meanwhile; undefined when upstream
   * does not have it.
   */
  blob(repository: string, digest: Digest): Promise<RemoteBlob | BlobRecord | undefined>;
  /** Counts an answer from the cache that did not need the cache's help (a local blob, a manifest by digest). */
  hit(repository: string): void;
  /** HEAD of a blob missing locally: its size upstream, without fetching it. */
  blobSize(repository: string, digest: Digest): Promise<number | undefined>;
}

/** A push (upload, manifest) to a repository the pull-through cache serves is refused: its content is upstream's. */
export function refuseCachedPush(ctx: RegistryContext, repository: string): void {
  if (ctx.pullThrough?.serves(repository)) {
    throw new RegistryError('DENIED', `repository ${repository} is a pull-through cache of an upstream registry: pushes are refused (push to a hosted repository instead)`, {
      detail: { repository },
    });
  }
}
