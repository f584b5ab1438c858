/**
 * Pull events change nothing, so they need no transaction of their own:
 * they are buffered and written to the outbox in batches (one write per
 * interval), and at most `maxBuffered` wait in memory; beyond that they are
 * dropped (and counted) rather than let memory grow.
 */
import type { MetadataStore, OutboxEvent } from '../metadata/store.js';

export class PullRecorder {
  private buffer: OutboxEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  dropped = 0;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly onError: (e: unknown) => void,
    private readonly intervalMs = 100,
    private readonly maxBuffered = 10_000,
  ) {}

  readonly record = (event: OutboxEvent): void => {
    if (this.buffer.length >= this.maxBuffered) {
      this.dropped++;
      return;
    }
    this.buffer.push(event);
    this.timer ??= setTimeout(() => void this.flush(), this.intervalMs);
  };

  flush(): Promise<void> {
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    if (batch.length === 0) return this.flushing;
    this.flushing = this.flushing.then(() => this.metadata.appendEvents(batch)).catch(this.onError);
    return this.flushing;
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.flush();
  }
}
