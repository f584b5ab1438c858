/**
 * Records when tags are pulled, for "pulled within" retention rules, at the
 * cost of a map update per pull: pulls are kept in memory (the newest per
 * tag) and written in one batch every few seconds, not one write per pull.
 * Only repositories a "pulled within" rule covers are recorded. A pull is in
 * metadata within `interval` (and before any GC run of this process); a
 * crash loses at most that much, which can only make retention keep less.
 * At most `maxPending` distinct tags wait in memory: a burst of pulls over
 * many tags is written early rather than held for the whole interval.
 */
import type { MetadataStore, TagPull } from '../metadata/store.js';
import type { Policies } from './policies.js';

export class TagPullRecorder {
  private pending = new Map<string, TagPull>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly metadata: MetadataStore,
    private readonly policies: { current: Policies },
    private readonly interval = 5000,
    private readonly onError: (e: unknown) => void = () => {},
    private readonly maxPending = 10_000,
  ) {}

  record(repository: string, tag: string): void {
    if (!this.policies.current.tracksPulls(repository)) return;
    this.pending.set(`${repository}\0${tag}`, { repository, tag, at: Date.now() });
    if (this.pending.size >= this.maxPending) {
      void this.flush().catch(this.onError);
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush().catch(this.onError), this.interval);
      this.timer.unref();
    }
  }

  /** Writes the pulls recorded so far (one batch). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = [...this.pending.values()];
    this.pending = new Map();
    this.flushing = this.flushing.then(() => (batch.length > 0 ? this.metadata.recordTagPulls(batch) : undefined));
    return this.flushing;
  }
}
