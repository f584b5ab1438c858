/**
 * BlobStore on a local directory:
 *   <root>/blobs/<algorithm>/<xx>/<hex>.<upload-id>   committed blobs
 *   <root>/uploads/<upload-id>                         uploads in progress
 *   <root>/quarantine/…                                blobs fsck found corrupt
 * Commit is fsync + rename within one file system: durable and copy-free.
 */
import { close, createReadStream, fdatasync, open as openFd, writev, constants as fsc } from 'node:fs';
import { copyFile, link, mkdir, open, opendir, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { promisify } from 'node:util';
import { blobKey, UploadBytesMissing, type BlobSource, type BlobStore, type ByteRange, type ImportedBlob, type StoredObject } from './blob-store.js';
import { FileAppender } from './file-appender.js';

const READ_BUFFER = 1024 * 1024;
const WRITE_BATCH = 1024 * 1024;
const WRITEBACK_STEP = 8 * 1024 * 1024;
/** An append that leaves at least this much unsynced starts its sync in the background as it ends. */
const WRITEBACK_TAIL_MIN = 1024 * 1024;
/** Bodies up to this size that arrive whole are written straight to their blob key (writeBlob). */
const WHOLE_BLOB_MAX = 4 * 1024 * 1024;
const COPY_BUFFER = 2 * 1024 * 1024;

const fsOpen = promisify(openFd);
const fsWritev = promisify(writev);
const fsDatasync = promisify(fdatasync);
const fsClose = promisify(close);


export class FilesystemBlobStore implements BlobStore {
  private readonly blobsDir: string;
  private readonly uploadsDir: string;
  private readonly quarantineDir: string;
  /** Shard directories known to exist, once their entries are durable (they are never removed). */
  private readonly knownDirs = new Map<string, Promise<void>>();
  /** Open handles of shard directories, to fsync them after renames. */
  private readonly dirHandles = new Map<string, Promise<FileHandle>>();

  constructor(private readonly root: string) {
    this.blobsDir = join(root, 'blobs');
    this.uploadsDir = join(root, 'uploads');
    this.quarantineDir = join(root, 'quarantine');
  }

  async init(): Promise<void> {
    await Promise.all([this.blobsDir, this.uploadsDir, this.quarantineDir].map((d) => mkdir(d, { recursive: true })));
  }

  private uploadPath(uploadId: string): string {
    return join(this.uploadsDir, uploadId);
  }

  private blobPath(key: string): string {
    return join(this.blobsDir, key);
  }

  async createUpload(_uploadId: string): Promise<void> {
    // Nothing to do: the file is created by the first append (or by commit,
    // for an empty blob), which saves two system calls per upload.
  }

  async appendUpload(uploadId: string, offset: number, body: Readable, onChunk: (chunk: Buffer) => void): Promise<number> {
    const fh = await this.openUpload(uploadId, offset);
    let writeback: Promise<void> | undefined;
    let synced = offset;
    // The kernel would hold a large upload's pages dirty until commit's
    // fsync and then write them all while the client waits; syncing every
    // WRITEBACK_STEP bytes in the background overlaps that disk work with
    // receiving, so the final fsync only has the last step left.
    const appender = new FileAppender(fh, offset, WRITE_BATCH, (written) => {
      if (written - synced >= WRITEBACK_STEP && !writeback) {
        synced = written;
        writeback = fh.datasync().catch(() => {}).finally(() => (writeback = undefined));
      }
    });
    try {
      try {
        for await (const chunk of body) {
          onChunk(chunk as Buffer);
          await appender.add(chunk as Buffer);
        }
      } catch (e) {
        await appender.abandon();
        throw e;
      }
      await appender.end();
      return appender.written - offset;
    } finally {
      // A 202 promises nothing about durability, so the request does not
      // wait for the disk: the rest of this append is synced in the
      // background (the client's next chunk, or the time until it sends it,
      // overlaps the disk's work) and the descriptor closes once the disk is
      // done. A failed sync does not matter here: commit syncs again and
      // reports that one.
      const rest = appender.written - synced >= WRITEBACK_TAIL_MIN;
      void (writeback ?? Promise.resolve())
        .then(() => (rest ? fh.datasync() : undefined))
        .catch(() => {})
        .finally(() => fh.close().catch(() => {}));
    }
  }

  /**
   * Opens an upload's file holding exactly its `acknowledged` bytes: created
   * (or emptied) when that is 0, cut back when a request cut off mid-body
   * left more. A file that is gone or shorter is drift and fails with
   * UploadBytesMissing; filling the gap would make a blob of the wrong bytes.
   */
  private async openUpload(uploadId: string, acknowledged: number): Promise<FileHandle> {
    const flags = acknowledged === 0 ? fsc.O_RDWR | fsc.O_CREAT | fsc.O_TRUNC : fsc.O_RDWR;
    const fh = await open(this.uploadPath(uploadId), flags, 0o644).catch((e: NodeJS.ErrnoException) => {
      throw e.code === 'ENOENT' ? new UploadBytesMissing(uploadId, `its file is gone, ${acknowledged} bytes were acknowledged`) : e;
    });
    if (acknowledged === 0) return fh;
    try {
      const size = (await fh.stat()).size;
      if (size < acknowledged) throw new UploadBytesMissing(uploadId, `its file holds ${size} bytes, ${acknowledged} were acknowledged`);
      if (size > acknowledged) await fh.truncate(acknowledged);
      return fh;
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  readUpload(uploadId: string, length: number): Readable {
    if (length === 0) return Readable.from([]);
    return createReadStream(this.uploadPath(uploadId), { start: 0, end: length - 1, highWaterMark: READ_BUFFER });
  }

  commitKey(uploadId: string, digest: string): string {
    return blobKey(digest, uploadId);
  }

  async commitUpload(uploadId: string, length: number, digest: string): Promise<string> {
    const key = blobKey(digest, uploadId);
    const source = this.uploadPath(uploadId);
    const target = this.blobPath(key);
    const dir = dirname(target);
    // An empty blob may never have had a byte appended: openUpload creates it.
    const fh = await this.openUpload(uploadId, length);
    try {
      await this.ensureDirectory(dir);
      // The blob is as new as its commit: its mtime would otherwise be its
      // last PATCH, and fsck judges an object's age by it.
      const now = new Date();
      await fh.utimes(now, now);
      // Rename first, then sync the bytes and the directory entry together:
      // until metadata commits (after this resolves) nothing names the key,
      // so a crash in between leaves an orphan for fsck, never a lie.
      await rename(source, target);
      await Promise.all([fh.datasync(), this.syncDirectory(dir)]);
    } finally {
      await fh.close();
    }
    return key;
  }

  /**
   * A body that arrives whole goes straight to its blob key: one file
   * created where it stays, instead of an upload file reopened and renamed
   * at commit (half the file-system calls per small blob). Until metadata
   * commits nothing names the key, so a crash leaves an orphan for fsck.
   */
  readonly maxWholeBlob = WHOLE_BLOB_MAX;

  async writeBlob(uploadId: string, digest: string, body: Readable, length: number, onChunk: (chunk: Buffer) => void): Promise<string> {
    if (length > WHOLE_BLOB_MAX) throw new Error(`writeBlob takes at most ${WHOLE_BLOB_MAX} bytes`);
    const key = blobKey(digest, uploadId);
    const target = this.blobPath(key);
    const dir = dirname(target);
    // Raw descriptors and callback calls, not FileHandle: on this path (one
    // per small layer of every push) they cost 52 instead of 89 µs of
    // main-thread time per blob (microbenchmark of create, write, sync, close).
    const chunks: Buffer[] = [];
    let received = 0;
    for await (const chunk of body) {
      received += (chunk as Buffer).length;
      if (received > length) throw new Error(`body longer than ${length} bytes`);
      onChunk(chunk as Buffer);
      chunks.push(chunk as Buffer);
    }
    if (received !== length) throw new Error(`body has ${received} bytes, expected ${length}`);
    await this.ensureDirectory(dir);
    const fd = await fsOpen(target, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    let stored = false;
    try {
      if (received > 0) {
        const { bytesWritten } = await fsWritev(fd, chunks, 0);
        if (bytesWritten !== received) throw new Error(`short write to blob ${key}`);
      }
      await Promise.all([fsDatasync(fd), this.syncDirectory(dir)]);
      stored = true;
    } finally {
      await fsClose(fd);
      if (!stored) await rm(target, { force: true });
    }
    return key;
  }

  /**
   * A file elsewhere (another registry's blob, `berth import`) becomes a
   * blob by a hard link: no byte is copied, and the source stays where it
   * is. Across file systems (EXDEV) or where links are refused it is copied
   * and synced. The key is unique to the upload, like every commit's.
   */
  async importBlob(uploadId: string, digest: string, source: BlobSource): Promise<ImportedBlob | undefined> {
    if (source.kind !== 'file') return undefined;
    const key = blobKey(digest, uploadId);
    const target = this.blobPath(key);
    const dir = dirname(target);
    await this.ensureDirectory(dir);
    let method: ImportedBlob['method'] = 'hard-link';
    try {
      await link(source.path, target);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK' && code !== 'ENOTSUP') throw e;
      method = 'copy';
      try {
        await copyFile(source.path, target, fsc.COPYFILE_EXCL);
        const fh = await open(target, 'r');
        try {
          await fh.datasync();
        } finally {
          await fh.close();
        }
      } catch (copyError) {
        await rm(target, { force: true });
        throw copyError;
      }
    }
    // The linked bytes were the other registry's, written and synced by it;
    // what this adds is a directory entry, made durable before metadata names it.
    await this.syncDirectory(dir);
    return { key, method };
  }

  /**
   * Creates a shard directory if needed. A new directory's own entry is
   * durable only once its parent is synced: the first time this process
   * uses a directory, its parent is synced, and so on up to the store's
   * root, each directory once (a
   * directory another process has just created counts as new too, since
   * that process may not have synced its parent yet).
   */
  private ensureDirectory(dir: string): Promise<void> {
    if (dir === this.root || dir === dirname(dir)) return Promise.resolve();
    let ready = this.knownDirs.get(dir);
    if (!ready) {
      ready = (async () => {
        await this.ensureDirectory(dirname(dir));
        await mkdir(dir).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EEXIST') throw e;
        });
        await this.syncDirectory(dirname(dir));
      })();
      ready.catch(() => this.knownDirs.delete(dir));
      this.knownDirs.set(dir, ready);
    }
    return ready;
  }

  /** A rename is durable only once its directory entry is: fsync the directory (handles kept open). */
  protected async syncDirectory(dir: string): Promise<void> {
    let handle = this.dirHandles.get(dir);
    if (!handle) {
      handle = open(dir, 'r');
      this.dirHandles.set(dir, handle);
    }
    await (await handle).sync();
  }

  async deleteUpload(uploadId: string): Promise<void> {
    await rm(this.uploadPath(uploadId), { force: true });
  }

  async *listUploads(): AsyncIterable<StoredObject> {
    for (const name of await readdir(this.uploadsDir)) {
      const st = await stat(join(this.uploadsDir, name)).catch(() => undefined);
      if (st?.isFile()) yield { key: name, size: st.size, modifiedAt: st.mtimeMs };
    }
  }

  async openBlob(key: string, range?: ByteRange): Promise<Readable> {
    // Open first so a missing file is an error here, not after headers are sent.
    const fh = await open(this.blobPath(key), 'r');
    // Each read allocates a buffer of highWaterMark bytes: never more than the range needs.
    const length = range ? range.end - range.start + 1 : (await fh.stat()).size;
    if (length <= 0) {
      await fh.close();
      return Readable.from([]);
    }
    return fh.createReadStream({ start: range?.start, end: range?.end, highWaterMark: Math.min(READ_BUFFER, length) });
  }

  async copyBlobTo(key: string, range: ByteRange, out: Writable, opened: () => void): Promise<void> {
    const fh = await open(this.blobPath(key), 'r');
    opened();
    const buffers = [takeBuffer(), takeBuffer()];
    try {
      // Two buffers in turn: one is read from disk while the other is being
      // written to the socket; a buffer is reused only once its write is done.
      let position = range.start;
      let remaining = range.end - range.start + 1;
      let inflight: Promise<void> | undefined;
      for (let i = 0; remaining > 0; i++) {
        const buffer = buffers[i % 2]!;
        const { bytesRead } = await fh.read(buffer, 0, Math.min(buffer.length, remaining), position);
        if (bytesRead === 0) throw new Error(`blob ${key} is shorter than recorded`);
        if (inflight) await inflight;
        inflight = writeChunk(out, buffer.subarray(0, bytesRead));
        position += bytesRead;
        remaining -= bytesRead;
      }
      if (inflight) await inflight;
    } finally {
      await fh.close();
      buffers.forEach(giveBuffer);
    }
  }

  async statBlob(key: string): Promise<StoredObject | undefined> {
    try {
      const st = await stat(this.blobPath(key));
      return { key, size: st.size, modifiedAt: st.mtimeMs };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async deleteBlob(key: string): Promise<void> {
    await rm(this.blobPath(key), { force: true });
  }

  async quarantineBlob(key: string): Promise<void> {
    const target = join(this.quarantineDir, key);
    await mkdir(dirname(target), { recursive: true });
    await rename(this.blobPath(key), target);
  }

  async *listBlobs(): AsyncIterable<StoredObject> {
    yield* walk(this.blobsDir, this.blobsDir);
  }
}

async function* walk(root: string, dir: string): AsyncIterable<StoredObject> {
  let handle;
  try {
    handle = await opendir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  for await (const entry of handle) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(root, path);
    else if (entry.isFile()) {
      const st = await stat(path).catch(() => undefined); // deleted meanwhile: skip
      if (st) yield { key: relative(root, path).split(sep).join('/'), size: st.size, modifiedAt: st.mtimeMs };
    }
  }
}

/** Read buffers for copyBlobTo, kept for reuse so that pulls allocate nothing per chunk. */
const freeBuffers: Buffer[] = [];
const MAX_FREE_BUFFERS = 8;

function takeBuffer(): Buffer {
  return freeBuffers.pop() ?? Buffer.allocUnsafeSlow(COPY_BUFFER);
}

function giveBuffer(b: Buffer): void {
  if (freeBuffers.length < MAX_FREE_BUFFERS) freeBuffers.push(b);
}

/** Resolves once the chunk is handed to the kernel (so its buffer may be reused). */
function writeChunk(out: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (out.destroyed) return reject(new Error('connection closed'));
    out.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}


