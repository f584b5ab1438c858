/**
 * fsck compares metadata with storage in both directions (invariant 7):
 * - a live blob whose bytes are missing, or whose bytes do not hash to its
 *   digest, is a lie waiting to be told: repair makes it unknown (clients
 *   upload it again), quarantining corrupt bytes so they are never served;
 * - bytes that no metadata names (a crash between rename and commit, or
 *   between marking and deleting) are orphans: repair removes them.
 * Removing an orphan is safe by construction (invariant 9): a commit claims
 * its key in metadata before it writes it, so what a commit is about to name
 * is known, never an orphan; and an object is removed only when a later run,
 * at least `minAge` after the run that first found it unknown, finds it
 * unknown still (candidates are kept in metadata). Objects modified in the
 * last `minAge` are not even candidates.
 */
import { digestStream } from '../registry/digester.js';
import { parseDigest } from '../registry/reference.js';
import type { Logger } from '../log.js';
import { pausePoint } from '../pause-points.js';
import type { FsckDrift, MetadataStore } from '../metadata/store.js';
import { digestOfKey, type BlobStore } from '../storage/blob-store.js';

/** Unrepaired problems per fsck.drift transaction. */
const DRIFT_BATCH = 100;

export type ProblemKind = 'missing' | 'corrupt' | 'size-mismatch' | 'orphan-blob' | 'orphan-upload';

export interface Problem {
  kind: ProblemKind;
  digest?: string;
  key: string;
  size?: number;
  repaired: boolean;
  /**
   * Orphans: when a run first found the object unknown (ms since the epoch).
   * Repair removes it only on a later run, `minAge` after this.
   */
  unknownSince?: number;
}

export interface FsckOptions {
  repair: boolean;
  /** Hash every blob's bytes (slow, thorough); otherwise only sizes are compared. */
  verifyContent: boolean;
  /** Objects younger than this (ms) are never called orphans. */
  minAge: number;
}

export interface FsckReport {
  blobsChecked: number;
  bytesChecked: number;
  objectsScanned: number;
  problems: Problem[];
  durationMs: number;
}

export type FsckProgress = (phase: 'metadata' | 'storage', done: number) => void;

export async function fsck(
  metadata: MetadataStore,
  storage: BlobStore,
  options: FsckOptions,
  logger: Logger,
  progress: FsckProgress = () => {},
): Promise<FsckReport> {
  const started = Date.now();
  const report: FsckReport = { blobsChecked: 0, bytesChecked: 0, objectsScanned: 0, problems: [], durationMs: 0 };
  // Drift left unrepaired is reported as fsck.drift events (a repaired blob is fsck.forget already),
  // written in batches: one small transaction per DRIFT_BATCH problems, never one per object checked.
  let drift: FsckDrift[] = [];
  const flushDrift = async () => {
    if (drift.length === 0) return;
    const batch = drift;
    drift = [];
    await metadata.recordFsckDrift(batch);
  };
  const found = async (p: Problem) => {
    report.problems.push(p);
    logger.warn({ fsck: p.kind, digest: p.digest, key: p.key, repaired: p.repaired }, 'fsck problem');
    if (p.repaired) return;
    drift.push({ problem: p.kind, ...(p.digest ? { digest: p.digest } : {}), ...(p.size !== undefined ? { size: p.size } : {}) });
    if (drift.length >= DRIFT_BATCH) await flushDrift();
  };

  // Metadata → storage: every live blob has its bytes, intact.
  for (let after = ''; ; ) {
    const page = await metadata.listBlobs(after, 500);
    if (page.length === 0) break;
    await pausePoint('fsck-after-records');
    for (const blob of page) {
      after = blob.digest;
      report.blobsChecked++;
      progress('metadata', report.blobsChecked);
      const stored = await storage.statBlob(blob.storageKey);
      let kind: ProblemKind | undefined;
      if (!stored) kind = 'missing';
      else if (stored.size !== blob.size) kind = 'size-mismatch';
      else if (options.verifyContent) {
        const digest = parseDigest(blob.digest);
        const actual = await digestStream(digest.algorithm, await storage.openBlob(blob.storageKey));
        report.bytesChecked += blob.size;
        if (actual !== digest.hex) kind = 'corrupt';
      }
      if (!kind) continue;
      // Bytes gone because GC deleted the blob (or an upload replaced it)
      // since the listing: the record that named them is gone too, not drift.
      if (kind === 'missing' && (await metadata.findAnyBlob(blob.digest))?.storageKey !== blob.storageKey) continue;
      let repaired = false;
      if (options.repair) {
        if (kind !== 'missing') await storage.quarantineBlob(blob.storageKey);
        repaired = await metadata.forgetBlob(blob.digest, blob.storageKey);
      }
      await found({ kind, digest: blob.digest, key: blob.storageKey, size: blob.size, repaired });
    }
  }

  // Storage → metadata: every object is named by metadata.
  // --min-age 0 protects nothing, even from an object store whose clock (or
  // whole-second timestamps) puts an object slightly in the future.
  const oldEnough = (modifiedAt: number) => options.minAge <= 0 || Date.now() - modifiedAt >= options.minAge;
  // Candidate times come from the metadata clock (invariant 10): fsck may run on any node.
  const runStarted = await metadata.now();
  // Phase one records the orphan; a later run (minAge on) may remove it.
  const removable = async (candidate: string): Promise<{ since: number; remove: boolean }> => {
    const since = await metadata.recordOrphanCandidate(candidate, runStarted);
    return { since, remove: options.repair && since < runStarted && runStarted - since >= options.minAge };
  };
  for await (const object of storage.listBlobs()) {
    report.objectsScanned++;
    progress('storage', report.objectsScanned);
    const digest = digestOfKey(object.key);
    await pausePoint('fsck-after-listing');
    if (await metadata.storageKeyKnown(object.key)) continue;
    if (!oldEnough(object.modifiedAt)) continue;
    // Unknown now, but maybe because GC finished deleting it since the
    // listing (its record goes only after its bytes): not drift if it is gone.
    if (!(await storage.statBlob(object.key))) continue;
    const candidate = `blob:${object.key}`;
    const { since, remove } = await removable(candidate);
    await pausePoint('fsck-before-remove');
    if (remove) {
      await storage.deleteBlob(object.key);
      await metadata.dropOrphanCandidate(candidate);
    }
    await found({ kind: 'orphan-blob', digest, key: object.key, size: object.size, repaired: remove, unknownSince: since });
  }
  for await (const object of storage.listUploads()) {
    report.objectsScanned++;
    if ((await metadata.uploadExists(object.key)) || !oldEnough(object.modifiedAt)) continue;
    const candidate = `upload:${object.key}`;
    const { since, remove } = await removable(candidate);
    if (remove) {
      await storage.deleteUpload(object.key);
      await metadata.dropOrphanCandidate(candidate);
    }
    await found({ kind: 'orphan-upload', key: object.key, size: object.size, repaired: remove, unknownSince: since });
  }
  await flushDrift();
  // Candidates this complete run did not find unknown again start over.
  await metadata.pruneOrphanCandidates(runStarted);

  report.durationMs = Date.now() - started;
  await metadata.recordRun({
    kind: 'fsck',
    trigger: 'cli',
    startedAt: started,
    durationMs: report.durationMs,
    manifestsDeleted: 0,
    blobsDeleted: report.problems.filter((p) => p.kind === 'orphan-blob' && p.repaired).length,
    bytesReclaimed: report.problems.filter((p) => p.kind.startsWith('orphan') && p.repaired).reduce((n, p) => n + (p.size ?? 0), 0),
    uploadsPurged: report.problems.filter((p) => p.kind === 'orphan-upload' && p.repaired).length,
    problems: report.problems.length,
  });
  logger.info({ fsck: 'done', blobs: report.blobsChecked, objects: report.objectsScanned, problems: report.problems.length }, 'fsck finished');
  return report;
}
