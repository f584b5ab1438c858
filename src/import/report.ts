/** What `berth import` did, and what it did not import and why. */

/** Why something was not imported: a closed set, so summaries group by it. */
export type SkipReason =
  | 'invalid repository name'
  | 'repository not found in source'
  | 'blob data missing'
  | 'blob data does not match its digest'
  | 'manifest data missing'
  | 'manifest data does not match its digest'
  | 'schema 1 manifest'
  | 'manifest invalid'
  | 'manifest references a blob that was not imported'
  | 'index references a manifest that was not imported'
  | 'invalid tag name'
  | 'tag link missing or unreadable'
  | "tag's revision is gone"
  | "tag's manifest was not imported"
  | 'link file unreadable'
  | 'upload in progress'
  | 'blob not linked to any repository';

export interface SkippedItem {
  kind: 'repository' | 'blob' | 'manifest' | 'tag' | 'upload' | 'link';
  repository?: string;
  /** The digest, tag or upload id. */
  item?: string;
  reason: SkipReason;
  /** More about the reason (a parser's message, the digest found). */
  detail?: string;
}

export interface Counts {
  /** Recorded by this run. */
  imported: number;
  /** Already in Berth as the source has it (an earlier run, or another repository). */
  present: number;
  skipped: number;
}

export interface ImportReport {
  source: string;
  dryRun: boolean;
  verified: boolean;
  incremental: boolean;
  repositories: Counts;
  manifests: Counts;
  tags: Counts & { /** With --incremental: tags gone from the source, removed from Berth. */ removed: number };
  blobs: Counts & {
    /** Already in Berth through another repository: linked, no bytes moved. */
    linked: number;
    /** Bytes of the blobs this run imported. */
    bytes: number;
    byMethod: { 'hard-link': number; copy: number; 'server-side-copy': number; stream: number };
  };
  /** Uploads in progress in the source (not imported: clients push them again). */
  uploads: number;
  /** Blobs in the source that no repository links (not imported). */
  unlinkedBlobs: number;
  /** Counts of what was not imported, by reason. */
  reasons: Partial<Record<SkipReason, number>>;
  skipped: SkippedItem[];
  durationMs: number;
}

export function emptyReport(source: string, dryRun: boolean, verified: boolean, incremental: boolean): ImportReport {
  const counts = (): Counts => ({ imported: 0, present: 0, skipped: 0 });
  return {
    source,
    dryRun,
    verified,
    incremental,
    repositories: counts(),
    manifests: counts(),
    tags: { ...counts(), removed: 0 },
    blobs: { ...counts(), linked: 0, bytes: 0, byMethod: { 'hard-link': 0, copy: 0, 'server-side-copy': 0, stream: 0 } },
    uploads: 0,
    unlinkedBlobs: 0,
    reasons: {},
    skipped: [],
    durationMs: 0,
  };
}
