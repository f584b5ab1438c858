/** Worker side of snapshot.ts: one read-only connection, one online backup. */
import Database from 'better-sqlite3';
import { workerData } from 'node:worker_threads';

/**
 * Pages per backup step: all of them. A step holds one read transaction on
 * the source, so one step is one consistent snapshot; a source written by
 * another connection between steps would make SQLite restart the copy.
 */
const ALL_PAGES = 0x7fffffff;

const { source, target } = workerData as { source: string; target: string };
const db = new Database(source, { readonly: true, fileMustExist: true });
try {
  await db.backup(target, { progress: () => ALL_PAGES });
} finally {
  db.close();
}
