/**
 * A reference registry's storage (CNCF distribution, `registry:2`, Debian's
 * `docker-registry`), read-only. Its layout, under `docker/registry/v2/`:
 *
 *   blobs/sha256/<ab>/<hex>/data                          every blob's bytes (manifests too)
 *   repositories/<name>/_layers/sha256/<hex>/link         a blob linked to the repository
 *   repositories/<name>/_manifests/revisions/sha256/<hex>/link   a manifest of it (deleted: link removed)
 *   repositories/<name>/_manifests/tags/<tag>/current/link      what the tag points at
 *   repositories/<name>/_manifests/tags/<tag>/index/…     the tag's history (not imported)
 *   repositories/<name>/_uploads/<uuid>/…                 uploads in progress
 *
 * Link files hold `sha256:<hex>`. The same layout sits under the s3
 * driver's `rootdirectory` in a bucket.
 */
import type { Readable } from 'node:stream';
import type { BlobSource } from '../storage/blob-store.js';

export interface DirEntry {
  name: string;
  directory: boolean;
}

export interface ReferenceStorage {
  /** Where it is, for messages. */
  readonly description: string;
  /** Entries of a directory under `docker/registry/v2/` ([] when it does not exist). */
  list(path: string): Promise<DirEntry[]>;
  /** A small file's bytes (links, manifests), or undefined when it does not exist. */
  read(path: string): Promise<Buffer | undefined>;
  /** A file's size, or undefined when it does not exist. */
  size(path: string): Promise<number | undefined>;
  open(path: string): Promise<Readable>;
  /** The file as a BlobStore.importBlob source (a path, or a bucket and key). */
  blobSource(path: string, size: number): BlobSource;
  /** Whether the root holds a reference registry's storage at all. */
  exists(): Promise<boolean>;
}

export function blobDataPath(hex: string): string {
  return `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
}

export function repositoryPath(name: string): string {
  return `repositories/${name}`;
}

/** The digest a link file names, or undefined when it is not one (garbage, truncated). */
export function parseLink(bytes: Buffer | undefined): string | undefined {
  if (!bytes) return undefined;
  const text = bytes.toString('utf8').trim();
  return /^sha256:[0-9a-f]{64}$/.test(text) ? text : undefined;
}

export function isSha256Hex(name: string): boolean {
  return /^[0-9a-f]{64}$/.test(name);
}
