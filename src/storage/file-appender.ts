/**
 * Appends a stream's chunks to a file at increasing positions with at most
 * one write in flight: chunks that arrive while a write runs go out together
 * in the next one (a single writev). Receiving and writing overlap, and a
 * 16 MiB chunk costs a few dozen thread-pool round trips instead of one per
 * 64 KiB network read (each of which would stall the socket until the disk
 * call returned).
 */
import type { FileHandle } from 'node:fs/promises';

export class FileAppender {
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private running: Promise<void> | undefined;
  private failure: unknown;
  /** Where the next batch goes. */
  private next: number;
  private writtenTo: number;

  /**
   * @param maxBatch bytes held back while a write runs before add() waits for it
   * @param onWritten called after each write with the new end of written bytes
   */
  constructor(
    private readonly fh: FileHandle,
    position: number,
    private readonly maxBatch: number,
    private readonly onWritten: (written: number) => void = () => {},
  ) {
    this.next = position;
    this.writtenTo = position;
  }

  /** End of the bytes known to be written to the file (not necessarily durable). */
  get written(): number {
    return this.writtenTo;
  }

  /** Queues a chunk; resolves at once unless maxBatch bytes are already waiting (backpressure). */
  async add(chunk: Buffer): Promise<void> {
    this.check();
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    if (!this.running) return this.start();
    if (this.batchBytes >= this.maxBatch) {
      await this.running;
      this.check();
      if (!this.running && this.batchBytes > 0) this.start();
    }
  }

  /** Writes whatever is queued and waits for every write; throws the first write error. */
  async end(): Promise<void> {
    while (this.running || this.batchBytes > 0) {
      if (this.running) await this.running;
      else this.start();
    }
    this.check();
  }

  /** Waits for the write in flight without writing more (after a failed body: nothing is acknowledged). */
  async abandon(): Promise<void> {
    await this.running;
  }

  private start(): void {
    const chunks = this.batch;
    const bytes = this.batchBytes;
    const at = this.next;
    this.batch = [];
    this.batchBytes = 0;
    this.next += bytes;
    this.running = this.fh
      .writev(chunks, at)
      .then(({ bytesWritten }) => {
        if (bytesWritten !== bytes) throw new Error(`short write: ${bytesWritten} of ${bytes} bytes`);
        this.writtenTo = at + bytes;
        this.onWritten(this.writtenTo);
      })
      .catch((e: unknown) => {
        this.failure ??= e;
      })
      .finally(() => {
        this.running = undefined;
      });
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}
