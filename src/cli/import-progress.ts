/** The progress bar of `berth import` on a terminal: repositories, manifests, blobs, bytes and an ETA. */
import cliProgress from 'cli-progress';
import type { ImportProgress } from '../import/importer.js';
import { formatBytes } from '../format-bytes.js';

export interface ImportBar {
  update(p: ImportProgress): void;
  stop(): void;
}

export function importProgressBar(enabled: boolean): ImportBar {
  if (!enabled) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: 'berth import [{bar}] {value}/{total} repositories | {manifests} manifests | {blobs} blobs | {bytes} | ETA {eta_formatted}',
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let stopped = false;
  return {
    update(p) {
      const payload = { manifests: p.manifests, blobs: p.blobs, bytes: formatBytes(p.bytes) };
      if (!started) {
        started = true;
        bar.start(p.repositoriesTotal, p.repositoriesDone, payload);
      } else bar.update(p.repositoriesDone, payload);
    },
    stop() {
      if (started && !stopped) bar.stop();
      stopped = true;
    },
  };
}
