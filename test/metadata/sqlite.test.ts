/** The shared MetadataStore suite against the embedded SQLite store (a temporary database file per test). */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MIGRATIONS } from '../../src/metadata/sqlite/schema.js';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';
import { berth } from '../helpers/berth-cli.js';
import { metadataStoreSuite } from './store-suite.js';

metadataStoreSuite('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-meta-'));
  return {
    open: async () => new SqliteMetadataStore(join(dir, 'metadata.db')),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

describe('berth migrate (SQLite)', () => {
  it('applies the schema to a new data directory, prints from → to, then reports it up to date', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-migrate-'));
    // -d, not --data: the test helper adds --metadata to `--data DIR` under BERTH_TEST_METADATA=postgres.
    try {
      const before = await berth(['migrate', '--status', '--json', '-d', dir]);
      assert.equal(before.code, 1, 'pending migrations: exit 1');
      assert.deepEqual(JSON.parse(before.stdout), { store: 'sqlite', location: join(dir, 'metadata.db'), from: 0, to: 0, latest: MIGRATIONS.length, applied: false });
      const run = await berth(['migrate', '-d', dir]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`schema version 0 → ${MIGRATIONS.length}`));
      const after = await berth(['migrate', '--status', '-d', dir]);
      assert.equal(after.code, 0);
      assert.match(after.stdout, /up to date/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
