/**
 * Runs garbage collection for one of its three triggers (background timer,
 * admin endpoint, `berth gc`) and records each run in metadata, where the
 * monitoring counters are read from whatever process ran it.
 */
import type { GcConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { LifecycleRun, MetadataStore } from '../metadata/store.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { Policies } from '../policy/policies.js';
import { collectGarbage, type GcProgress, type GcReport } from './collector.js';

export type GcTrigger = LifecycleRun['trigger'];

export interface GcRunOptions {
  dryRun?: boolean;
  verbose?: boolean;
  /** Overrides both grace periods (ms), e.g. `berth gc --grace 0`. */
  grace?: number;
  progress?: GcProgress;
}

export class GcService {
  /** One run at a time per process; other processes may run their own concurrently. */
  private running: Promise<GcReport> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly storage: BlobStore,
    private readonly config: GcConfig,
    private readonly touchInterval: number,
    private readonly logger: Logger,
    /** The policies in force, read at each run (a reload applies to the next one). */
    private readonly policies?: { current: Policies },
    /** Runs before each collection (the server writes the pull times it holds). */
    private readonly beforeRun: () => Promise<void> = async () => {},
  ) {}

  async run(trigger: GcTrigger, opts: GcRunOptions = {}): Promise<GcReport> {
    while (this.running) await this.running.catch(() => {});
    this.running = this.runOnce(trigger, opts);
    try {
      return await this.running;
    } finally {
      this.running = undefined;
    }
  }

  private async runOnce(trigger: GcTrigger, opts: GcRunOptions): Promise<GcReport> {
    const startedAt = Date.now();
    await this.beforeRun();
    const report = await collectGarbage(
      this.metadata,
      this.storage,
      {
        blobGrace: opts.grace ?? this.config.blobGrace,
        manifestGrace: opts.grace ?? this.config.manifestGrace,
        untagged: this.config.untagged,
        uploadTimeout: this.config.uploadTimeout,
        touchInterval: this.touchInterval,
        dryRun: opts.dryRun ?? false,
        verbose: opts.verbose ?? false,
        policies: this.policies?.current,
      },
      this.logger.child({ trigger }),
      opts.progress,
    );
    if (!report.dryRun) {
      await this.metadata.recordRun({
        kind: 'gc',
        trigger,
        startedAt,
        durationMs: report.durationMs,
        manifestsDeleted: report.manifestsDeleted,
        blobsDeleted: report.blobsDeleted,
        bytesReclaimed: report.bytesReclaimed,
        uploadsPurged: report.uploadsPurged,
        problems: 0,
      });
    }
    return report;
  }

  /** Starts the background collector, if enabled. */
  startBackground(): void {
    if (!this.config.enabled || this.timer) return;
    this.timer = setInterval(() => {
      this.run('background').catch((e: unknown) => this.logger.error({ err: e }, 'background garbage collection failed'));
    }, this.config.interval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
  }
}
