/**
 * Pull counts for the console: each manifest GET adds one to an in-memory
 * map (no I/O on the pull path), and the map goes to metadata in one batch
 * every few seconds (`recordPulls`, one transaction), when it grows large,
 * before the console reads counts, and at shutdown. A crash loses at most
 * the last interval's counts: they are statistics, not state.
 */
import type { Logger } from '../log.js';
import type { MetadataStore, PullCount } from '../metadata/store.js';

const FLUSH_MS = 10_000;
const MAX_PENDING = 10_000;

export class PullCounter {
  private pending = new Map<string, PullCount>();
  private flushing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly logger: Pick<Logger, 'warn'>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Called on the pull path: a map update, nothing else (a flush when the map is full runs in the background). */
  record(repository: string, digest: string): void {
    const key = `${repository}@${digest}`;
    const entry = this.pending.get(key);
    if (entry) {
      entry.count++;
      entry.lastPulled = this.now();
    } else {
      this.pending.set(key, { repository, digest, count: 1, lastPulled: this.now() });
      if (this.pending.size >= MAX_PENDING) void this.flush();
    }
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), FLUSH_MS).unref();
  }

  /** Writes what has been counted so far; one flush at a time, in order. */
  flush(): Promise<void> {
    const batch = [...this.pending.values()];
    if (batch.length === 0) return this.flushing;
    this.pending = new Map();
    this.flushing = this.flushing.then(() =>
      this.metadata.recordPulls(batch).catch((err: unknown) => this.logger.warn({ err, manifests: batch.length }, 'pull counts not recorded')),
    );
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
