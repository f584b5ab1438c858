/**
 * The garbage collector. It is orchestration only: every decision is taken
 * again, atomically, by the metadata store at the moment it acts (see
 * MetadataStore, "Lifecycle"), so the same code is safe as the background
 * collector, the admin trigger, `berth gc` in another process, or several of
 * those at once. Bytes are deleted only after metadata has marked the blob
 * as being deleted (invariant 2), and only the object that mark names, so a
 * concurrent re-upload, which gets a key of its own, is never lost
 * (invariant 3).
 */
import { crashPoint } from '../crash-points.js';
import { pausePoint } from '../pause-points.js';
import type { Logger } from '../log.js';
import type { BlobCandidate, BlobRecord, GcView, ManifestCandidate, MetadataStore } from '../metadata/store.js';
import type { Policies } from '../policy/policies.js';
import { decideRetention, type RetentionVerdict } from '../policy/retention.js';
import type { BlobStore } from '../storage/blob-store.js';

export interface GcOptions {
  /** Unreferenced blobs last seen longer ago than this are deleted, ms. */
  blobGrace: number;
  /** Manifests without tag or parent for longer than this are deleted, ms. */
  manifestGrace: number;
  /** Whether untagged manifests are collected at all. */
  untagged: boolean;
  /** Upload sessions idle for longer than this are purged, ms. */
  uploadTimeout: number;
  /**
   * How stale a blob's "last seen" (or an untagged manifest's) may be before
   * a HEAD renews it (the registry's touchInterval): added to a non-zero
   * grace so that what was said to exist is kept for the full grace period
   * (invariant 5), though the answer came from a read.
   */
  touchInterval: number;
  /** Compute what would be deleted, delete nothing. */
  dryRun: boolean;
  /** Keep the digests of what was deleted in the report. */
  verbose: boolean;
  /** The policies whose retention rules this pass applies (absent: none). */
  policies?: Policies;
}

/** What one retention rule deleted (or, in a dry run, would delete), and why. */
export interface RetentionReport {
  /** Index of the rule in the policies list, and its repository patterns. */
  rule: number;
  repositories: string[];
  tags: { repository: string; tag: string; digest: string; reason: string }[];
  /** Untagged manifests deleted after the rule's untaggedAfter. */
  untagged: { repository: string; digest: string; reason: string }[];
}

export interface GcReport {
  dryRun: boolean;
  manifestsDeleted: number;
  blobsDeleted: number;
  bytesReclaimed: number;
  linksRemoved: number;
  uploadsPurged: number;
  repositoriesRemoved: number;
  /** Candidates the pass looked at: its cost follows these, not the registry's size. */
  manifestsExamined: number;
  blobsExamined: number;
  durationMs: number;
  /** Where the time went, ms per phase. */
  phasesMs: Partial<Record<'retention' | GcPhase | 'repositories', number>>;
  /** With verbose: what was (or would be) deleted. */
  manifests?: string[];
  blobs?: string[];
  /** With retention rules: what each deleted (or would delete) and why. */
  retention?: RetentionReport[];
}

export type GcPhase = 'manifests' | 'blobs' | 'uploads';
export type GcProgress = (phase: GcPhase, done: number) => void;

const BATCH = 500;
/** Untagged manifests a retention rule looks at per round (candidates of every repository, filtered). */
const UNTAGGED_SCAN = 5000;
const WAVE = 64;

export async function collectGarbage(
  metadata: MetadataStore,
  storage: BlobStore,
  options: GcOptions,
  logger: Logger,
  progress: GcProgress = () => {},
  now: () => number = Date.now,
): Promise<GcReport> {
  const started = now();
  // Cutoffs come from the store's clock, read once per pass: the database
  // server's when nodes share PostgreSQL, so a collector whose own clock is
  // ahead cannot shorten anyone's grace period (invariant 10).
  const storeNow = await metadata.now();
  const report: GcReport = {
    dryRun: options.dryRun,
    manifestsDeleted: 0,
    blobsDeleted: 0,
    bytesReclaimed: 0,
    linksRemoved: 0,
    uploadsPurged: 0,
    repositoriesRemoved: 0,
    manifestsExamined: 0,
    blobsExamined: 0,
    durationMs: 0,
    phasesMs: {},
  };
  if (options.verbose) {
    report.manifests = [];
    report.blobs = [];
  }

  const sweep = (view: GcView, bytes: Bytes | undefined) => new Sweep(view, bytes, options, report, progress, storeNow).run();
  if (options.dryRun) await metadata.dryRun((view) => sweep(view, undefined));
  else await sweep(metadata, { metadata, storage });

  report.durationMs = now() - started;
  logger.info({ gc: report.dryRun ? 'dry-run' : 'run', ...withoutLists(report) }, 'garbage collection finished');
  return report;
}

/** Where a real pass deletes bytes; a dry run has none (its view's changes are discarded, the bytes are real). */
interface Bytes {
  metadata: MetadataStore;
  storage: BlobStore;
}

/** One pass over the garbage, against the live store or a dry run's view of it. */
class Sweep {
  constructor(
    private readonly store: GcView,
    private readonly bytes: Bytes | undefined,
    private readonly o: GcOptions,
    private readonly report: GcReport,
    private readonly progress: GcProgress,
    private readonly now: number,
  ) {}

  async run(): Promise<void> {
    const policies = this.o.policies;
    if (policies?.hasRetention) await this.timed('retention', () => this.retention(policies));
    if (this.o.untagged) await this.timed('manifests', () => this.manifests());
    await this.timed('blobs', () => this.blobs());
    await this.timed('uploads', () => this.uploads());
    await this.timed('repositories', async () => {
      this.report.repositoriesRemoved = await this.store.deleteEmptyRepositories();
    });
  }

  private async timed(phase: keyof GcReport['phasesMs'], work: () => Promise<void>): Promise<void> {
    const t = performance.now();
    await work();
    this.report.phasesMs[phase] = (this.report.phasesMs[phase] ?? 0) + Math.round(performance.now() - t);
  }

  /**
   * Retention first: the tags it deletes release their manifests, which the
   * manifest and blob phases then collect after their grace periods. Each
   * deletion re-checks, in its transaction, that the tag is still as the
   * decision saw it (deleteTagIfUnchanged).
   */
  private async retention(policies: Policies): Promise<void> {
    const rules = policies.retentionRules();
    const reports = rules.map((r): RetentionReport => ({ rule: r.index, repositories: r.repositories, tags: [], untagged: [] }));
    this.report.retention = reports;
    let last: string | undefined;
    for (;;) {
      const page = await this.store.listRepositories(last, BATCH);
      for (const repository of page.items) {
        const matching = rules.map((r, i) => ({ r, i })).filter(({ r }) => r.matches(repository));
        if (matching.length === 0) continue;
        const tags = await this.store.listRetentionTags(repository);
        const verdicts = decideRetention(matching.map(({ r }) => r.retention), tags, this.now, (tag) => policies.isImmutable(repository, tag));
        const guard = policies.writeGuard(repository);
        if (verdicts.length > 0) await pausePoint('retention-after-decision');
        const deleted = new Set<RetentionVerdict>();
        await inWaves(verdicts, async (v) => {
          if (await this.store.deleteTagIfUnchanged(repository, v.detail, this.now, guard)) deleted.add(v);
        });
        // Reported in the decision's order, whatever order the deletions finished in: a dry run and a run list alike.
        for (const v of verdicts.filter((v) => deleted.has(v))) {
          reports[matching[0]!.i]!.tags.push({ repository, tag: v.detail.tag, digest: v.detail.digest, reason: v.reason });
        }
      }
      if (!page.more || page.items.length === 0) break;
      last = page.items.at(-1);
    }
    for (const [i, r] of rules.entries()) {
      const after = r.retention.untaggedAfter;
      if (after === undefined) continue;
      const cutoff = this.now - after;
      await this.eachManifestCandidate(cutoff, UNTAGGED_SCAN, (ref) => r.matches(ref.repository), (ref) => {
        reports[i]!.untagged.push({ repository: ref.repository, digest: ref.digest, reason: `untagged for more than ${Math.round(after / 1000)}s` });
      });
    }
  }

  private async manifests(): Promise<void> {
    const cutoff = this.now - this.o.manifestGrace - (this.o.manifestGrace > 0 ? this.o.touchInterval : 0);
    await this.eachManifestCandidate(cutoff, BATCH, () => true, () => this.progress('manifests', this.report.manifestsDeleted));
  }

  /**
   * Deletes every manifest that is garbage as of `cutoff` and that `wanted`
   * selects, paging through the candidates, each page starting after the
   * last (keyset): a candidate kept or skipped is not listed again, so a
   * scan costs what the candidates cost. Deleting an index releases its
   * children, and a subject its referrers, as of the pass time: with a grace
   * they are not due yet and wait for a later pass. At a grace of 0 they are
   * due now, but one that shared a page with its parent or subject may
   * already lie behind the scan: its check ran beside the deletion (a wave
   * runs in parallel) and found it still held. So at grace 0 a scan that
   * deleted something is followed by another, until one deletes nothing;
   * each lists only what is still due, which is what was released or skipped.
   */
  private async eachManifestCandidate(
    cutoff: number,
    limit: number,
    wanted: (ref: ManifestCandidate) => boolean,
    deleted: (ref: ManifestCandidate) => void,
  ): Promise<void> {
    for (;;) {
      let deletedInScan = 0;
      let after: ManifestCandidate | undefined;
      for (;;) {
        const page = await this.store.listManifestCandidates(cutoff, limit, after);
        if (page.length === 0) break;
        after = page.at(-1);
        this.report.manifestsExamined += page.length;
        await pausePoint('gc-after-manifest-candidates');
        await inWaves(page.filter(wanted), async (ref) => {
          if (!(await this.store.deleteManifestIfGarbage(ref, cutoff, this.now))) return;
          deletedInScan++;
          this.report.manifestsDeleted++;
          this.report.manifests?.push(`${ref.repository}@${ref.digest}`);
          deleted(ref);
        });
      }
      if (deletedInScan === 0 || cutoff < this.now) return;
    }
  }

  private async blobs(): Promise<void> {
    const cutoff = this.now - this.o.blobGrace - (this.o.blobGrace > 0 ? this.o.touchInterval : 0);
    // Finish what a crashed collector marked but did not delete.
    if (this.bytes) await this.deleteMarked(this.bytes);
    // One walk through the queue in its order, each page starting after the
    // last (keyset): a blob requeued for later moves past the cutoff, one a
    // claim skipped (held by another transaction) stays behind the walk for
    // the next pass. Nothing is listed twice, and nothing is remembered.
    let after: BlobCandidate | undefined;
    for (;;) {
      const page = await this.store.listBlobCandidates(cutoff, BATCH, after);
      if (page.length === 0) return;
      after = page.at(-1);
      this.report.blobsExamined += page.length;
      await pausePoint('gc-after-candidates');
      await inWaves(page, async ({ digest }) => {
        const { blob, linksRemoved } = await this.store.claimBlobIfGarbage(digest, cutoff);
        this.report.linksRemoved += linksRemoved;
        if (!blob) return;
        if (!this.bytes) return this.counted(blob);
        crashPoint('gc-after-mark');
        await pausePoint('gc-after-claim');
        // Delete now, by the key this claim marked; deleteMarked() is the
        // backstop for claims a crashed collector left behind.
        await this.deleteClaimed(this.bytes, blob);
      });
    }
  }

  private async deleteMarked(bytes: Bytes): Promise<void> {
    for (;;) {
      const marked = await bytes.metadata.listDeletingBlobs(BATCH);
      if (marked.length === 0) return;
      await inWaves(marked, (blob) => this.deleteClaimed(bytes, blob));
    }
  }

  private async deleteClaimed(bytes: Bytes, blob: BlobRecord): Promise<void> {
    await bytes.storage.deleteBlob(blob.storageKey);
    crashPoint('gc-after-delete-bytes');
    await bytes.metadata.finishBlobDeletion(blob.digest, blob.storageKey);
    this.counted(blob);
  }

  private counted(blob: BlobRecord): void {
    this.report.blobsDeleted++;
    this.report.bytesReclaimed += blob.size;
    this.report.blobs?.push(blob.digest);
    this.progress('blobs', this.report.blobsDeleted);
  }

  private async uploads(): Promise<void> {
    const cutoff = this.now - this.o.uploadTimeout;
    for (;;) {
      const ids = await this.store.expireUploads(cutoff, BATCH);
      if (this.bytes) for (const id of ids) await this.bytes.storage.deleteUpload(id);
      this.report.uploadsPurged += ids.length;
      this.progress('uploads', this.report.uploadsPurged);
      if (ids.length < BATCH) return;
    }
  }
}

/**
 * Runs `work` for every item, WAVE at a time. Each item is still its own
 * atomic, re-validating metadata operation; running a wave together lets
 * them share group commits (one fsync per wave, not per blob).
 */
async function inWaves<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += WAVE) await Promise.all(items.slice(i, i + WAVE).map(work));
}

function withoutLists(r: GcReport): Omit<GcReport, 'manifests' | 'blobs'> {
  const { manifests: _m, blobs: _b, ...rest } = r;
  return rest;
}
