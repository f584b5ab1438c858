/**
 * fsck finds and repairs drift both ways (invariant 7), on whichever
 * storage the test servers use (BERTH_TEST_STORAGE): missing bytes, corrupt
 * bytes (quarantined), orphaned blob objects and orphaned uploads. On S3 the
 * keys do not name a digest: fsck relies on metadata for what it knows.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { blobFiles, overwriteBlob } from '../helpers/data-dir.js';
import { randomBlob, RegistryClient } from '../helpers/registry-client.js';
import { makeDataDir, removeStorage, startServer, testStore } from '../helpers/server.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';

interface Report {
  problems: { kind: string; digest?: string; key: string; repaired: boolean }[];
}

async function fsck(dataDir: string, repair = false): Promise<{ code: number; report: Report }> {
  const res = await berth(['fsck', '--data', dataDir, '--min-age', '0', '--json', ...(repair ? ['--repair'] : [])]);
  assert.ok(res.code === 0 || res.code === 1, `fsck failed: ${res.code} ${res.stderr}`);
  return { code: res.code, report: JSON.parse(res.stdout) as Report };
}

describe('fsck', () => {
  it('removes an orphan only when a later run still finds it unknown (two phases: invariant 9)', async () => {
    const dataDir = makeDataDir();
    try {
      const store = testStore(dataDir);
      if (store instanceof FilesystemBlobStore) await store.init();
      const id = `orphan-${randomBytes(4).toString('hex')}`;
      await store.createUpload(id);
      await store.appendUpload(id, 0, Readable.from([randomBytes(300)]), () => {});
      const orphanKey = await store.commitUpload(id, 300, `sha256:${'ef'.repeat(32)}`);
      const upload = `orphan-${randomBytes(4).toString('hex')}`;
      await store.createUpload(upload);
      await store.appendUpload(upload, 0, Readable.from([randomBytes(100)]), () => {});

      const first = await fsck(dataDir, true);
      assert.deepEqual(
        first.report.problems.map((p) => [p.kind, p.key, p.repaired]),
        [['orphan-blob', orphanKey, false], ['orphan-upload', upload, false]],
        'the first look only records them',
      );
      assert.ok(await store.statBlob(orphanKey), 'still there after the first --repair run');
      const second = await fsck(dataDir, true);
      assert.deepEqual(second.report.problems.map((p) => [p.kind, p.key, p.repaired]), [['orphan-blob', orphanKey, true], ['orphan-upload', upload, true]]);
      assert.equal(await store.statBlob(orphanKey), undefined);
      assert.equal((await fsck(dataDir)).code, 0);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await removeStorage(dataDir);
    }
  });

  it('reports and repairs missing and corrupt bytes, orphaned blobs and orphaned uploads', async () => {
    let server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
    const dataDir = server.dataDir;
    try {
      const client = new RegistryClient(server.url);
      const [missing, corrupt, healthy] = [randomBlob(3000), randomBlob(4000), randomBlob(5000)];
      for (const b of [missing, corrupt, healthy]) await client.pushBlob('fsck/app', b);
      const keyOf = async (digest: string) => {
        const keys = await blobFiles(server, digest);
        assert.equal(keys.length, 1);
        return keys[0]!;
      };
      const missingKey = await keyOf(missing.digest);
      const corruptKey = await keyOf(corrupt.digest);
      await server.stop({ keepData: true });

      // Drift, made behind Berth's back through the storage itself.
      const store = testStore(dataDir);
      await store.deleteBlob(missingKey);
      await overwriteBlob(dataDir, corruptKey, randomBytes(corrupt.size));
      const orphanUpload = `orphan-${randomBytes(4).toString('hex')}`;
      await store.createUpload(orphanUpload);
      await store.appendUpload(orphanUpload, 0, Readable.from([randomBytes(100)]), () => {});
      const orphanBlob = `orphan-${randomBytes(4).toString('hex')}`;
      await store.createUpload(orphanBlob);
      await store.appendUpload(orphanBlob, 0, Readable.from([randomBytes(200)]), () => {});
      const orphanKey = await store.commitUpload(orphanBlob, 200, `sha256:${'cd'.repeat(32)}`);

      const check = await fsck(dataDir);
      assert.equal(check.code, 1);
      const found = (kind: string) => check.report.problems.filter((p) => p.kind === kind);
      assert.deepEqual(found('missing').map((p) => p.digest), [missing.digest]);
      assert.deepEqual(found('corrupt').map((p) => [p.digest, p.key]), [[corrupt.digest, corruptKey]]);
      assert.deepEqual(found('orphan-blob').map((p) => p.key), [orphanKey]);
      assert.deepEqual(found('orphan-upload').map((p) => p.key), [orphanUpload]);
      assert.ok(check.report.problems.every((p) => !p.repaired));

      const repair = await fsck(dataDir, true);
      assert.equal(repair.code, 1);
      assert.ok(repair.report.problems.every((p) => p.repaired), JSON.stringify(repair.report.problems));
      assert.equal((await fsck(dataDir)).code, 0, 'clean after repair');
      // The corrupt object is quarantined (never served), the orphans are gone.
      assert.equal(await store.statBlob(corruptKey), undefined);
      assert.equal(await store.statBlob(orphanKey), undefined);

      server = await startServer({ dataDir, env: { BERTH_GC_ENABLED: 'false' } });
      const after = new RegistryClient(server.url);
      for (const [b, status] of [[missing, 404], [corrupt, 404], [healthy, 200]] as const) {
        assert.equal((await after.fetch(`/v2/fsck/app/blobs/${b.digest}`, { method: 'HEAD' })).status, status, `HEAD ${b.digest}`);
      }
      // Clients upload what fsck made unknown again.
      await after.pushBlob('fsck/app', corrupt);
      assert.ok(Buffer.from(await (await after.getBlob('fsck/app', corrupt.digest)).arrayBuffer()).equals(corrupt.data));
    } finally {
      await server.stop({ keepData: true });
      rmSync(dataDir, { recursive: true, force: true });
      await removeStorage(dataDir);
    }
  });
});
