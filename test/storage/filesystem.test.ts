/** The BlobStore contract against the filesystem store. */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { blobStoreSuite } from './blob-store-suite.js';

blobStoreSuite('filesystem', async () => {
  const root = mkdtempSync(join(tmpdir(), 'berth-store-'));
  const store = new FilesystemBlobStore(root);
  const other = new FilesystemBlobStore(root);
  await store.init();
  await other.init();
  const outside = join(root, 'outside');
  mkdirSync(outside);
  const importSource = async (data: Buffer) => {
    const path = join(outside, randomBytes(8).toString('hex'));
    writeFileSync(path, data);
    return { kind: 'file' as const, path, size: data.length };
  };
  return { store, other, partSize: 5 * 1024 * 1024, importSource, cleanup: async () => rmSync(root, { recursive: true, force: true }) };
});

describe('filesystem store durability of new directories (invariant 8)', () => {
  /** Records which directories the store syncs. */
  class Observed extends FilesystemBlobStore {
    readonly synced: string[] = [];
    protected override async syncDirectory(dir: string): Promise<void> {
      this.synced.push(dir);
      await super.syncDirectory(dir);
    }
  }

  it('a commit into a new shard directory syncs each new directory\'s parent, not only the shard', async () => {
    const root = mkdtempSync(join(tmpdir(), 'berth-store-'));
    try {
      const store = new Observed(root);
      await store.init();
      const data = Buffer.from('durable');
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      await store.createUpload('u1');
      await store.appendUpload('u1', 0, Readable.from([data]), () => {});
      const key = await store.commitUpload('u1', data.length, digest);
      const shard = dirname(join(root, 'blobs', key));
      for (const dir of [shard, dirname(shard), dirname(dirname(shard))]) {
        assert.ok(store.synced.includes(dir), `${dir} synced (synced: ${store.synced.join(', ')})`);
      }
      // writeBlob into another new shard: the same.
      const other = Buffer.from('other shard');
      const otherDigest = `sha256:${createHash('sha256').update(other).digest('hex')}`;
      store.synced.length = 0;
      const otherKey = await store.writeBlob('u2', otherDigest, Readable.from([other]), other.length, () => {});
      if (dirname(otherKey) !== dirname(key)) assert.ok(store.synced.includes(dirname(dirname(join(root, 'blobs', otherKey)))));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
