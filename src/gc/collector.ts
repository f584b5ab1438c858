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
import type { Logger } from '../log.js';
import type { BlobRecord, MetadataStore } from '../metadata/store.js';
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
   * How stale a blob's "last seen" may be before a HEAD renews it (the
   * registry's touchInterval): added to a non-zero blob grace so that a
   * blob said to exist is kept for the full grace period (invariant 5).
   */
  touchInterval: number;
  /** Compute what would be deleted, delete nothing. */
  dryRun: boolean;
  /** Keep the digests of what was deleted in the report. */
  verbose: boolean;
}

export interface GcReport {
  dryRun: boolean;
  manifestsDeleted: number;
  blobsDeleted: number;
  bytesReclaimed: number;
  linksRemoved: number;
  uploadsPurged: number;
  repositoriesRemoved: number;
  durationMs: number;
  /** With verbose: what was (or would be) deleted. */
  manifests?: string[];
  blobs?: string[];
}

export type GcPhase = 'manifests' | 'blobs' | 'uploads';
export type GcProgress = (phase: GcPhase, done: number) => void;

const BATCH = 500;
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
  const report: GcReport = {
    dryRun: options.dryRun,
    manifestsDeleted: 0,
    blobsDeleted: 0,
    bytesReclaimed: 0,
    linksRemoved: 0,
    uploadsPurged: 0,
    repositoriesRemoved: 0,
    durationMs: 0,
  };
  if (options.verbose) {
    report.manifests = [];
    report.blobs = [];
  }

  const sweep = async (store: MetadataStore, deleteBytes: boolean) => {
    if (options.untagged) await collectManifests(store, options, report, progress, started);
    await collectBlobs(store, storage, options, report, progress, started, deleteBytes);
    await purgeUploads(store, storage, options, report, progress, started, deleteBytes);
    report.repositoriesRemoved = await store.deleteEmptyRepositories();
  };
  if (options.dryRun) await metadata.dryRun((view) => sweep(view, false));
  else await sweep(metadata, true);

  report.durationMs = now() - started;
  logger.info({ gc: report.dryRun ? 'dry-run' : 'run', ...withoutLists(report) }, 'garbage collection finished');
  return report;
}

async function collectManifests(store: MetadataStore, o: GcOptions, report: GcReport, progress: GcProgress, now: number) {
  const cutoff = now - o.manifestGrace;
  // Deleting an index releases its children, and a subject its referrers:
  // repeat until a pass finds nothing more.
  for (;;) {
    const candidates = await store.listManifestCandidates(cutoff, BATCH);
    let any = false;
    await inWaves(candidates, async (ref) => {
      if (!(await store.deleteManifestIfGarbage(ref, cutoff, now))) return;
      any = true;
      report.manifestsDeleted++;
      report.manifests?.push(`${ref.repository}@${ref.digest}`);
      progress('manifests', report.manifestsDeleted);
    });
    if (!any) return;
  }
}

async function collectBlobs(
  store: MetadataStore,
  storage: BlobStore,
  o: GcOptions,
  report: GcReport,
  progress: GcProgress,
  now: number,
  deleteBytes: boolean,
) {
  const cutoff = now - o.blobGrace - (o.blobGrace > 0 ? o.touchInterval : 0);
  // Finish what a crashed collector marked but did not delete.
  if (deleteBytes) await deleteMarked(store, storage, report, progress);
  const examined = new Set<string>();
  for (;;) {
    const candidates = (await store.listBlobCandidates(cutoff, BATCH)).filter((d) => !examined.has(d));
    if (candidates.length === 0) break;
    for (const d of candidates) examined.add(d);
    await inWaves(candidates, async (digest) => {
      const { blob, linksRemoved } = await store.claimBlobIfGarbage(digest, cutoff);
      report.linksRemoved += linksRemoved;
      if (!blob) return;
      if (deleteBytes) {
        crashPoint('gc-after-mark');
        // Delete now, by the key this claim marked; deleteMarked() is the
        // backstop for claims a crashed collector left behind.
        await deleteClaimed(store, storage, blob, report, progress);
      } else {
        report.blobsDeleted++;
        report.bytesReclaimed += blob.size;
        report.blobs?.push(blob.digest);
      }
    });
  }
}

async function deleteMarked(store: MetadataStore, storage: BlobStore, report: GcReport, progress: GcProgress) {
  for (;;) {
    const marked = await store.listDeletingBlobs(BATCH);
    if (marked.length === 0) return;
    await inWaves(marked, (blob) => deleteClaimed(store, storage, blob, report, progress));
  }
}

async function deleteClaimed(store: MetadataStore, storage: BlobStore, blob: BlobRecord, report: GcReport, progress: GcProgress) {
  await storage.deleteBlob(blob.storageKey);
  crashPoint('gc-after-delete-bytes');
  await store.finishBlobDeletion(blob.digest, blob.storageKey);
  report.blobsDeleted++;
  report.bytesReclaimed += blob.size;
  report.blobs?.push(blob.digest);
  progress('blobs', report.blobsDeleted);
}

async function purgeUploads(
  store: MetadataStore,
  storage: BlobStore,
  o: GcOptions,
  report: GcReport,
  progress: GcProgress,
  now: number,
  deleteBytes: boolean,
) {
  const cutoff = now - o.uploadTimeout;
  for (;;) {
    const ids = await store.expireUploads(cutoff, BATCH);
    for (const id of ids) if (deleteBytes) await storage.deleteUpload(id);
    report.uploadsPurged += ids.length;
    progress('uploads', report.uploadsPurged);
    if (ids.length < BATCH) return;
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
