/**
 * Pause points in a child process (`berth serve`, `berth gc`): the
 * environment that arms them, and waiting for / releasing the held
 * operation. See src/pause-points.ts.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PausePoint } from '../../src/pause-points.js';

export interface PauseControl {
  /** Environment for the process whose operation is to be held. */
  env: Record<string, string>;
  /** Resolves once that process is held at `point`; rejects after `timeoutMs`. */
  reached(point: PausePoint, timeoutMs?: number): Promise<void>;
  /** Lets the held operation go on. */
  resume(point: PausePoint): void;
  /** Whether the process has reached `point` (and is held there, unless resumed). */
  isReached(point: PausePoint): boolean;
  cleanup(): void;
}

export function pauseControl(...points: PausePoint[]): PauseControl {
  const dir = mkdtempSync(join(tmpdir(), 'berth-pause-'));
  const paused = (p: PausePoint) => existsSync(join(dir, `${p}.paused`));
  return {
    env: { BERTH_PAUSE_AT: points.join(','), BERTH_PAUSE_DIR: dir },
    async reached(point, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!paused(point)) {
        if (Date.now() > deadline) throw new Error(`pause point ${point} not reached within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    resume(point) {
      writeFileSync(join(dir, `${point}.resume`), '');
    },
    isReached: paused,
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
