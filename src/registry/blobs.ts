/** Reading and deleting blobs. Existence is answered by metadata alone (invariant 1). */
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobRecord } from '../metadata/store.js';
import type { ByteRange } from '../storage/blob-store.js';
import type { RegistryContext } from './context.js';
import { RegistryError } from './errors.js';
import type { Digest } from './reference.js';

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

  async delete(repository: string, digest: Digest): Promise<void> {
    if (!this.ctx.options.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletes are disabled');
    if (!(await this.ctx.metadata.unlinkBlob(repository, digest.value))) {
      throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
    }
  }
}
