/** Worker side of snapshot.ts: one read-only connection, one VACUUM INTO. */
import Database from 'better-sqlite3';
import { workerData } from 'node:worker_threads';

const { source, target } = workerData as { source: string; target: string };
const db = new Database(source, { readonly: true, fileMustExist: true });
try {
  db.prepare('VACUUM INTO ?').run(target);
} finally {
  db.close();
}
