/** `berth migrate`: applies pending metadata schema migrations (or, with --status, only reports). */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { sqliteFile } from '../backends.js';
import { loadConfig, type ConfigOverrides } from '../config.js';
import { createPool, describeConnectError, redactUrl } from '../metadata/postgres/postgres-store.js';
import { LATEST_VERSION, migrate as migratePostgres, schemaStatus } from '../metadata/postgres/migrations.js';
import { MIGRATIONS as SQLITE_MIGRATIONS } from '../metadata/sqlite/schema.js';

export interface MigrateFlags extends ConfigOverrides {
  status?: boolean;
  json?: boolean;
}

export interface MigrateReport {
  store: 'postgres' | 'sqlite';
  /** The database, with any password hidden. */
  location: string;
  from: number;
  to: number;
  latest: number;
  applied: boolean;
}

export async function migrateCommand(flags: MigrateFlags): Promise<number> {
  const config = loadConfig({ ...flags, logLevel: undefined });
  let report: MigrateReport;
  if (config.metadata) {
    const pool = createPool(config.metadata, 1);
    try {
      const r = await (flags.status ? schemaStatus(pool) : migratePostgres(pool)).catch((e: unknown) => {
        throw describeConnectError(e, config.metadata!);
      });
      report = { store: 'postgres', location: redactUrl(config.metadata), from: r.from, to: r.to, latest: LATEST_VERSION, applied: !flags.status };
    } finally {
      await pool.end();
    }
  } else {
    const file = sqliteFile(config);
    const latest = SQLITE_MIGRATIONS.length;
    if (flags.status) {
      const v = existsSync(file) ? readSqliteVersion(file) : 0;
      report = { store: 'sqlite', location: file, from: v, to: v, latest, applied: false };
    } else {
      const { SqliteMetadataStore } = await import('../metadata/sqlite/sqlite-store.js');
      const before = existsSync(file) ? readSqliteVersion(file) : 0;
      const store = new SqliteMetadataStore(file); // migrates as serve does, refusing a newer schema
      await store.close();
      report = { store: 'sqlite', location: file, from: before, to: readSqliteVersion(file), latest, applied: true };
    }
  }

  if (flags.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else if (flags.status) {
    const state =
      report.from === report.latest ? 'up to date' :
      report.from < report.latest ? `${report.latest - report.from} migration(s) pending (run berth migrate)` :
      'NEWER than this Berth understands: upgrade Berth';
    process.stdout.write(`${report.store} ${report.location}: schema version ${report.from}, this Berth's is ${report.latest}: ${state}\n`);
  } else if (report.from === report.to) {
    process.stdout.write(`${report.store} ${report.location}: schema version ${report.to}, up to date\n`);
  } else {
    process.stdout.write(`${report.store} ${report.location}: migrated schema version ${report.from} → ${report.to}\n`);
  }
  return flags.status && report.from !== report.latest ? 1 : 0;
}

function readSqliteVersion(file: string): number {
  const db = new Database(file, { readonly: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}
