/**
 * Fault injection for crash tests: with BERTH_CRASH_AT=<point>, the process
 * kills itself with SIGKILL when it reaches that point, exactly as a power
 * cut or the OOM killer would. Unset, each check is one comparison.
 */
export type CrashPoint =
  | 'upload-after-append' // chunk bytes written, offset not yet recorded
  | 'commit-after-rename' // blob bytes in place, metadata not yet committed
  | 'commit-after-metadata' // committed, 201 not yet sent
  | 'gc-after-mark' // blob marked as being deleted, bytes still there
  | 'gc-after-delete-bytes' // bytes deleted, metadata row not yet removed
  | 'import-after-blob-bytes'; // berth import: blob object stored, metadata not yet committed

const armed = process.env.BERTH_CRASH_AT;

export function crashPoint(point: CrashPoint): void {
  if (armed === point) process.kill(process.pid, 'SIGKILL');
}
