/** What every registry operation is written against: the two ports, the options and a clock. */
import type { Logger } from '../log.js';
import type { MetadataStore, OutboxEvent, WriteGuard } from '../metadata/store.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { PullThrough } from './pull-through.js';

export interface RegistryOptions {
  /** Whether DELETE of manifests, tags and blobs is allowed. */
  deleteEnabled: boolean;
  /** Largest manifest accepted, in bytes. */
  maxManifestBytes: number;
  /**
   * How stale a blob's (or untagged manifest's) "last seen" time may get
   * before a HEAD renews it.
   * GC adds this to its grace period, so the promise "exists means you may
   * reference it for a grace period" holds (invariant 5) while hot HEADs do
   * not each cost a database write.
   */
  touchInterval: number;
  /**
   * Answer blob GETs with a redirect to a pre-signed URL of the store (when
   * it has `presignBlob`), so bytes flow from the object store; seconds the
   * URL stays valid.
   */
  redirectBlobs: boolean;
  redirectExpiry: number;
  /** Open upload sessions one owner (a user, with auth on) may have; 0: no limit. */
  uploadSessionsPerUser: number;
}

export const DEFAULT_REGISTRY_OPTIONS: RegistryOptions = {
  deleteEnabled: true,
  maxManifestBytes: 4 * 1024 * 1024,
  touchInterval: 1000,
  redirectBlobs: false,
  redirectExpiry: 15 * 60,
  uploadSessionsPerUser: 1000,
};

/** What the registry asks the policies (policy/ answers; registry/ does not depend on it). */
export interface PolicyDecisions {
  /** What a tag write or delete in the repository must respect; undefined when nothing applies. */
  writeGuard(repository: string): WriteGuard | undefined;
}

export interface RegistryContext {
  metadata: MetadataStore;
  storage: BlobStore;
  options: RegistryOptions;
  now(): number;
  /**
   * The policies in force (policy/), read at each operation so that a
   * reload applies to the next request; absent: none configured.
   */
  policies?: { current: PolicyDecisions };
  /** Where pulls by tag are reported (for "pulled within" retention); absent: not recorded. */
  tagPulls?: { record(repository: string, tag: string): void };
  /** Where drift found on the request path is reported (absent: not reported). */
  log?: Pick<Logger, 'warn'>;
  /**
   * Where pull events go (src/events/ batches them into the outbox); absent
   * when no endpoint takes pulls, so pulls pay nothing.
   */
  pullEvents?: (event: OutboxEvent) => void;
  /** Whether any event endpoint is configured: http/ builds event contexts only then. */
  events?: boolean;
  /** Told of every manifest served with its body (a pull), to count pulls (absent: not counted). */
  pulls?: { record(repository: string, digest: string): void };
  /** A pull-through cache for repositories it serves (src/proxy/); absent: every repository is hosted. */
  pullThrough?: PullThrough;
}
