/**
 * Blob uploads: monolithic (POST with digest), POST then PUT, chunked PATCH
 * with strict offsets, streamed PATCH, status, cancel, and cross-repository
 * mount. An upload becomes a blob only when its digest is verified and its
 * bytes are durable; a request cut off mid-body leaves the upload as it was.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { BlobRecord, CommitBlobResult, EventContext, UploadRecord } from '../metadata/store.js';
import { crashPoint } from '../crash-points.js';
import { pausePoint } from '../pause-points.js';
import { isUploadBytesMissing } from '../storage/blob-store.js';
import type { RegistryContext } from './context.js';
import { digestStream, UploadDigests } from './digester.js';
import { RegistryError } from './errors.js';
import type { Digest } from './reference.js';
import { refuseCachedPush } from './pull-through.js';

/** A byte range declared by a chunk's Content-Range (inclusive). */
export interface ChunkRange {
  start: number;
  end: number;
}

export interface UploadBody {
  stream: Readable;
  /** Content-Length, when the client declared one. */
  length?: number;
  range?: ChunkRange;
}

/** An append's outcome: the new offset and, for stores without readUpload, the hash state after it. */
interface Appended {
  offset: number;
  hashState?: Buffer;
}

/** How many repositories linking a blob a mount without `from` considers as its source, when the caller may pull only some. */
export const MOUNT_SOURCES = 100;

/**
 * Who is asking, with auth on: the principal's name ('' for anonymous).
 * Undefined when auth is off, and then sessions belong to nobody.
 */
export type Caller = string | undefined;

export type MountResult = { mounted: true; blob: BlobRecord } | { mounted: false; upload: UploadRecord };

export class Uploads {
  private readonly digests = new UploadDigests();
  /** Uploads with a request in flight in this process: a second concurrent chunk is refused. */
  private readonly busy = new Set<string>();

  constructor(private readonly ctx: RegistryContext) {}

  /** The request behind each commit in progress (by upload id), for the event its metadata commit writes. */
  private readonly eventContexts = new Map<string, EventContext>();

  /** Runs `work` with `ev` as the event context of upload `id`'s commit. */
  private async withEventContext<T>(id: string, ev: EventContext | undefined, work: () => Promise<T>): Promise<T> {
    if (!ev) return work();
    this.eventContexts.set(id, ev);
    try {
      return await work();
    } finally {
      this.eventContexts.delete(id);
    }
  }

  async start(repository: string, caller?: Caller): Promise<UploadRecord> {
    refuseCachedPush(this.ctx, repository);
    const id = randomUUID();
    const now = this.ctx.now();
    const max = this.ctx.options.uploadSessionsPerUser;
    // Metadata first: a refused session must not leave a storage object behind.
    if (!(await this.ctx.metadata.createUpload(id, repository, now, caller === undefined ? undefined : { name: caller, maxSessions: max }))) {
      throw new RegistryError('TOOMANYREQUESTS', `too many open upload sessions: at most ${max} per user; finish or cancel some, or wait for abandoned ones to expire`, {
        detail: { limit: max },
      });
    }
    try {
      await this.ctx.storage.createUpload(id);
    } catch (e) {
      await this.ctx.metadata.deleteUpload(id).catch(() => {});
      throw e;
    }
    return { id, repository, offset: 0, createdAt: now, updatedAt: now, ...(caller === undefined ? {} : { owner: caller }) };
  }

  /**
   * POST ?mount=&from=: link an existing blob, or fall back to a new upload.
   * `canPull` (given when auth is on) says which repositories the caller may
   * pull: a blob is mounted only from one of them (invariant 11), so the 201
   * tells nothing about repositories the caller cannot read. Without `from`,
   * the candidates are the repositories that link the blob, at most
   * MOUNT_SOURCES of them: a blob linked so widely that none of those is
   * pullable costs the caller an upload, never a wrong answer.
   */
  async mount(repository: string, digest: Digest, from: string | undefined, caller?: Caller, canPull?: (repository: string) => boolean, ev?: EventContext): Promise<MountResult> {
    refuseCachedPush(this.ctx, repository);
    let source = from;
    if (canPull !== undefined) {
      if (from === undefined) source = (await this.ctx.metadata.blobRepositories(digest.value, MOUNT_SOURCES)).find((r) => canPull(r));
      else if (!canPull(from)) source = undefined;
      if (source === undefined) return { mounted: false, upload: await this.start(repository, caller) };
    }
    await pausePoint('mount-before-link');
    const blob = await this.ctx.metadata.mountBlob(repository, digest.value, source, this.ctx.now(), ev, this.ctx.policies?.current.writeGuard(repository));
    if (blob) return { mounted: true, blob };
    return { mounted: false, upload: await this.start(repository, caller) };
  }

  /**
   * The session, if it is this repository's and (with auth on) the caller's:
   * another user's session is unknown to the caller, exactly as a session
   * that does not exist (its id tells nothing). Sessions opened while auth
   * was off count as anonymous ones.
   */
  async status(repository: string, id: string, caller?: Caller): Promise<UploadRecord> {
    const upload = await this.ctx.metadata.findUpload(id);
    if (!upload || upload.repository !== repository || (caller !== undefined && (upload.owner ?? '') !== caller)) throw new RegistryError('BLOB_UPLOAD_UNKNOWN');
    return upload;
  }

  /** PATCH: append a chunk (strict offset when Content-Range is given) or a stream. */
  async append(repository: string, id: string, body: UploadBody, caller?: Caller): Promise<UploadRecord> {
    return this.exclusive(id, async () => {
      const upload = await this.status(repository, id, caller);
      if (upload.committingKey !== undefined) {
        body.stream.resume();
        throw beingCommitted(upload);
      }
      await this.checkRoom(repository, upload.offset + (body.length ?? 0), body);
      const { offset, hashState } = await this.appendBody(upload, body);
      return { ...upload, offset, hashState };
    });
  }

  /** PUT ?digest=: append the final chunk if any, verify the digest, make it a blob. */
  async finish(repository: string, id: string, digest: Digest, body: UploadBody | undefined, caller?: Caller, ev?: EventContext): Promise<BlobRecord> {
    return this.exclusive(id, () => this.withEventContext(id, ev, async () => {
      const upload = await this.status(repository, id, caller);
      if (upload.committingKey !== undefined) {
        body?.stream.resume();
        throw beingCommitted(upload);
      }
      const key = this.ctx.storage.commitKey(id, digest.value);
      // The upload's only bytes, arriving whole: straight to a blob object.
      if (body && upload.offset === 0 && this.fitsWhole(body)) {
        // No upload object to remove: stores create none until an append,
        // and a failed append at offset 0 removes what it wrote (appendBody).
        await this.claim(upload, 0, key).catch((e: unknown) => {
          body.stream.resume();
          throw e;
        });
        this.digests.forget(id);
        return this.asClaimed(id, key, () => this.storeWhole(id, key, repository, digest, body));
      }
      const { offset, hashState } = body ? await this.appendBody(upload, body) : upload;
      const checked = await this.verify(id, offset, digest, hashState);
      await this.claim(upload, offset, key);
      return this.asClaimed(id, key, () => this.commit(id, key, repository, digest, offset, true, !checked));
    }));
  }

  /** POST ?digest=: the whole blob in one request; no upload session is recorded. */
  async monolithic(repository: string, digest: Digest, body: UploadBody, ev?: EventContext): Promise<BlobRecord> {
    refuseCachedPush(this.ctx, repository);
    return this.storeVerified(repository, digest, body, ev);
  }

  /**
   * The whole blob from one stream, verified against its digest before it
   * becomes a blob: a monolithic upload without the push checks, which is
   * how the pull-through cache stores what it fetched.
   */
  async storeVerified(repository: string, digest: Digest, body: UploadBody, ev?: EventContext): Promise<BlobRecord> {
    const id = randomUUID();
    return this.withEventContext(id, ev, () => this.monolithicAs(id, repository, digest, body));
  }

  private async monolithicAs(id: string, repository: string, digest: Digest, body: UploadBody): Promise<BlobRecord> {
    const storage = this.ctx.storage;
    const key = storage.commitKey(id, digest.value);
    // Recorded as an upload claimed from the start, so that its commit is
    // protected like a session's (fsck knows its key; an error path deletes
    // bytes only with metadata's word that nothing names them).
    try {
      await this.ctx.metadata.createClaimedUpload(id, repository, key, this.ctx.now());
    } catch (e) {
      body.stream.resume();
      throw e;
    }
    return this.asClaimed(id, key, async () => {
      // One request, so the running hash never has to move between processes.
      if (this.fitsWhole(body)) return this.storeWhole(id, key, repository, digest, body);
      const hash = createHash('sha256');
      await storage.createUpload(id);
      const length = await this.receive(id, 0, body, (c) => hash.update(c));
      let checked = true;
      if (digest.algorithm === 'sha256') {
        const actual = hash.digest('hex');
        if (actual !== digest.hex) throw digestMismatch(digest, actual);
      } else if (storage.readUpload) {
        const actual = await digestStream(digest.algorithm, storage.readUpload(id, length));
        if (actual !== digest.hex) throw digestMismatch(digest, actual);
      } else {
        checked = false;
      }
      return this.commit(id, key, repository, digest, length, false, !checked);
    });
  }

  async cancel(repository: string, id: string, caller?: Caller): Promise<void> {
    await this.status(repository, id, caller);
    this.digests.forget(id);
    if (!(await this.ctx.metadata.deleteUpload(id))) throw new RegistryError('BLOB_UPLOAD_UNKNOWN');
    await this.ctx.storage.deleteUpload(id);
  }

  // Internals ----------------------------------------------------------------

  /** Whether the store can take this body in one write (small, of known length, not a ranged chunk). */
  private fitsWhole(body: UploadBody): body is UploadBody & { length: number } {
    const storage = this.ctx.storage;
    return storage.writeBlob !== undefined && body.length !== undefined && !body.range && body.length <= (storage.maxWholeBlob ?? 0);
  }

  /**
   * Claims an upload for its one commit before storage is touched
   * (invariant 9): a second PUT of the same upload, here or on another
   * node, is refused instead of writing or deleting the first one's key.
   */
  private async claim(upload: UploadRecord, offset: number, key: string): Promise<void> {
    if (await this.ctx.metadata.claimUpload(upload.id, offset, key, this.ctx.now())) return;
    const now = await this.ctx.metadata.findUpload(upload.id);
    if (!now) throw new RegistryError('BLOB_UPLOAD_UNKNOWN');
    throw beingCommitted(now);
  }

  /**
   * Runs a claimed upload's commit. When it fails, the upload ends, and its
   * object is removed only if metadata confirms nothing names it: ending the
   * claim (deleting the upload row) succeeds only while no commit has
   * consumed it, and afterwards none can. When metadata does not say so (the
   * commit's outcome is uncertain, or metadata is unreachable), the object is
   * left for fsck, which removes it once it is unknown on two looks.
   */
  private async asClaimed<T>(id: string, key: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      this.digests.forget(id);
      const ended = await this.ctx.metadata.deleteUpload(id).catch(() => false);
      if (ended) await this.ctx.storage.deleteBlob(key).catch(() => {});
      else this.ctx.log?.warn({ uploadId: id, key, reason: (e as Error).message }, 'commit failed after its claim was consumed or with its outcome unknown: object left for fsck');
      await this.ctx.storage.deleteUpload(id).catch(() => {});
      throw e;
    }
  }

  /** A whole body stored as its (claimed) blob object in one write, verified, then recorded. */
  private async storeWhole(id: string, key: string, repository: string, digest: Digest, body: UploadBody & { length: number }): Promise<BlobRecord> {
    const storage = this.ctx.storage;
    const hash = createHash('sha256');
    await pausePoint('commit-before-storage');
    let written: string;
    try {
      written = await storage.writeBlob!(id, digest.value, body.stream, body.length, (c) => hash.update(c));
    } catch (e) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'request body was cut off', { detail: { reason: (e as Error).message } });
    }
    if (written !== key) throw new Error(`store wrote ${written}, the commit claimed ${key}`);
    const actual = digest.algorithm === 'sha256' ? hash.digest('hex') : await digestStream(digest.algorithm, await storage.openBlob(key));
    if (actual !== digest.hex) throw digestMismatch(digest, actual);
    crashPoint('commit-after-rename');
    await pausePoint('commit-after-storage');
    return this.record(id, repository, digest, body.length, key);
  }

  /**
   * An upload whose stored bytes are gone (drift: removed behind Berth's
   * back, or lost with a disk) cannot continue: its session ends, and the
   * client is told to start again rather than get a blob of the wrong bytes.
   */
  private async bytesLost(id: string, cause: unknown): Promise<RegistryError> {
    this.digests.forget(id);
    this.ctx.log?.warn({ uploadId: id, reason: (cause as Error).message }, 'upload bytes missing: the upload is ended');
    await this.ctx.metadata.deleteUpload(id).catch(() => {});
    await this.ctx.storage.deleteUpload(id).catch(() => {});
    return new RegistryError('BLOB_UPLOAD_UNKNOWN', "the upload's stored bytes are gone; start the upload again");
  }

  private async exclusive<T>(id: string, work: () => Promise<T>): Promise<T> {
    if (this.busy.has(id)) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload', { status: 416 });
    }
    this.busy.add(id);
    try {
      return await work();
    } finally {
      this.busy.delete(id);
    }
  }

  /** Appends a request body at the upload's offset and records the new offset. */
  /**
   * A chunk that would take the upload past what its quota namespaces have
   * left is refused before its bytes are stored: the earliest point a push
   * over quota can be told. Advisory (usage may change before the commit,
   * which checks exactly); costs nothing without a quota.
   */
  private async checkRoom(repository: string, size: number, body: UploadBody): Promise<void> {
    const quotas = this.ctx.policies?.current.writeGuard(repository)?.quotas;
    if (!quotas) return;
    const usage = new Map((await this.ctx.metadata.quotaUsage()).map((u) => [u.namespace, u.bytes]));
    for (const q of quotas) {
      const used = usage.get(q.namespace) ?? 0;
      if (used + size > q.limit) {
        body.stream.resume(); // drain what the client sends; it is refused
        throw q.refuse(used, size);
      }
    }
  }

  private async appendBody(upload: UploadRecord, body: UploadBody): Promise<Appended> {
    if (body.range && body.range.start !== upload.offset) {
      body.stream.resume(); // drain what the client sends; it is refused
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'chunk does not start at the upload offset', {
        status: 416,
        detail: { offset: upload.offset, start: body.range.start },
        headers: rangeHeaders(upload),
      });
    }
    const storage = this.ctx.storage;
    if (!storage.readUpload) return this.appendWithSavedHash(upload, body);
    return this.appendWithLocalHash(upload, body, storage.readUpload.bind(storage));
  }

  /** The append of a store that can read an upload back: the running hash is kept in this process, rebuilt from the bytes when missing. */
  private async appendWithLocalHash(upload: UploadRecord, body: UploadBody, readUpload: (id: string, length: number) => Readable): Promise<Appended> {
    const hash = await this.digests.take(upload.id, upload.offset, () => readUpload(upload.id, upload.offset)).catch(async (e: unknown) => {
      body.stream.resume();
      throw isUploadBytesMissing(e) ? await this.bytesLost(upload.id, e) : e;
    });
    const received = await this.receive(upload.id, upload.offset, body, (c) => hash.update(c));
    crashPoint('upload-after-append');
    const offset = upload.offset + received;
    if (!(await this.ctx.metadata.advanceUpload(upload.id, upload.offset, offset, this.ctx.now()))) {
      // Another process appended concurrently: ours loses, its bytes are truncated by the next append.
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'upload was modified concurrently', { status: 416, headers: rangeHeaders(upload) });
    }
    this.digests.keep(upload.id, offset, hash);
    return { offset };
  }

  /**
   * The append of a store that cannot read an upload back (S3): the sha256
   * state after the upload's offset is saved in metadata with the offset,
   * in the same compare-and-set, and any node continues from it.
   */
  private async appendWithSavedHash(upload: UploadRecord, body: UploadBody): Promise<Appended> {
    const hash = await resumeSha256(upload.offset, upload.hashState);
    const received = await this.receive(upload.id, upload.offset, body, (c) => hash.update(c));
    crashPoint('upload-after-append');
    const offset = upload.offset + received;
    const hashState = Buffer.from(hash.save());
    if (!(await this.ctx.metadata.advanceUpload(upload.id, upload.offset, offset, this.ctx.now(), hashState))) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'upload was modified concurrently', { status: 416, headers: rangeHeaders(upload) });
    }
    return { offset, hashState };
  }

  /**
   * Streams a body into storage, enforcing its declared length and range.
   * A body refused at offset 0 leaves no upload object behind, so that an
   * upload finished by one whole body never has a leftover to remove
   * (stores create none until the first append).
   */
  private async receive(id: string, offset: number, body: UploadBody, onChunk: (c: Buffer) => void): Promise<number> {
    let received: number;
    let refusal: RegistryError | undefined;
    try {
      received = await this.ctx.storage.appendUpload(id, offset, body.stream, onChunk);
      const expected = body.range ? body.range.end - body.range.start + 1 : body.length;
      if (expected !== undefined && received !== expected) {
        refusal = new RegistryError('SIZE_INVALID', 'body length does not match Content-Length or Content-Range', {
          detail: { expected, received },
        });
      }
    } catch (e) {
      this.digests.forget(id);
      body.stream.resume();
      if (isUploadBytesMissing(e)) throw await this.bytesLost(id, e);
      refusal = new RegistryError('BLOB_UPLOAD_INVALID', 'request body was cut off', { detail: { reason: (e as Error).message } });
    }
    if (refusal) {
      if (offset === 0) await this.ctx.storage.deleteUpload(id).catch(() => {});
      throw refusal;
    }
    return received!;
  }

  /**
   * Checks the upload's first `length` bytes against the digest. Returns
   * false when that can only be done once the blob object exists (sha512 on
   * a store without readUpload: commit then reads the object back).
   */
  private async verify(id: string, length: number, digest: Digest, hashState: Buffer | undefined): Promise<boolean> {
    let actual: string;
    const storage = this.ctx.storage;
    if (!storage.readUpload) {
      if (digest.algorithm !== 'sha256') return false;
      actual = (await resumeSha256(length, hashState)).digest('hex');
    } else {
      const readUpload = storage.readUpload.bind(storage);
      try {
        if (digest.algorithm === 'sha256') {
          const hash = await this.digests.take(id, length, () => readUpload(id, length));
          actual = hash.copy().digest('hex');
          this.digests.keep(id, length, hash);
        } else {
          actual = await digestStream(digest.algorithm, readUpload(id, length));
        }
      } catch (e) {
        if (isUploadBytesMissing(e)) throw await this.bytesLost(id, e);
        throw e;
      }
    }
    if (actual !== digest.hex) throw digestMismatch(digest, actual);
    return true;
  }

  /**
   * Bytes first (durable, under a key only this upload uses), then metadata.
   * `checkAfter`: the digest is verified by reading the committed object
   * back, which is deleted when it does not match.
   */
  private async commit(id: string, key: string, repository: string, digest: Digest, size: number, hasSession: boolean, checkAfter = false): Promise<BlobRecord> {
    const storage = this.ctx.storage;
    await pausePoint('commit-before-storage');
    let written: string;
    try {
      written = await storage.commitUpload(id, size, digest.value);
    } catch (e) {
      if (hasSession && isUploadBytesMissing(e)) throw await this.bytesLost(id, e);
      throw e;
    }
    if (written !== key) throw new Error(`store wrote ${written}, the commit claimed ${key}`);
    crashPoint('commit-after-rename');
    await pausePoint('commit-after-storage');
    this.digests.forget(id);
    if (checkAfter) {
      // A mismatch ends the upload (asClaimed): its bytes became the object.
      const actual = await digestStream(digest.algorithm, await storage.openBlob(key));
      if (actual !== digest.hex) throw digestMismatch(digest, actual);
    }
    return this.record(id, repository, digest, size, key);
  }

  /** Records stored bytes as a blob in metadata (the second half of a commit), ending the claimed upload. */
  private async record(id: string, repository: string, digest: Digest, size: number, key: string): Promise<BlobRecord> {
    const now = this.ctx.now();
    const result: CommitBlobResult = await this.ctx.metadata.commitBlob(id, repository, { digest: digest.value, size, storageKey: key }, now, this.eventContexts.get(id), this.ctx.policies?.current.writeGuard(repository));
    crashPoint('commit-after-metadata');
    // Already stored: keep the one copy (content is addressed, stored once).
    if (result.outcome === 'already-present') await this.ctx.storage.deleteBlob(key);
    // Replaced a blob GC was deleting: its object is ours to remove now.
    else if (result.replacedKey !== undefined) await this.ctx.storage.deleteBlob(result.replacedKey);
    return { digest: digest.value, size, storageKey: key, lastSeen: now };
  }
}

/**
 * The sha256 state after `offset` bytes, from a state saved by `save()`
 * (hash-wasm: its state can be stored). Loaded on first use, by stores
 * without readUpload only: the module costs ~10 MiB of memory.
 */
async function resumeSha256(offset: number, state: Buffer | undefined) {
  const { createSHA256 } = await import('hash-wasm');
  const hash = await createSHA256();
  if (offset === 0) hash.init();
  else if (state) hash.load(state);
  else throw new RegistryError('BLOB_UPLOAD_INVALID', 'upload has no saved hash state and cannot be continued; start it again');
  return hash;
}

function beingCommitted(upload: UploadRecord): RegistryError {
  return new RegistryError('BLOB_UPLOAD_INVALID', 'another request is committing this upload', { status: 416, headers: rangeHeaders(upload) });
}

function digestMismatch(expected: Digest, actual: string): RegistryError {
  return new RegistryError('DIGEST_INVALID', 'provided digest did not match uploaded content', {
    detail: { expected: expected.value, actual: `${expected.algorithm}:${actual}` },
  });
}

/** The spec's Range header for an upload: the inclusive range of bytes received. */
export function uploadRange(offset: number): string {
  return `0-${Math.max(offset - 1, 0)}`;
}

function rangeHeaders(upload: UploadRecord): Record<string, string> {
  return { Range: uploadRange(upload.offset), 'Docker-Upload-UUID': upload.id };
}
