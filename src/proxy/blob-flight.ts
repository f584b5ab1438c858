/**
 * One upstream fetch of one blob, however many requests want it (single
 * flight). The bytes go, as they arrive, to a spool file that every joined
 * request reads from its own position, and through the registry's verified
 * store (the same path as a monolithic push) into a blob. A request that
 * goes away stops reading; the fetch goes on for the others and for the
 * cache. The last byte is handed out only once the digest has verified and
 * the blob is committed: a client never gets a whole body of wrong bytes,
 * and a failed fetch cuts every reader off short (so it retries).
 */
import { randomUUID } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { Transform, type Readable, type Writable } from 'node:stream';
import type { RemoteBlob } from '../registry/pull-through.js';

/** Where a flight's bytes go: resolves once they are a verified, committed blob. */
export type BlobSink = (stream: Readable, length: number | undefined) => Promise<void>;

const READ_SIZE = 1024 * 1024;

export class BlobFlight {
  /** Bytes upstream announced (Content-Length), once the response has started. */
  size?: number;
  /** Resolves true once upstream answered with the blob, false when it does not have it; rejects when it could not be asked. */
  readonly started: Promise<boolean>;
  /** Resolves once the blob is committed; rejects when the fetch or the verification failed. */
  readonly done: Promise<void>;
  private spool?: FileHandle;
  private written = 0;
  private verified = false;
  private failure?: Error;
  private readers = 0;
  private settled = false;
  private waiters: (() => void)[] = [];

  constructor(
    readonly digest: string,
    fetch: () => Promise<IncomingMessage | undefined>,
    sink: BlobSink,
    spoolDir: string,
    onBytes: (n: number) => void,
  ) {
    let start!: (found: boolean) => void;
    let refuse!: (e: unknown) => void;
    this.started = new Promise((resolve, reject) => ((start = resolve), (refuse = reject)));
    this.started.catch(() => {});
    this.done = this.run(fetch, sink, spoolDir, onBytes, start, refuse);
    this.done.catch(() => {});
  }

  /** Whether a request may still join: the fetch has not settled (its spool is still open). */
  get joinable(): boolean {
    return !this.settled;
  }

  /** A handle for one request; it must call copyTo (which releases it) or release. */
  reader(): RemoteBlob & { release(): void } {
    this.readers++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.readers--;
      void this.closeWhenIdle();
    };
    return {
      digest: this.digest,
      size: this.size,
      copyTo: async (out, opened) => {
        try {
          await this.copyTo(out, opened);
        } finally {
          release();
        }
      },
      release,
    };
  }

  private async run(
    fetch: () => Promise<IncomingMessage | undefined>,
    sink: BlobSink,
    spoolDir: string,
    onBytes: (n: number) => void,
    start: (found: boolean) => void,
    refuse: (e: unknown) => void,
  ): Promise<void> {
    let res: IncomingMessage | undefined;
    try {
      res = await fetch();
      if (!res) return void start(false);
      const length = res.headers['content-length'];
      this.size = length === undefined ? undefined : Number(length);
      // Unlinked at once: the open handle keeps the bytes for the readers, and nothing is left behind on a crash.
      const path = join(spoolDir, `berth-spool-${randomUUID()}`);
      this.spool = await open(path, 'w+');
      await unlink(path);
    } catch (e) {
      res?.destroy();
      this.fail(e as Error);
      refuse(e);
      throw e;
    }
    start(true);
    const spool = this.spool;
    const tee = new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        spool.write(chunk, 0, chunk.length, this.written).then(
          () => {
            this.written += chunk.length;
            onBytes(chunk.length);
            this.notify();
            callback(null, chunk);
          },
          (e: Error) => callback(e),
        );
      },
    });
    res.on('error', (e) => tee.destroy(e));
    res.on('aborted', () => tee.destroy(new Error('upstream connection closed mid-body')));
    res.pipe(tee);
    try {
      await sink(tee, this.size);
    } catch (e) {
      res.destroy();
      this.fail(e as Error);
      throw e;
    }
    this.verified = true;
    this.settled = true;
    this.notify();
    await this.closeWhenIdle();
  }

  private fail(e: Error): void {
    this.failure = e;
    this.settled = true;
    this.notify();
    void this.closeWhenIdle();
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private async closeWhenIdle(): Promise<void> {
    if (!this.settled || this.readers > 0 || !this.spool) return;
    const spool = this.spool;
    this.spool = undefined;
    await spool.close().catch(() => {});
  }

  private async copyTo(out: Writable, opened: () => void): Promise<void> {
    let position = 0;
    let sentHeaders = false;
    for (;;) {
      if (this.failure) throw this.failure;
      if (out.destroyed) throw new Error('the client went away');
      // Everything but the last byte may go before verification; that one waits for it.
      const available = this.verified ? this.written : Math.max(0, this.written - 1);
      if (position < available) {
        const spool = this.spool!;
        const chunk = Buffer.allocUnsafe(Math.min(READ_SIZE, available - position));
        const { bytesRead } = await spool.read(chunk, 0, chunk.length, position);
        if (!sentHeaders) {
          sentHeaders = true;
          opened();
        }
        position += bytesRead;
        if (!out.write(bytesRead === chunk.length ? chunk : chunk.subarray(0, bytesRead))) await drained(out);
      } else if (this.verified) {
        if (!sentHeaders) opened();
        return;
      } else {
        if (!sentHeaders) {
          // Headers go at once: a client waiting on a slow upstream sees the response start.
          sentHeaders = true;
          opened();
        }
        await this.changed();
      }
    }
  }
}

function drained(out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', closed);
      resolve();
    };
    const closed = () => {
      out.off('drain', done);
      reject(new Error('the client went away'));
    };
    out.once('drain', done);
    out.once('close', closed);
  });
}
