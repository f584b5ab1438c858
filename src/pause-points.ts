/**
 * Forced interleavings for race tests: a named pause point stops one
 * operation between two of its steps, so a test can run another one (a GC
 * pass, fsck, a request on a second node) at exactly that moment and then
 * let the first go on. Races are proven by construction, not by soak luck.
 *
 * Across processes (a `berth serve` child, a `berth gc` run) points are armed
 * with BERTH_PAUSE_AT=<point>[,<point>…] and BERTH_PAUSE_DIR=<dir>. The first
 * time the process reaches an armed point it creates `<dir>/<point>.paused`
 * and waits until `<dir>/<point>.resume` exists; later hits of that point
 * pass (one-shot, so a test pauses the request it means and no other).
 * In one process, tests arm points with `armPause`.
 *
 * Unarmed, `pausePoint` returns undefined: `await pausePoint(…)` costs the
 * request path one Set lookup and one microtask.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type PausePoint =
  // Request path
  | 'stat-after-read' // HEAD/GET of a blob (or a manifest by digest): read as live, renewal due, not yet made
  | 'mount-before-link' // mount: source decided (with auth, found among the repositories the caller may pull), link not yet written
  | 'commit-before-storage' // upload verified, storage commit not yet started
  | 'commit-after-storage' // bytes under their blob key, metadata not yet committed
  | 'commit-after-metadata' // blob committed in metadata, 201 not yet sent
  | 'manifest-before-put' // manifest parsed, metadata transaction not yet started
  | 'pull-between-ranges' // S3 blob GET: one range sent, the next not yet read
  | 'events-before-send' // events: a batch claimed (its changes committed), not yet sent
  | 'pull-through-after-miss' // cached repository: blob not found locally, no fetch joined or started yet
  // Lifecycle
  | 'gc-after-manifest-candidates' // GC listed untagged manifests to delete, none deleted yet
  | 'gc-after-candidates' // GC listed blob candidates, claims not yet made
  | 'gc-after-claim' // GC marked a blob deleting, bytes not yet deleted
  | 'retention-after-decision' // retention decided which tags of a repository go, none deleted yet
  | 'fsck-after-records' // fsck listed a page of blob records, their bytes not yet looked at
  | 'fsck-after-listing' // fsck listed objects, orphan check not yet made
  | 'fsck-before-remove'; // fsck decided an object is an orphan, not yet removed

interface Waiter {
  reached: () => void;
  resumed: Promise<void>;
}

const fromEnv = new Set((process.env.BERTH_PAUSE_AT ?? '').split(',').filter(Boolean));
const envDir = process.env.BERTH_PAUSE_DIR;
const inProcess = new Map<string, Waiter>();

/** Awaitable when `point` is armed (and not yet used), else undefined. */
export function pausePoint(point: PausePoint): Promise<void> | undefined {
  const waiter = inProcess.get(point);
  if (waiter) {
    inProcess.delete(point);
    waiter.reached();
    return waiter.resumed;
  }
  if (fromEnv.size === 0 || !fromEnv.delete(point) || !envDir) return undefined;
  writeFileSync(join(envDir, `${point}.paused`), String(process.pid));
  return new Promise((resolve) => {
    const poll = setInterval(() => {
      // Released too when the directory is gone: a test that failed while
      // holding this process cleaned up and will never resume it.
      if (existsSync(envDir) && !existsSync(join(envDir, `${point}.resume`))) return;
      clearInterval(poll);
      resolve();
    }, 5);
  });
}

export interface ArmedPause {
  /** Resolves when an operation reaches the point (and is held there). */
  reached: Promise<void>;
  /** Lets the held operation go on. */
  resume(): void;
}

/** In-process arming, for tests that drive registry/ and the stores directly. */
export function armPause(point: PausePoint): ArmedPause {
  let reached!: () => void;
  let resume!: () => void;
  const reachedP = new Promise<void>((r) => (reached = r));
  const resumed = new Promise<void>((r) => (resume = r));
  inProcess.set(point, { reached, resumed });
  return { reached: reachedP, resume };
}
