/** Reading and deleting blobs. Existence is answered by metadata alone (invariant 1). */
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobRecord, EventContext } from '../metadata/store.js';
import type { ByteRange } from '../storage/blob-store.js';
import type { RegistryContext } from './context.js';
import { RegistryError } from './errors.js';
import type { Digest } from './reference.js';
import type { CacheOutcome, RemoteBlob } from './pull-through.js';

export class Blobs {
  constructor(private readonly ctx: RegistryContext) {}

  /**
   * The blob as the repository holds it. Answering "it exists" renews the
   * grace period of the blob and of its link into this repository, in the
   * operation that checks it is live (invariant 5), so a client that skips
   * the upload because of this answer can still reference the blob in its
   * manifest.
   */
  async stat(repository: string, digest: Digest): Promise<BlobRecord> {
    const blob = await this.ctx.metadata.statBlob(repository, digest.value, this.ctx.now(), this.ctx.options.touchInterval);
    if (!blob) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
    return blob;
  }

  /**
   * The blob for a GET: the local one, or, in a repository the pull-through
   * cache serves, the upstream fetch it joins on a local miss.
   */
  async find(repository: string, digest: Digest): Promise<{ blob: BlobRecord } | { remote: RemoteBlob }> {
    const pullThrough = this.ctx.pullThrough;
    if (!pullThrough?.serves(repository)) return { blob: await this.stat(repository, digest) };
    const blob = await this.ctx.metadata.statBlob(repository, digest.value, this.ctx.now(), this.ctx.options.touchInterval);
    if (blob) {
      pullThrough.hit(repository);
      return { blob };
    }
    const remote = await pullThrough.blob(repository, digest);
    if (!remote) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
    return 'storageKey' in remote ? { blob: remote } : { remote };
  }

  /** The size of a blob for a HEAD: local, or upstream's in a cached repository. */
  async size(repository: string, digest: Digest): Promise<{ digest: string; size: number; cache?: CacheOutcome }> {
    const pullThrough = this.ctx.pullThrough;
    if (!pullThrough?.serves(repository)) return this.stat(repository, digest);
    const blob = await this.ctx.metadata.statBlob(repository, digest.value, this.ctx.now(), this.ctx.options.touchInterval);
    if (blob) {
      pullThrough.hit(repository);
      return { digest: blob.digest, size: blob.size, cache: 'hit' };
    }
    const size = await pullThrough.blobSize(repository, digest);
    if (size === undefined) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
    return { digest: digest.value, size, cache: 'miss' };
  }

  /**
   * Writes the bytes of a blob that `stat` returned (or a range) to `out`,
   * calling `opened` just before the first byte. Missing bytes are drift:
   * BLOB_UNKNOWN before anything is sent, never a 500.
   */
  async copyTo(blob: BlobRecord, range: ByteRange | undefined, out: Writable, opened: () => void): Promise<void> {
    const whole = range ?? { start: 0, end: blob.size - 1 };
    try {
      if (whole.end < whole.start) return opened();
      const storage = this.ctx.storage;
      if (storage.copyBlobTo) return await storage.copyBlobTo(blob.storageKey, whole, out, opened);
      const stream = await storage.openBlob(blob.storageKey, whole);
      opened();
      await pipeline(stream, out);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new RegistryError('BLOB_UNKNOWN', 'blob bytes are missing from storage (run berth fsck)', {
          detail: { digest: blob.digest },
        });
      }
      throw e;
    }
  }

  /** A pre-signed URL of the blob's bytes, when redirects are on and the store makes them. */
  async redirectUrl(blob: BlobRecord): Promise<string | undefined> {
    const storage = this.ctx.storage;
    if (!this.ctx.options.redirectBlobs || !storage.presignBlob) return undefined;
    return storage.presignBlob(blob.storageKey, this.ctx.options.redirectExpiry);
  }

  /** A GET or HEAD that found the blob: a pull event, when some endpoint takes pulls. */
  pulled(repository: string, blob: { digest: string; size?: number }, ev: EventContext): void {
    this.ctx.pullEvents?.({ action: 'pull', kind: 'blob', repository, digest: blob.digest, size: blob.size, mediaType: 'application/octet-stream', ctx: ev });
  }

  async delete(repository: string, digest: Digest, ev?: EventContext): Promise<void> {
    if (!this.ctx.options.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletes are disabled');
    if (!(await this.ctx.metadata.unlinkBlob(repository, digest.value, ev))) {
      throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
    }
  }
}
