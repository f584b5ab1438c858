/**
 * The MetadataStore port: the single source of truth for what Berth holds
 * (consistency contract, invariant 1). Every method is one atomic operation;
 * the checks an operation depends on run in the same transaction as its
 * writes, so concurrent requests, GC runs and other processes cannot
 * interleave between a check and the change it guards.
 *
 * Times are milliseconds since the epoch, passed in by the caller so that
 * tests and GC can reason about grace periods deterministically.
 */

export interface BlobRecord {
  digest: string;
  size: number;
  /** Where the bytes are in the BlobStore: unique per upload, so GC only removes what it owns. */
  storageKey: string;
  /** Last time the blob was uploaded, mounted or answered "exists" (grace period start). */
  lastSeen: number;
}

export interface UploadRecord {
  id: string;
  repository: string;
  /** Bytes received and acknowledged so far. */
  offset: number;
  createdAt: number;
  updatedAt: number;
}

export interface ManifestRecord {
  digest: string;
  mediaType: string;
  size: number;
  body: Buffer;
}

export interface NewManifest extends ManifestRecord {
  artifactType?: string;
  subject?: string;
  annotations?: Record<string, string>;
  /** Blobs (config, layers) that must be present in the repository. */
  blobs: string[];
  /** Child manifests (of an index) that must be present in the repository. */
  children: string[];
}

export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface Page {
  items: string[];
  /** True when more items follow the last one returned. */
  more: boolean;
}

export type CommitBlobResult = 'stored' | 'already-present';

export interface MetadataStore {
  // Blobs --------------------------------------------------------------------
  /** A live blob linked to the repository, or undefined. */
  findBlob(repository: string, digest: string): Promise<BlobRecord | undefined>;
  /** A live blob in any repository (for mounts without `from`). */
  findAnyBlob(digest: string): Promise<BlobRecord | undefined>;
  /** Renews the blob's grace period, if it is still live (invariant 5). */
  touchBlob(digest: string, now: number): Promise<void>;
  /**
   * Links a live blob into `repository` (a cross-repository mount). Fails
   * (returns false) when the blob is not live in `from` (or anywhere, when
   * `from` is undefined). Renews the blob's grace period.
   */
  mountBlob(repository: string, digest: string, from: string | undefined, now: number): Promise<BlobRecord | undefined>;
  /** Removes the repository's link to the blob; false when there was none. */
  unlinkBlob(repository: string, digest: string): Promise<boolean>;

  // Uploads ------------------------------------------------------------------
  createUpload(id: string, repository: string, now: number): Promise<void>;
  findUpload(id: string): Promise<UploadRecord | undefined>;
  /** Compare-and-set of the upload's offset; false when it was not at `from`. */
  advanceUpload(id: string, from: number, to: number, now: number): Promise<boolean>;
  deleteUpload(id: string): Promise<boolean>;
  /**
   * Ends an upload by recording its bytes as a blob in the repository. When
   * the digest is already live, the existing blob is linked instead and the
   * caller discards its copy ('already-present'). A blob that GC is deleting
   * is replaced by this one (invariant 3: GC only removes the object it owns).
   */
  commitBlob(uploadId: string | undefined, repository: string, blob: Omit<BlobRecord, 'lastSeen'>, now: number): Promise<CommitBlobResult>;

  // Manifests and tags -------------------------------------------------------
  findManifestByDigest(repository: string, digest: string): Promise<ManifestRecord | undefined>;
  findManifestByTag(repository: string, tag: string): Promise<ManifestRecord | undefined>;
  /**
   * Stores the manifest (and points the tag at it), after checking in the
   * same transaction that every referenced blob and child manifest is
   * present: MANIFEST_BLOB_UNKNOWN / MANIFEST_UNKNOWN otherwise (invariant 2).
   */
  putManifest(repository: string, manifest: NewManifest, tag: string | undefined, now: number): Promise<void>;
  /** Deletes a manifest and every tag pointing at it; false when unknown. */
  deleteManifest(repository: string, digest: string, now: number): Promise<boolean>;
  deleteTag(repository: string, tag: string, now: number): Promise<boolean>;
  repositoryExists(repository: string): Promise<boolean>;
  /** Tags in lexical (byte) order, strictly after `last`, at most `limit`. */
  listTags(repository: string, last: string | undefined, limit: number): Promise<Page>;
  listRepositories(last: string | undefined, limit: number): Promise<Page>;
  listReferrers(repository: string, subject: string, artifactType: string | undefined): Promise<ReferrerDescriptor[]>;

  close(): Promise<void>;
}
