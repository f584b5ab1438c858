/** `berth import SOURCE`: a reference registry's storage into Berth's backends. */
import { openBackends } from '../backends.js';
import { ConfigError, loadConfig, type ConfigOverrides } from '../config.js';
import { importRegistry, type ImportProgress } from '../import/importer.js';
import type { ImportReport } from '../import/report.js';
import { openReferenceStorage } from '../import/open.js';
import { createLogger, type LogLevel } from '../log.js';
import { importProgressBar } from './import-progress.js';
import { formatBytes } from '../format-bytes.js';

export interface ImportFlags extends ConfigOverrides {
  verify?: boolean;
  dryRun?: boolean;
  repository?: string[];
  incremental?: boolean;
  verbose?: boolean;
  json?: boolean;
  concurrency?: string;
}

export async function importCommand(sourceArg: string | undefined, flags: ImportFlags): Promise<number> {
  const config = loadConfig({ ...flags, logLevel: undefined });
  // With the reference registry's own config.yml, its storage is the default source.
  sourceArg ??= config.reference?.referenceRoot;
  if (!sourceArg) throw new ConfigError('berth import needs a SOURCE (a directory holding docker/registry/v2/, or s3://BUCKET/ROOTDIRECTORY), or --config with the reference registry\'s config.yml');
  const logger = createLogger((flags.logLevel ?? 'warn') as LogLevel, 2);
  const concurrency = flags.concurrency === undefined ? 32 : Number(flags.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new ConfigError(`invalid --concurrency "${flags.concurrency}": a number from 1 to 256`);
  const source = await openReferenceStorage(sourceArg, config.storage);
  if (!(await source.exists())) {
    throw new ConfigError(`${source.description}: no reference registry storage here (expected docker/registry/v2/ under it)`);
  }
  // No events: an import copies what the old registry already held (and notified), it pushes nothing new.
  const { metadata, storage } = await openBackends({ ...config, notifications: undefined });
  const verify = flags.verify !== false;
  const bar = importProgressBar(!flags.json && process.stderr.isTTY === true);
  try {
    const report = await importRegistry(source, metadata, storage, {
      verify,
      dryRun: flags.dryRun === true,
      repositories: flags.repository,
      incremental: flags.incremental === true,
      concurrency,
      progress: (p: ImportProgress) => bar.update(p),
    });
    bar.stop();
    if (flags.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else process.stdout.write(formatReport(report, flags.verbose === true));
    return 0;
  } finally {
    bar.stop();
    await metadata.close();
    logger.flush();
  }
}

export function formatReport(r: ImportReport, verbose: boolean): string {
  const lines: string[] = [];
  const would = r.dryRun ? 'would import' : 'imported';
  lines.push(`${r.dryRun ? 'dry run: nothing was written. ' : ''}source ${r.source}`);
  lines.push(
    `repositories: ${r.repositories.imported} read, ${r.repositories.skipped} skipped`,
  );
  lines.push(`manifests:    ${r.manifests.imported} ${would}, ${r.manifests.present} already present, ${r.manifests.skipped} skipped`);
  lines.push(
    `tags:         ${r.tags.imported} ${would}, ${r.tags.present} already present, ${r.tags.skipped} skipped` +
      (r.incremental ? `, ${r.tags.removed} ${r.dryRun ? 'would be ' : ''}removed (gone from the source)` : ''),
  );
  const m = r.blobs.byMethod;
  const how = [
    m['hard-link'] && `${m['hard-link']} hard-linked`,
    m.copy && `${m.copy} copied`,
    m['server-side-copy'] && `${m['server-side-copy']} copied server-side`,
    m.stream && `${m.stream} streamed`,
  ].filter(Boolean);
  lines.push(
    `blobs:        ${r.blobs.imported} ${would} (${formatBytes(r.blobs.bytes)}${how.length ? `; ${how.join(', ')}` : ''}), ` +
      `${r.blobs.linked} linked from another repository, ${r.blobs.present} already present, ${r.blobs.skipped} skipped`,
  );
  lines.push(
    r.verified
      ? 'every imported blob was checked against its digest'
      : r.blobs.byMethod.stream === r.blobs.imported
        ? 'every imported blob was checked against its digest (streamed blobs always are, --no-verify or not)'
        : 'blob digests NOT checked (--no-verify): linked or copied blobs were taken as found (streamed ones are always checked); run `berth fsck` to check them',
  );
  const reasons = Object.entries(r.reasons);
  if (reasons.length === 0) lines.push('nothing was left out');
  else {
    lines.push('not imported:');
    for (const [reason, n] of reasons.sort((a, b) => b[1] - a[1])) lines.push(`  ${String(n).padStart(6)}  ${reason}`);
    if (!verbose) lines.push('  (--verbose lists each one)');
  }
  if (verbose) {
    for (const s of r.skipped) {
      lines.push(`skipped ${s.kind} ${s.repository ?? '-'} ${s.item ?? '-'}: ${s.reason}${s.detail ? ` (${s.detail})` : ''}`);
    }
  }
  lines.push(`done in ${(r.durationMs / 1000).toFixed(2)} s`);
  return lines.join('\n') + '\n';
}
