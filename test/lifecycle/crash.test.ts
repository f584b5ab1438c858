/**
 * Crash safety (invariant 8): the process is killed with SIGKILL at chosen
 * points (BERTH_CRASH_AT, see src/crash-points.ts); after a restart nothing
 * acknowledged is lost and fsck reports clean, or repairs what it reports.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { makeImage, randomBlob, RegistryClient, type Image } from '../helpers/registry-client.js';
import { makeDataDir as newDataDir, removeStorage, startServer } from '../helpers/server.js';

/** Data directories (and their storage, on S3) of this file's servers, removed at the end. */
const dataDirs: string[] = [];
function makeDataDir(): string {
  const dir = newDataDir();
  dataDirs.push(dir);
  return dir;
}
after(async () => {
  for (const dir of dataDirs) {
    rmSync(dir, { recursive: true, force: true });
    await removeStorage(dir);
  }
});

const NO_BG_GC = { BERTH_GC_ENABLED: 'false' };

async function assertPullable(client: RegistryClient, repo: string, image: Image): Promise<void> {
  const res = await client.fetch(`/v2/${repo}/manifests/${image.digest}`);
  assert.equal(res.status, 200, 'acknowledged manifest must survive the crash');
  for (const b of [image.config, ...image.layers]) {
    const got = await client.getBlob(repo, b.digest);
    assert.equal(got.status, 200, 'acknowledged blob must survive the crash');
    assert.deepEqual(Buffer.from(await got.arrayBuffer()), b.data);
  }
}

async function fsckClean(dataDir: string): Promise<void> {
  const check = await berth(['fsck', '--data', dataDir, '--min-age', '0', '--json']);
  if (check.code === 0) return;
  const repair = await berth(['fsck', '--data', dataDir, '--min-age', '0', '--repair', '--json']);
  assert.equal(repair.code, 1, 'fsck --repair reports what it repaired');
  const again = await berth(['fsck', '--data', dataDir, '--min-age', '0', '--json']);
  assert.equal(again.code, 0, `fsck must be clean after repair: ${again.stdout}`);
}

/** A baseline image pushed and acknowledged before any crash. */
async function baseline(dataDir: string): Promise<Image> {
  const server = await startServer({ dataDir, env: NO_BG_GC });
  const image = makeImage({ layers: 2 });
  await new RegistryClient(server.url).pushImage('crash/base', image, 'v1');
  await server.stop();
  return image;
}

describe('crash safety: kill -9 at chosen points', () => {
  it('during a chunked upload, before the offset is recorded: the chunk is not acknowledged and can be re-sent', async () => {
    const dataDir = makeDataDir();
    const base = await baseline(dataDir);
    const armed = await startServer({ dataDir, env: { ...NO_BG_GC, BERTH_CRASH_AT: 'upload-after-append' } });
    const client = new RegistryClient(armed.url);
    const location = await client.startUpload('crash/up');
    const b = randomBlob(50_000);
    await assert.rejects(client.fetch(location, { method: 'PATCH', headers: { 'Content-Range': `0-${b.size - 1}` }, body: b.data as unknown as BodyInit }));
    await armed.kill();

    const server = await startServer({ dataDir, env: NO_BG_GC });
    const c2 = new RegistryClient(server.url);
    await assertPullable(c2, 'crash/base', base);
    const status = await c2.fetch(location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-0', 'the crashed chunk was never acknowledged');
    const patch = await c2.fetch(location, { method: 'PATCH', headers: { 'Content-Range': `0-${b.size - 1}` }, body: b.data as unknown as BodyInit });
    assert.equal(patch.status, 202);
    const put = await c2.fetch(`${location}?digest=${b.digest}`, { method: 'PUT' });
    assert.equal(put.status, 201);
    assert.deepEqual(Buffer.from(await (await c2.getBlob('crash/up', b.digest)).arrayBuffer()), b.data);
    await server.stop({ keepData: true });
    await fsckClean(dataDir);
  });

  for (const point of ['commit-after-rename', 'commit-after-metadata'] as const) {
    it(`while committing a blob (${point}): metadata and bytes agree after restart and fsck`, async () => {
      const dataDir = makeDataDir();
      const base = await baseline(dataDir);
      const armed = await startServer({ dataDir, env: { ...NO_BG_GC, BERTH_CRASH_AT: point } });
      const b = randomBlob(4096);
      await assert.rejects(new RegistryClient(armed.url).pushBlob('crash/commit', b));
      await armed.kill();

      const server = await startServer({ dataDir, env: NO_BG_GC });
      const client = new RegistryClient(server.url);
      await assertPullable(client, 'crash/base', base);
      const head = await client.fetch(`/v2/crash/commit/blobs/${b.digest}`, { method: 'HEAD' });
      // Before the metadata commit the blob does not exist; after it, it does, with its bytes.
      assert.equal(head.status, point === 'commit-after-rename' ? 404 : 200);
      if (head.status === 200) assert.deepEqual(Buffer.from(await (await client.getBlob('crash/commit', b.digest)).arrayBuffer()), b.data);
      await server.stop({ keepData: true });
      await fsckClean(dataDir);
      // The client retries, as it never got its 201.
      const again = await startServer({ dataDir, env: NO_BG_GC });
      await new RegistryClient(again.url).pushBlob('crash/commit', b);
      await again.stop({ keepData: true });
      await fsckClean(dataDir);
    });
  }

  for (const point of ['gc-after-mark', 'gc-after-delete-bytes'] as const) {
    it(`during a GC sweep (${point}): garbage stays gone, live data stays whole, the next run finishes`, async () => {
      const dataDir = makeDataDir();
      const base = await baseline(dataDir);
      const server = await startServer({ dataDir, env: NO_BG_GC });
      const client = new RegistryClient(server.url);
      const garbage = makeImage({ layers: 2 });
      await client.pushImage('crash/gc', garbage, 'old');
      await client.fetch(`/v2/crash/gc/manifests/${garbage.digest}`, { method: 'DELETE' });

      const crashed = await berth(['gc', '--data', dataDir, '--grace', '0'], { BERTH_CRASH_AT: point });
      assert.notEqual(crashed.code, 0, 'the collector was killed');
      // The collector died after claiming some blobs: those answer 404; any it
      // had not reached yet may still say "exists", and then must have their bytes.
      let gone = 0;
      for (const b of [garbage.config, ...garbage.layers]) {
        const head = await client.fetch(`/v2/crash/gc/blobs/${b.digest}`, { method: 'HEAD' });
        if (head.status === 404) gone++;
        else assert.deepEqual(Buffer.from(await (await client.getBlob('crash/gc', b.digest)).arrayBuffer()), b.data);
      }
      assert.ok(gone >= 1, 'the blob claimed before the crash is never "exists" again');
      await assertPullable(client, 'crash/base', base);
      await fsckClean(dataDir);
      const finish = await berth(['gc', '--data', dataDir, '--grace', '0', '--json']);
      assert.equal(finish.code, 0, finish.stderr);
      await fsckClean(dataDir);
      for (const b of [garbage.config, ...garbage.layers]) {
        assert.equal((await client.fetch(`/v2/crash/gc/blobs/${b.digest}`, { method: 'HEAD' })).status, 404);
      }
      // Re-pushing the collected image works and pulls whole.
      await client.pushImage('crash/gc', garbage, 'old');
      await assertPullable(client, 'crash/gc', garbage);
      await server.stop();
    });
  }
});
