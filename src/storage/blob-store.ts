/**
 * The BlobStore port: bytes only, never existence (that is the metadata
 * store's job). Blobs are immutable objects under keys chosen by the caller;
 * uploads are append-only objects that become blobs without copying.
 */
import type { Readable, Writable } from 'node:stream';

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

export interface StoredObject {
  key: string;
  size: number;
  /** Last modification, ms since the epoch (fsck leaves recent objects alone: a commit may be under way). */
  modifiedAt: number;
}

export interface BlobStore {
  /** Creates an empty upload object. */
  createUpload(uploadId: string): Promise<void>;
  /**
   * Appends a stream to an upload whose acknowledged length is `offset`.
   * Bytes past `offset` left by an interrupted request are discarded first,
   * so a request cut off mid-body never leaves partial bytes behind.
   * Resolves with the number of bytes appended; rejects when the stream fails.
   */
  appendUpload(uploadId: string, offset: number, body: Readable, onChunk: (chunk: Buffer) => void): Promise<number>;
  /**
   * Optional: reads an upload's first `length` bytes (to recompute its hash
   * in another process). Stores without it (S3: the parts of an unfinished
   * multipart upload cannot be read) get the running hash state kept in
   * metadata instead (`UploadRecord.hashState`).
   */
  readUpload?(uploadId: string, length: number): Readable;
  /**
   * Makes an upload's first `length` bytes durable and turns them into a
   * blob object, without copying them, and returns the object's key (unique
   * to this upload: invariant 3). The key may or may not name `digest`: on
   * disk the file is renamed to `blobKey(digest, uploadId)`; on S3 the
   * multipart upload's target, chosen before the digest was known, is the blob.
   */
  commitUpload(uploadId: string, length: number, digest: string): Promise<string>;
  /**
   * The key `commitUpload` or `writeBlob` will write for this upload and
   * digest, known before storage is touched: the commit claims it in
   * metadata first (invariant 9), so fsck never takes it for an orphan.
   */
  commitKey(uploadId: string, digest: string): string;
  /**
   * Optional: stores a whole body of known `length` (at most
   * `maxWholeBlob` bytes) as the upload's blob object in one request, and
   * returns its key; nothing is stored when the stream fails or its length
   * differs. For bodies that arrive whole (POST ?digest=, or a PUT with the
   * upload's only bytes), which would otherwise pay for an upload object and
   * a commit. `digest` is the one the client claims: the key may name it, and
   * the caller verifies it (deleting the object when it does not match).
   */
  writeBlob?(uploadId: string, digest: string, body: Readable, length: number, onChunk: (chunk: Buffer) => void): Promise<string>;
  /** The largest body `writeBlob` takes. */
  readonly maxWholeBlob?: number;
  deleteUpload(uploadId: string): Promise<void>;
  listUploads(): AsyncIterable<StoredObject>;

  /** Reads a blob, or a range of it. Rejects with code ENOENT when the object is gone. */
  openBlob(key: string, range?: ByteRange): Promise<Readable>;
  /**
   * Optional: copies a range of a blob into `out` without allocating per
   * chunk (the pull hot path). `opened` is called once the object is open,
   * before any byte is written (so the caller can send its headers); when
   * the object is gone it rejects with ENOENT and `opened` is never called.
   * Stores without it are read through openBlob.
   */
  copyBlobTo?(key: string, range: ByteRange, out: Writable, opened: () => void): Promise<void>;
  statBlob(key: string): Promise<StoredObject | undefined>;
  deleteBlob(key: string): Promise<void>;
  /** Moves a blob aside where it is never served (fsck: digest mismatch). */
  quarantineBlob(key: string): Promise<void>;
  listBlobs(): AsyncIterable<StoredObject>;
  /**
   * Optional: a URL from which a client may GET the blob's bytes directly
   * (pre-signed, valid `expiresIn` seconds), for redirected pulls.
   */
  presignBlob?(key: string, expiresIn: number): Promise<string>;
  /**
   * Optional: makes bytes that already sit in storage outside Berth (another
   * registry's blob, `berth import`) a blob object under the upload's key
   * without passing them through the process: a hard link on the same file
   * system (a copy across file systems), a server-side copy on S3. The
   * source is left as it was. Resolves undefined when this store cannot
   * take this kind of source, and the caller streams the bytes instead.
   * Like commitUpload, the object is durable when it resolves, and nothing
   * names its key until metadata records it.
   */
  importBlob?(uploadId: string, digest: string, source: BlobSource): Promise<ImportedBlob | undefined>;
}

/** Bytes outside Berth that `importBlob` may take without streaming them. */
export type BlobSource =
  | { kind: 'file'; path: string; size: number }
  | { kind: 's3'; bucket: string; key: string; size: number };

export interface ImportedBlob {
  key: string;
  /** How the bytes became Berth's (reported by `berth import`). */
  method: 'hard-link' | 'copy' | 'server-side-copy';
}

/** The storage key of a blob committed by a given upload: unique per upload (invariant 3). */
export function blobKey(digest: string, uploadId: string): string {
  const [algorithm, hex] = digest.split(':') as [string, string];
  return `${algorithm}/${hex.slice(0, 2)}/${hex}.${uploadId}`;
}

/** The digest a blob key was made for, or undefined for a foreign file. */
export function digestOfKey(key: string): string | undefined {
  const m = /^(sha256|sha512)\/[0-9a-f]{2}\/([0-9a-f]+)\.[A-Za-z0-9_-]+$/.exec(key);
  return m ? `${m[1]}:${m[2]}` : undefined;
}

/**
 * An upload's stored bytes are gone, or shorter than the offset metadata
 * acknowledged (removed behind Berth's back, or lost with a disk). Drift,
 * not a bug: the upload cannot continue and must start again. Stores throw
 * it rather than fill the gap, which would make a blob of the wrong bytes.
 */
export class UploadBytesMissing extends Error {
  constructor(uploadId: string, detail: string) {
    super(`upload ${uploadId}: ${detail}`);
    this.name = 'UploadBytesMissing';
  }
}

/** Whether an error from an upload operation means its bytes are gone (a missing file reads as ENOENT). */
export function isUploadBytesMissing(e: unknown): boolean {
  return e instanceof UploadBytesMissing || (e as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
