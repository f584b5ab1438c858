/** `berth gc` and `berth fsck`: lifecycle commands run beside (or without) a running server. */
import { openBackends } from '../backends.js';
import { ConfigError, loadConfig, parseDuration, type ConfigOverrides } from '../config.js';
import { fsck } from '../fsck/fsck.js';
import { GcService } from '../gc/service.js';
import { createLogger, type LogLevel } from '../log.js';
import { DEFAULT_REGISTRY_OPTIONS } from '../registry/context.js';
import { Policies } from '../policy/policies.js';
import { formatBytes } from '../format-bytes.js';
import { statusLine } from './progress.js';

export interface GcFlags extends ConfigOverrides {
  dryRun?: boolean;
  verbose?: boolean;
  grace?: string;
  json?: boolean;
}

/** CLI commands log to stderr, quietly unless asked: their result goes to stdout. */
function cliLogger(level: string | undefined) {
  return createLogger((level ?? 'warn') as LogLevel, 2);
}

export async function gcCommand(flags: GcFlags): Promise<number> {
  const config = loadConfig({ ...flags, logLevel: undefined });
  if (config.readOnly && !flags.dryRun) {
    throw new ConfigError('the configuration puts the registry in read-only mode: garbage collection does not run (--dry-run does)');
  }
  const logger = cliLogger(flags.logLevel);
  const { metadata, storage } = await openBackends(config);
  const gc = new GcService(metadata, storage, config.gc, DEFAULT_REGISTRY_OPTIONS.touchInterval, logger, { current: new Policies(config.policies) });
  const status = statusLine(flags.dryRun ? 'berth gc (dry run)' : 'berth gc', !flags.json && process.stderr.isTTY === true);
  try {
    const report = await gc.run('cli', {
      dryRun: flags.dryRun,
      verbose: flags.verbose,
      grace: flags.grace !== undefined ? parseDuration(flags.grace, '--grace') : undefined,
      progress: (phase, done) => status.update(phase, done),
    });
    status.stop();
    if (flags.json) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    } else {
      const verb = report.dryRun ? 'would delete' : 'deleted';
      process.stdout.write(
        `${verb} ${report.manifestsDeleted} manifests, ${report.blobsDeleted} blobs (${formatBytes(report.bytesReclaimed)}), ` +
          `${report.uploadsPurged} abandoned uploads; ${report.linksRemoved} repository links and ` +
          `${report.repositoriesRemoved} empty repositories removed, in ${(report.durationMs / 1000).toFixed(2)} s\n`,
      );
      for (const r of report.retention ?? []) {
        process.stdout.write(`retention rule ${r.rule} (${r.repositories.join(', ')}): ${verb} ${r.tags.length} tags, ${r.untagged.length} untagged manifests\n`);
        for (const t of r.tags) process.stdout.write(`  tag ${t.repository}:${t.tag} (${t.digest}): ${t.reason}\n`);
        for (const m of r.untagged) process.stdout.write(`  untagged ${m.repository}@${m.digest}: ${m.reason}\n`);
      }
      for (const m of report.manifests ?? []) process.stdout.write(`manifest ${m}\n`);
      for (const b of report.blobs ?? []) process.stdout.write(`blob ${b}\n`);
    }
    return 0;
  } finally {
    status.stop();
    await metadata.close();
    logger.flush();
  }
}

export interface FsckFlags extends ConfigOverrides {
  repair?: boolean;
  quick?: boolean;
  minAge?: string;
  json?: boolean;
}

export async function fsckCommand(flags: FsckFlags): Promise<number> {
  const config = loadConfig({ ...flags, logLevel: undefined });
  const logger = cliLogger(flags.logLevel);
  const { metadata, storage } = await openBackends(config);
  const status = statusLine('berth fsck', !flags.json && process.stderr.isTTY === true);
  try {
    const report = await fsck(
      metadata,
      storage,
      { repair: flags.repair ?? false, verifyContent: !flags.quick, minAge: parseDuration(flags.minAge ?? '10m', '--min-age') },
      logger,
      (phase, done) => status.update(phase === 'metadata' ? 'blobs checked' : 'objects scanned', done),
    );
    status.stop();
    if (flags.json) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    } else {
      for (const p of report.problems) {
        // An orphan is removed only by a later run that finds it unknown still (invariant 9).
        const pending = flags.repair && !p.repaired && p.unknownSince !== undefined;
        const note = p.repaired ? ' (repaired)' : pending ? ` (unknown since ${new Date(p.unknownSince!).toISOString()}: removed by a later --repair run)` : '';
        process.stdout.write(`${p.kind} ${p.digest ?? '-'} ${p.key}${note}\n`);
      }
      const repaired = report.problems.filter((p) => p.repaired).length;
      const state =
        report.problems.length === 0
          ? 'clean'
          : `${report.problems.length} problems${flags.repair ? `, ${repaired} repaired` : ' (run with --repair to fix)'}`;
      process.stdout.write(
        `${state}: ${report.blobsChecked} blobs checked (${formatBytes(report.bytesChecked)} hashed), ` +
          `${report.objectsScanned} stored objects scanned, in ${(report.durationMs / 1000).toFixed(2)} s\n`,
      );
    }
    return report.problems.length === 0 ? 0 : 1;
  } finally {
    status.stop();
    await metadata.close();
    logger.flush();
  }
}
