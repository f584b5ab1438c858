/**
 * Running digests of uploads in progress. Hashing happens while bytes arrive;
 * the hash state of an upload is kept between its chunks so finishing it
 * does not read the bytes again. The state is a cache of bytes, not of
 * existence: when it is missing (another process took the previous chunk,
 * or this one restarted) it is rebuilt from the upload's stored bytes.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { DigestAlgorithm } from './reference.js';

interface RunningHash {
  hash: Hash;
  offset: number;
}

const MAX_ENTRIES = 4096;

export class UploadDigests {
  private readonly running = new Map<string, RunningHash>();

  /**
   * The sha256 state of `uploadId` after exactly `offset` bytes, rebuilding
   * it from `read()` when this process does not hold it. The state is taken
   * out of the cache: the caller gives it back with `keep` once its bytes are
   * acknowledged, so a failed request never leaves a hash ahead of the data.
   */
  async take(uploadId: string, offset: number, read: () => Readable): Promise<Hash> {
    const entry = this.running.get(uploadId);
    this.running.delete(uploadId);
    if (entry && entry.offset === offset) return entry.hash;
    const hash = createHash('sha256');
    if (offset > 0) for await (const chunk of read()) hash.update(chunk as Buffer);
    return hash;
  }

  keep(uploadId: string, offset: number, hash: Hash): void {
    if (this.running.size >= MAX_ENTRIES) {
      // Oldest first: Map iterates in insertion order.
      const oldest = this.running.keys().next().value;
      if (oldest !== undefined) this.running.delete(oldest);
    }
    this.running.set(uploadId, { hash, offset });
  }

  forget(uploadId: string): void {
    this.running.delete(uploadId);
  }
}

/** Hex digest of a stream with the given algorithm (used for sha512 and by fsck). */
export async function digestStream(algorithm: DigestAlgorithm, stream: Readable): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
