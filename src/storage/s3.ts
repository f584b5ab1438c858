/**
 * BlobStore on S3-compatible object storage (AWS S3, MinIO, Swift s3api, …).
 * Every node of a scale-out deployment uses the same bucket and prefix, and
 * nothing about an upload lives in a process: any node continues an upload
 * any other node started (and may have died in the middle of).
 *
 * Layout under the configured prefix:
 *   blobs/<upload-id>                          a committed blob; also the target
 *                                              of the upload's multipart upload
 *   uploads/<upload-id>/tail.<offset>          the bytes of an upload past its
 *                                              last full part, after `offset` bytes
 *   uploads/<upload-id>/multipart              the id of its multipart upload
 *   quarantine/blobs/<upload-id>               blobs fsck found corrupt
 *
 * An upload's bytes [0, k·P) are parts 1..k of a multipart upload whose
 * object key is the blob's own key, chosen when the upload starts; the rest
 * (< P bytes) is a small "tail" object named by the upload's offset. An
 * append reads the tail back, prepends it, uploads each part as it fills
 * (holding at most two parts: the previous one uploads while the next one
 * fills) and writes the new remainder as the tail of the new offset. A
 * request cut off midway leaves the upload as it was: the parts it overwrote
 * lie past the acknowledged offset (the next append writes them again; a
 * part still uploading is waited for before the append fails), and the
 * acknowledged tail is untouched. Commit
 * adds the tail as the last part (a server-side UploadPartCopy) and
 * completes the multipart upload: the blob is never copied.
 *
 * The parts of an unfinished multipart upload cannot be read back, so this
 * store has no `readUpload`: the registry keeps the running hash state in
 * metadata instead.
 */
import { createHash } from 'node:crypto';
import { Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { pausePoint } from '../pause-points.js';
import { UploadBytesMissing, type BlobSource, type BlobStore, type ByteRange, type ImportedBlob, type StoredObject } from './blob-store.js';

export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const DEFAULT_PART_SIZE = 16 * 1024 * 1024;
/** Connections to the object store per process. */
const MAX_SOCKETS = 512;
const NO_BYTES = Buffer.alloc(0);
/** S3 allows at most 10,000 parts per multipart upload. */
const MAX_PARTS = 10_000;
/**
 * Pulls read a blob as ranged GETs of this many bytes, several at once and
 * written to the client in order: one S3 connection is much slower than
 * what the client and the store can take together (measured on Swift:
 * ~280-380 MB/s for one GET, ~400-620 MB/s for 2-4 ranges in flight).
 */
const READ_SEGMENT = 8 * 1024 * 1024;
/**
 * Ranged GETs in flight per pull: the one being sent plus one read ahead.
 * More read-ahead did not pull faster on a busy 2-core machine (3: same;
 * 4: same or slower) and costs memory and CPU (buffered chunks).
 */
const READ_AHEAD = 2;
/**
 * Read-ahead segments (past the one each pull is sending) buffered in the
 * whole process, at most READ_SEGMENT bytes each: caps the memory pulls
 * hold (32 MiB). A pull that finds none free reads one range at a time;
 * with that many pulls at once, the store is busy anyway.
 */
const READ_AHEAD_BUDGET = 4;
/** The largest object one CopyObject copies (S3's limit). */
const MAX_COPY_OBJECT = 5 * 1024 ** 3;
let readAheadFree = READ_AHEAD_BUDGET;

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix ('' or e.g. 'registry/'); a trailing slash is added when missing. */
  prefix?: string;
  /** Custom endpoint (MinIO, Swift, …); undefined: AWS, from the region. */
  endpoint?: string;
  /** Undefined: from the environment / AWS config (AWS_REGION), else us-east-1. */
  region?: string;
  /** Path-style addressing (http://host/bucket/key); default: on when an endpoint is given. */
  forcePathStyle?: boolean;
  /** Multipart part size P, at least 5 MiB. */
  partSize?: number;
  /** Most entries per list request (tests use a small one to exercise pagination); default: the server's (1000). */
  pageSize?: number;
  /** A ready client (tests); otherwise one is made from the options above. */
  client?: S3Client;
}

export class S3BlobStore implements BlobStore {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly partSize: number;
  readonly maxWholeBlob: number;
  private readonly pageSize: number | undefined;
  /** Multipart upload ids by Berth upload id: a cache of an immutable fact, safe to share. */
  private readonly multipartIds = new Map<string, string>();

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    const prefix = options.prefix ?? '';
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isInteger(this.partSize) || this.partSize < MIN_PART_SIZE) {
      throw new Error(`S3 part size must be at least ${MIN_PART_SIZE} bytes (5 MiB), got ${this.partSize}`);
    }
    this.maxWholeBlob = this.partSize;
    this.pageSize = options.pageSize;
    this.client = options.client ?? makeClient(options);
  }

  // Keys ---------------------------------------------------------------------

  private blobObject(key: string): string {
    return `${this.prefix}blobs/${key}`;
  }

  private tailsPrefix(uploadId: string): string {
    return `${this.prefix}uploads/${uploadId}/`;
  }

  private tailObject(uploadId: string, offset: number): string {
    return `${this.tailsPrefix(uploadId)}tail.${offset}`;
  }

  // Uploads ------------------------------------------------------------------

  async createUpload(_uploadId: string): Promise<void> {
    // Nothing yet: the multipart upload is created when the first full part
    // is ready, so a small blob costs no multipart requests at all.
  }

  async appendUpload(uploadId: string, offset: number, body: Readable, onChunk: (chunk: Buffer) => void): Promise<number> {
    const P = this.partSize;
    let partNumber = Math.floor(offset / P) + 1; // the part being filled
    const tailLength = offset % P;
    // The part being filled: small at first (most appends are small), one
    // pooled buffer of P bytes once it grows large.
    let buffer: Buffer = Buffer.allocUnsafe(Math.min(P, Math.max(64 * 1024, tailLength)));
    /** Pooled P-byte buffers this append holds (at most two: one filling, one uploading). */
    const owned: Buffer[] = [];
    let filled = 0;
    let uploadingBuffer: Buffer | undefined;
    const ensure = (needed: number) => {
      if (buffer.length >= needed) return;
      if (filled === 0 && buffer.length === 0) {
        // The next part, once bytes for it arrive: the pooled buffer not uploading.
        buffer = owned.find((b) => b !== uploadingBuffer) ?? takeBuffer(P);
        if (!owned.includes(buffer)) owned.push(buffer);
        return;
      }
      const pooled = needed > P / 4;
      const bigger = pooled ? takeBuffer(P) : Buffer.allocUnsafe(Math.min(P, Math.max(needed, 2 * buffer.length)));
      if (pooled) owned.push(bigger);
      buffer.copy(bigger, 0, 0, filled);
      buffer = bigger;
    };
    // The previous full part, uploading while the next one fills: receiving
    // and uploading overlap, with at most two parts in memory.
    let uploading: Promise<void> | undefined;
    try {
      if (tailLength > 0) filled = await this.readTail(uploadId, offset, tailLength, buffer);
      // Tails of earlier offsets are stale once metadata has moved past them.
      const cleanup = this.deleteTails(uploadId, (o) => o < offset).catch(() => {});
      let received = 0;
      for await (const data of body) {
        let chunk = data as Buffer;
        onChunk(chunk);
        received += chunk.length;
        while (chunk.length > 0) {
          const n = Math.min(chunk.length, P - filled);
          ensure(filled + n);
          chunk.copy(buffer, filled, 0, n);
          filled += n;
          chunk = chunk.subarray(n);
          if (filled === P) {
            if (partNumber >= MAX_PARTS) throw new Error(`upload ${uploadId} exceeds ${MAX_PARTS} parts of ${P} bytes`);
            if (uploading) await uploading;
            const part = buffer;
            uploadingBuffer = part;
            uploading = this.uploadPart(uploadId, partNumber, part);
            uploading.catch(() => {}); // awaited before the next part, at the end, or in `finally`
            partNumber++;
            filled = 0;
            // The next part goes into the other buffer, taken only if more bytes come
            // (a request of exactly one part never needs it).
            buffer = NO_BYTES;
          }
        }
      }
      if (uploading) {
        const last = uploading;
        uploading = undefined;
        await last;
      }
      if (filled > 0 && received > 0) {
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: this.tailObject(uploadId, offset + received), Body: buffer.subarray(0, filled), ContentLength: filled }),
        );
      }
      await cleanup;
      return received;
    } finally {
      // A part still uploading must land before this append gives up: a
      // later append (on any node) rewrites that part, and a late upload
      // of ours must not overwrite it with bytes that were never acknowledged.
      if (uploading) await uploading.catch(() => {});
      owned.forEach(giveBuffer);
    }
  }

  /** Reads the acknowledged tail of an upload at `offset` into `buffer`; returns its length. */
  private async readTail(uploadId: string, offset: number, length: number, buffer: Buffer): Promise<number> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.tailObject(uploadId, offset) })).catch((e: unknown) => {
      throw isNotFound(e) ? new UploadBytesMissing(uploadId, `its tail object at offset ${offset} is gone`) : e;
    });
    let filled = 0;
    for await (const chunk of res.Body as Readable) {
      if (filled + (chunk as Buffer).length > length) throw new Error(`tail of upload ${uploadId} at ${offset} is longer than ${length} bytes`);
      (chunk as Buffer).copy(buffer, filled);
      filled += (chunk as Buffer).length;
    }
    if (filled !== length) throw new UploadBytesMissing(uploadId, `its tail at offset ${offset} has ${filled} bytes, ${length} were acknowledged`);
    return filled;
  }

  private async uploadPart(uploadId: string, partNumber: number, bytes: Buffer): Promise<void> {
    const multipart = await this.multipartId(uploadId, true);
    await this.client.send(
      new UploadPartCommand({
        Bucket: this.bucket,
        Key: this.blobObject(uploadId),
        UploadId: multipart,
        PartNumber: partNumber,
        Body: bytes,
        ContentLength: bytes.length,
      }),
    );
  }

  private markerObject(uploadId: string): string {
    return `${this.tailsPrefix(uploadId)}multipart`;
  }

  /**
   * The multipart upload of a Berth upload, created when `create` is set.
   * Its id is kept in a small marker object beside the tails, so any node
   * finds it with one GET (read-after-write consistent, unlike what a
   * listing of multipart uploads promises everywhere). A multipart upload
   * whose marker was never written (a crash in between) is aborted with the
   * upload (`deleteUpload` aborts every multipart upload of the key) or by
   * fsck, which lists multipart uploads as uploads.
   */
  private async multipartId(uploadId: string, create: true): Promise<string>;
  private async multipartId(uploadId: string, create: false): Promise<string | undefined>;
  private async multipartId(uploadId: string, create: boolean): Promise<string | undefined> {
    const cached = this.multipartIds.get(uploadId);
    if (cached) return cached;
    let id: string | undefined;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.markerObject(uploadId) }));
      id = (await res.Body!.transformToString()).trim() || undefined;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (!id && create) {
      const res = await this.client.send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.blobObject(uploadId), ContentType: 'application/octet-stream' }),
      );
      id = res.UploadId!;
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.markerObject(uploadId), Body: id, ContentLength: Buffer.byteLength(id) }));
    }
    if (id) this.rememberMultipart(uploadId, id);
    return id;
  }

  private rememberMultipart(uploadId: string, id: string): void {
    if (this.multipartIds.size >= 4096) this.multipartIds.delete(this.multipartIds.keys().next().value!);
    this.multipartIds.set(uploadId, id);
  }

  private async listMultipart(prefix: string): Promise<{ key: string; id: string; initiated: number }[]> {
    const out: { key: string; id: string; initiated: number }[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const res = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: this.pageSize }),
      );
      for (const u of res.Uploads ?? []) out.push({ key: u.Key!, id: u.UploadId!, initiated: u.Initiated?.getTime() ?? 0 });
      if (!res.IsTruncated) return out;
      keyMarker = res.NextKeyMarker;
      uploadIdMarker = res.NextUploadIdMarker;
    }
  }

  /** The multipart upload's target, chosen before the digest was known. */
  commitKey(uploadId: string, _digest: string): string {
    return uploadId;
  }

  async commitUpload(uploadId: string, length: number, _digest: string): Promise<string> {
    const P = this.partSize;
    const fullParts = Math.floor(length / P);
    const tailLength = length % P;
    const target = this.blobObject(uploadId);
    const multipart = await this.multipartId(uploadId, false);
    // A commit retried after a crash that followed the first one's completion finds the blob made.
    const done = async () => (await this.statBlob(uploadId))?.size === length;
    if (!multipart || length === 0) {
      if (fullParts > 0) {
        if (await done()) return uploadId;
        throw new UploadBytesMissing(uploadId, `${length} bytes were acknowledged but its multipart upload is gone`);
      }
      if (tailLength > 0) {
        // Everything is in the tail (< P bytes): a server-side copy.
        try {
          await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: target, CopySource: this.copySource(this.tailObject(uploadId, length)) }));
        } catch (e) {
          if (!isNotFound(e)) throw e;
          if (!(await done())) throw new UploadBytesMissing(uploadId, `its tail object at offset ${length} is gone`);
          return uploadId;
        }
      } else {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: target, Body: Buffer.alloc(0), ContentLength: 0 }));
      }
      if (multipart) await this.abortMultipart(target);
    } else {
      try {
        await this.completeMultipart(uploadId, target, multipart, fullParts, tailLength, length);
      } catch (e) {
        // Gone multipart upload or tail: a commit that completed before may have left the marker behind.
        if (errorName(e) !== 'NoSuchUpload' && !isNotFound(e)) throw e;
        if (!(await done())) throw new UploadBytesMissing(uploadId, 'its multipart upload or tail object is gone');
      }
    }
    this.multipartIds.delete(uploadId);
    await this.deleteTails(uploadId, () => true, true).catch(() => {});
    return uploadId;
  }

  /** Adds the tail as the last part (a server-side copy) and completes the multipart upload. */
  private async completeMultipart(uploadId: string, target: string, multipart: string, fullParts: number, tailLength: number, length: number): Promise<void> {
    const parts = await this.listParts(target, multipart, fullParts);
    if (tailLength > 0) {
      const res = await this.client.send(
        new UploadPartCopyCommand({
          Bucket: this.bucket,
          Key: target,
          UploadId: multipart,
          PartNumber: fullParts + 1,
          CopySource: this.copySource(this.tailObject(uploadId, length)),
        }),
      );
      parts.push({ PartNumber: fullParts + 1, ETag: res.CopyPartResult!.ETag! });
    }
    // Parts past these (left by an interrupted append) are discarded by S3.
    await this.client.send(
      new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: target, UploadId: multipart, MultipartUpload: { Parts: parts } }),
    );
  }

  /** The ETags of parts 1..count, each checked to be a full part. */
  private async listParts(key: string, multipart: string, count: number): Promise<CompletedPart[]> {
    const parts = new Map<number, CompletedPart>();
    let marker: string | undefined;
    for (;;) {
      const res = await this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: multipart, PartNumberMarker: marker, MaxParts: this.pageSize }));
      for (const p of res.Parts ?? []) {
        if (p.PartNumber! > count) continue;
        if (p.Size !== this.partSize) throw new Error(`part ${p.PartNumber} of ${key} has ${p.Size} bytes, expected ${this.partSize}`);
        parts.set(p.PartNumber!, { PartNumber: p.PartNumber!, ETag: p.ETag! });
      }
      if (!res.IsTruncated) break;
      marker = res.NextPartNumberMarker;
    }
    const out: CompletedPart[] = [];
    for (let n = 1; n <= count; n++) {
      const part = parts.get(n);
      if (!part) throw new UploadBytesMissing(key, `part ${n} of its multipart upload is missing`);
      out.push(part);
    }
    return out;
  }

  private copySource(key: string): string {
    return `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  private async abortMultipart(key: string): Promise<void> {
    for (const u of await this.listMultipart(key)) {
      if (u.key !== key) continue;
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: u.id })).catch((e) => {
        if (errorName(e) !== 'NoSuchUpload') throw e;
      });
    }
  }

  /** Deletes an upload's tail objects whose offset passes `which`, and with `all` its other objects (the marker). */
  private async deleteTails(uploadId: string, which: (offset: number) => boolean, all = false): Promise<void> {
    const keys: string[] = [];
    for await (const o of this.listObjects(this.tailsPrefix(uploadId))) {
      const m = /\/tail\.(\d+)$/.exec(o.Key);
      if (m ? which(Number(m[1])) : all) keys.push(o.Key);
    }
    await this.deleteObjects(keys);
  }

  async writeBlob(uploadId: string, _digest: string, body: Readable, length: number, onChunk: (chunk: Buffer) => void): Promise<string> {
    if (length > this.maxWholeBlob) throw new Error(`writeBlob takes at most ${this.maxWholeBlob} bytes`);
    // Streamed with its declared length: S3 stores nothing unless exactly
    // that many bytes arrive. The length is also checked here, because some
    // S3 implementations accept a short body.
    let seen = 0;
    let failure: Error | undefined;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen > length) return done((failure = new Error(`body longer than ${length} bytes`)));
        onChunk(chunk);
        done(null, chunk);
      },
      flush(done) {
        done(seen === length ? null : (failure = new Error(`body has ${seen} bytes, expected ${length}`)));
      },
    });
    // A failed body must end the request at once: S3 would otherwise wait
    // for the bytes still due under Content-Length until it times out.
    const abort = new AbortController();
    const piping = pipeline(body, tap).catch((e: Error) => {
      failure ??= e;
      abort.abort(e);
    });
    const key = uploadId;
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.blobObject(key), Body: tap, ContentLength: length }), {
        abortSignal: abort.signal,
      });
    } catch (e) {
      tap.destroy();
      await piping;
      await this.deleteBlob(key).catch(() => {});
      throw failure ?? e;
    }
    await piping;
    if (failure || seen !== length) {
      await this.deleteBlob(key).catch(() => {});
      throw failure ?? new Error(`body has ${seen} bytes, expected ${length}`);
    }
    return key;
  }

  async deleteUpload(uploadId: string): Promise<void> {
    this.multipartIds.delete(uploadId);
    await this.abortMultipart(this.blobObject(uploadId));
    await this.deleteTails(uploadId, () => true, true);
  }

  async *listUploads(): AsyncIterable<StoredObject> {
    const uploads = new Map<string, StoredObject>();
    const note = (id: string, size: number, modifiedAt: number) => {
      const seen = uploads.get(id);
      uploads.set(id, { key: id, size: Math.max(size, seen?.size ?? 0), modifiedAt: Math.max(modifiedAt, seen?.modifiedAt ?? 0) });
    };
    const tails = `${this.prefix}uploads/`;
    for await (const o of this.listObjects(tails)) {
      const [id, name] = o.Key.slice(tails.length).split('/');
      const m = /^tail\.(\d+)$/.exec(name ?? '');
      note(id!, m ? Number(m[1]) : 0, o.LastModified);
    }
    const blobs = `${this.prefix}blobs/`;
    for (const u of await this.listMultipart(blobs)) note(u.key.slice(blobs.length), 0, u.initiated);
    yield* uploads.values();
  }

  // Blobs --------------------------------------------------------------------

  async openBlob(key: string, range?: ByteRange): Promise<Readable> {
    if (range && range.end < range.start) return Readable.from([]);
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.blobObject(key), Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
      return res.Body as Readable;
    } catch (e) {
      throw notFoundAsEnoent(e, key);
    }
  }

  /**
   * A blob (range) as ranged GETs of READ_SEGMENT bytes, up to READ_AHEAD of
   * them in flight, each read into memory as it arrives and written to `out`
   * in order. The first range is requested first, so a missing object
   * rejects (ENOENT) before `opened`.
   */
  async copyBlobTo(key: string, range: ByteRange, out: Writable, opened: () => void): Promise<void> {
    const abort = new AbortController();
    const pending: Segment[] = [];
    let next = range.start;
    let borrowed = 0;
    const request = () => {
      const start = next;
      const end = Math.min(range.end, start + READ_SEGMENT - 1);
      next = end + 1;
      const segment = new Segment(
        this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.blobObject(key), Range: `bytes=${start}-${end}` }), {
          abortSignal: abort.signal,
        }),
        end - start + 1,
      );
      pending.push(segment);
    };
    // Keeps as many ranges in flight as this pull may: one, plus read-ahead while the budget lasts.
    const fill = () => {
      if (pending.length === 0 && next <= range.end) request();
      while (next <= range.end && pending.length < READ_AHEAD && readAheadFree > 0 && pending.length - 1 >= borrowed) {
        readAheadFree--;
        borrowed++;
        request();
      }
    };
    try {
      fill();
      try {
        await pending[0]!.opened;
      } catch (e) {
        throw notFoundAsEnoent(e, key);
      }
      opened();
      while (pending.length > 0) {
        const segment = pending[0]!;
        segment.head = true;
        await segment.copyTo(out);
        pending.shift();
        if (borrowed > 0) {
          borrowed--;
          readAheadFree++;
        }
        if (pending.length > 0 || next <= range.end) await pausePoint('pull-between-ranges');
        fill();
      }
    } finally {
      readAheadFree += borrowed;
      if (pending.length > 0) {
        abort.abort();
        for (const s of pending) s.destroy();
      }
    }
  }

  async statBlob(key: string): Promise<StoredObject | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.blobObject(key) }));
      return { key, size: res.ContentLength ?? 0, modifiedAt: res.LastModified?.getTime() ?? 0 };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async deleteBlob(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.blobObject(key) }));
  }

  /** Copy aside, then delete: rare (fsck found corrupt bytes), so the copy is fine. */
  async quarantineBlob(key: string): Promise<void> {
    const source = this.blobObject(key);
    try {
      await this.client.send(
        new CopyObjectCommand({ Bucket: this.bucket, Key: `${this.prefix}quarantine/blobs/${key}`, CopySource: this.copySource(source) }),
      );
    } catch (e) {
      throw notFoundAsEnoent(e, key);
    }
    await this.deleteBlob(key);
  }

  async *listBlobs(): AsyncIterable<StoredObject> {
    const prefix = `${this.prefix}blobs/`;
    for await (const o of this.listObjects(prefix)) yield { key: o.Key.slice(prefix.length), size: o.Size, modifiedAt: o.LastModified };
  }

  async presignBlob(key: string, expiresIn: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.blobObject(key) }), { expiresIn });
  }

  /**
   * An object of the same S3 service (another registry's storage, `berth
   * import`) becomes a blob by a server-side CopyObject: its bytes never
   * pass through this process. CopyObject takes at most 5 GiB; larger
   * objects are streamed by the caller (undefined), as are files.
   */
  async importBlob(uploadId: string, _digest: string, source: BlobSource): Promise<ImportedBlob | undefined> {
    if (source.kind !== 's3' || source.size > MAX_COPY_OBJECT) return undefined;
    const copySource = `${source.bucket}/${source.key.split('/').map(encodeURIComponent).join('/')}`;
    try {
      await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: this.blobObject(uploadId), CopySource: copySource }));
    } catch (e) {
      throw notFoundAsEnoent(e, source.key);
    }
    return { key: uploadId, method: 'server-side-copy' };
  }

  // Helpers ------------------------------------------------------------------

  private async *listObjects(prefix: string): AsyncIterable<{ Key: string; Size: number; LastModified: number }> {
    let token: string | undefined;
    do {
      const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: this.pageSize }));
      for (const o of res.Contents ?? []) yield { Key: o.Key!, Size: o.Size ?? 0, LastModified: o.LastModified?.getTime() ?? 0 };
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }

  private async deleteObjects(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      if (batch.length === 1) {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: batch[0] }));
        continue;
      }
      const res = await this.client.send(
        new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
      );
      const failed = (res.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) throw new Error(`could not delete ${failed.length} objects: ${failed[0]!.Code} ${failed[0]!.Message}`);
    }
  }

  /** Deletes every object under the store's prefix (tests). */
  async deleteEverything(): Promise<void> {
    for (const u of await this.listMultipart(this.prefix)) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.key, UploadId: u.id })).catch(() => {});
    }
    const keys: string[] = [];
    for await (const o of this.listObjects(this.prefix)) keys.push(o.Key);
    await this.deleteObjects(keys);
  }

  close(): void {
    this.client.destroy();
  }
}

function makeClient(options: S3StoreOptions): S3Client {
  const client = new S3Client({
    endpoint: options.endpoint,
    region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
    // Stream bodies with the default checksums are sent aws-chunked with a
    // trailer, which not every S3 implementation takes; bytes are verified
    // by their digest anyway.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // A pull without redirects holds a connection for its whole transfer:
    // the SDK's default of 50 would queue every request behind 50 pulls.
    requestHandler: { httpAgent: { maxSockets: MAX_SOCKETS }, httpsAgent: { maxSockets: MAX_SOCKETS } },
  });
  // Multi-object delete needs Content-MD5 on S3 implementations that do not
  // take the SDK's newer CRC32 checksum for it (AWS takes either).
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown } | undefined;
      if ((context as { commandName?: string }).commandName === 'DeleteObjectsCommand' && request?.headers && request.body !== undefined) {
        const headers = request.headers;
        for (const name of Object.keys(headers)) if (/^x-amz-(checksum-|sdk-checksum-algorithm)/i.test(name)) delete headers[name];
        headers['content-md5'] = createHash('md5').update(request.body as string | Buffer).digest('base64');
      }
      return next(args);
    },
    { step: 'build', name: 'berthDeleteObjectsContentMd5', priority: 'low' },
  );
  return client;
}

function errorName(e: unknown): string | undefined {
  return (e as { name?: string; Code?: string }).name ?? (e as { Code?: string }).Code;
}

function isNotFound(e: unknown): boolean {
  const name = errorName(e);
  return name === 'NoSuchKey' || name === 'NotFound' || (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404;
}

function notFoundAsEnoent(e: unknown, key: string): unknown {
  if (!isNotFound(e)) return e;
  return Object.assign(new Error(`no object for key ${key}`), { code: 'ENOENT' });
}

/**
 * Part buffers, kept for reuse while uploads keep coming (an append holds at
 * most two), and let go after a few idle seconds so that memory a burst of
 * pushes took does not stay with the process.
 */
const freeBuffers: Buffer[] = [];
const POOL_IDLE_MS = 3000;
let poolTimer: NodeJS.Timeout | undefined;

function takeBuffer(size: number): Buffer {
  const i = freeBuffers.findIndex((b) => b.length === size);
  if (i >= 0) return freeBuffers.splice(i, 1)[0]!;
  return Buffer.allocUnsafeSlow(size);
}

function giveBuffer(b: Buffer): void {
  if (freeBuffers.length < 4) freeBuffers.push(b);
  if (poolTimer) poolTimer.refresh();
  else {
    poolTimer = setTimeout(() => {
      poolTimer = undefined;
      freeBuffers.length = 0;
    }, POOL_IDLE_MS);
    poolTimer.unref();
  }
}

/**
 * One ranged GET of a pull, read as it arrives: into memory while earlier
 * ranges are being sent (at most its length), straight to the client once it
 * is the one being sent (`head`), paused while the client cannot keep up.
 */
class Segment {
  readonly opened: Promise<void>;
  head = false;
  private body: Readable | undefined;
  private chunks: Buffer[] = [];
  private received = 0;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private destroyed = false;

  constructor(response: Promise<{ Body?: unknown }>, readonly length: number) {
    this.opened = response.then((res) => {
      const body = res.Body as Readable;
      this.body = body;
      // Answered after the pull gave up on it: free its connection.
      if (this.destroyed) body.destroy();
      body.on('data', (chunk: Buffer) => {
        this.chunks.push(chunk);
        this.received += chunk.length;
        if (this.head && this.chunks.length >= 16) body.pause();
        this.signal();
      });
      body.on('end', () => {
        this.ended = true;
        this.signal();
      });
      body.on('error', (e) => {
        this.failure ??= e;
        this.signal();
      });
    });
    // Observed by copyTo; an unobserved rejection here must not crash the process.
    this.opened.catch((e: Error) => {
      this.failure ??= e;
      this.signal();
    });
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async copyTo(out: Writable): Promise<void> {
    await this.opened;
    for (;;) {
      if (this.failure) throw this.failure;
      const chunk = this.chunks.shift();
      if (chunk) {
        if (out.destroyed) throw new Error('connection closed');
        if (!out.write(chunk)) await drained(out);
        continue;
      }
      if (this.ended) break;
      this.body!.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    if (this.received !== this.length) throw new Error(`ranged GET returned ${this.received} bytes, expected ${this.length}`);
  }

  destroy(): void {
    this.destroyed = true;
    this.body?.destroy();
    this.chunks = [];
  }
}

function drained(out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', done);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new Error('connection closed'));
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', done);
  });
}
