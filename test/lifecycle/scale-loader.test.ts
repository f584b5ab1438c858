/**
 * The scale benchmark's bulk loader (bench/lib/scale-loader.mjs) makes what
 * pushes would have made: fsck finds the loaded registry clean, the images
 * pull by tag, and a load interrupted mid-chunk continues without
 * duplicating or losing anything. A small load (70 images, 150 tags); the
 * benchmark itself (bench/scale.mjs) is not part of the test suite.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BERTH_BIN, makeDataDir } from '../helpers/server.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

interface Loader {
  load(o: Record<string, unknown>): Promise<{ images: number }>;
  writeState(dir: string, state: unknown): void;
  readState(dir: string): { images: number; inProgress?: boolean; bigTags: number[] };
  openStores(repoRoot: string, state: unknown, dataDir: string): Promise<{ metadata: { listTags(r: string, last: string | undefined, n: number): Promise<{ items: string[] }>; findManifestByTag(r: string, t: string): Promise<unknown>; close(): Promise<void> } }>;
}

function fsck(dataDir: string): Promise<{ code: number; report: { blobsChecked: number; problems: unknown[] } }> {
  return new Promise((done) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BERTH_')));
    execFile(process.execPath, [BERTH_BIN, 'fsck', '--data', dataDir, '--quick', '--min-age', '0', '--json', '--log-level', 'warn'], { env, timeout: 60_000 }, (err, stdout) => {
      done({ code: err ? Number(err.code) : 0, report: JSON.parse(stdout) });
    });
  });
}

describe('scale benchmark bulk loader', () => {
  it('loads images that fsck finds clean, and resumes an interrupted chunk', { timeout: 60_000 }, async () => {
    const loader = (await import(pathToFileURL(join(repoRoot, 'bench/lib/scale-loader.mjs')).href)) as Loader;
    const dir = makeDataDir();
    try {
      loader.writeState(dir, { store: 'sqlite', images: 0, bigTags: [] });
      const opts = { repoRoot, dir, bigRepos: 1, bigTags: 150, concurrency: 16 };
      await loader.load({ ...opts, images: 70 });
      const first = await fsck(join(dir, 'data'));
      assert.equal(first.code, 0, JSON.stringify(first.report.problems));
      // 70 images × (config, layer) + 64 shared layers + 100 images of the many-tag repository × (config, layer)
      assert.equal(first.report.blobsChecked, 70 * 2 + 64 + 100 * 2);

      // A crash in the chunk after image 64: state says 64, in progress; the chunk is redone carefully.
      loader.writeState(dir, { ...loader.readState(dir), images: 64, inProgress: true });
      await loader.load({ ...opts, images: 80 });
      const second = await fsck(join(dir, 'data'));
      assert.equal(second.code, 0, JSON.stringify(second.report.problems));
      assert.equal(second.report.blobsChecked, 80 * 2 + 64 + 100 * 2);

      const state = loader.readState(dir);
      assert.deepEqual([state.images, state.inProgress, state.bigTags], [80, false, [150]]);
      const { metadata } = await loader.openStores(repoRoot, state, join(dir, 'data'));
      try {
        assert.ok(await metadata.findManifestByTag('scale/r0079', 'i0000079'));
        assert.equal((await metadata.listTags('scale/tags-0', undefined, 1000)).items.length, 150);
      } finally {
        await metadata.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
