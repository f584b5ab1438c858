/** The BlobStore contract against the filesystem store. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
