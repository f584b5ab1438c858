/** The BlobStore contract against the filesystem store. */
import { mkdtempSync, rmSync } from 'node:fs';
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
  return { store, other, partSize: 5 * 1024 * 1024, cleanup: async () => rmSync(root, { recursive: true, force: true }) };
});
