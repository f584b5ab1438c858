/**
 * A consistent copy of a live SQLite database in a new file, for GC's dry
 * run. `VACUUM INTO` reads the source in one read transaction (a snapshot
 * that never takes the write lock, so the server and other processes go on
 * writing) and writes the copy page by page, so memory stays flat however
 * large the registry is. It runs in a worker thread: on the server's admin
 * trigger the copy of a large database would otherwise hold the event loop
 * for seconds.
 */
import { Worker } from 'node:worker_threads';

export function snapshotInto(source: string, target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./snapshot-worker.js', import.meta.url), { workerData: { source, target } });
    let failed: unknown;
    worker.once('error', (e) => (failed = e));
    worker.once('exit', (code) => {
      if (failed !== undefined) reject(failed);
      else if (code !== 0) reject(new Error(`snapshot of ${source} stopped with exit code ${code}`));
      else resolve();
    });
  });
}
