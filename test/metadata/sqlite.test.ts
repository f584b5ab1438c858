/** The shared MetadataStore suite against the embedded SQLite store (a temporary database file per test). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';
import { metadataStoreSuite } from './store-suite.js';

metadataStoreSuite('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-meta-'));
  return {
    open: async () => new SqliteMetadataStore(join(dir, 'metadata.db')),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
