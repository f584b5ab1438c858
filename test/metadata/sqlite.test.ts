/** The shared MetadataStore suite against the embedded SQLite store (a temporary database file per test). */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MIGRATIONS } from '../../src/metadata/sqlite/schema.js';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';
import { berth } from '../helpers/berth-cli.js';
import { LINK_REFS_V10_ROWS, STORAGE_KEYS_V11_ROWS, expectMigratedLinkRefs, expectMigratedRunHistory, expectMigratedStorageKeys, metadataStoreSuite } from './store-suite.js';

metadataStoreSuite('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-meta-'));
  return {
    open: async () => new SqliteMetadataStore(join(dir, 'metadata.db')),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    linkRefs: async () => linkRefs(join(dir, 'metadata.db')),
  };
});

function linkRefs(file: string): string[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(`
      SELECT r.name || ' ' || l.digest || ' ' || l.refs AS line FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
      ORDER BY r.name, l.digest`).pluck().all() as string[];
  } finally {
    db.close();
  }
}

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

/**
 * A database file at schema `version`, as a node of that release left it,
 * with `seed`'s rows; then opened by today's store (which migrates it) for `check`.
 */
async function migratedFrom(version: number, seed: (old: Database.Database) => void, check: (store: SqliteMetadataStore, file: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `berth-migrate-from-${version}-`));
  const file = join(dir, 'metadata.db');
  const old = new Database(file);
  try {
    for (const sql of MIGRATIONS.slice(0, version)) old.exec(sql);
    old.pragma(`user_version = ${version}`);
    seed(old);
  } finally {
    old.close();
  }
  const store = new SqliteMetadataStore(file);
  try {
    assert.equal(store.db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    await check(store, file);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('SQLite migration 10: run totals kept apart from the history', () => {
  it('a database at version 9 with runs gets exact totals per kind after migrating', async () => {
    await migratedFrom(
      9,
      (old) => {
        const insert = old.prepare(`
          INSERT INTO lifecycle_runs (kind, trigger, started_at, duration_ms, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems)
          VALUES (?, 'background', ?, ?, ?, ?, ?, ?, ?)`);
        old.transaction(() => {
          for (let i = 1; i <= 1200; i++) insert.run(i % 4 === 0 ? 'fsck' : 'gc', 1000 + i, i, 1, 2, 3_000_000_000 * i, 4, i % 4 === 0 ? 5 : 0);
        })();
      },
      (store) => expectMigratedRunHistory(store),
    );
  });
});

describe('SQLite migration 11: links count the manifests naming them', () => {
  it('a database at version 10 with manifests gets exact counts per link after migrating', async () => {
    await migratedFrom(
      10,
      (old) => {
        for (const sql of LINK_REFS_V10_ROWS) old.exec(sql);
      },
      (store, file) => expectMigratedLinkRefs(store, async () => linkRefs(file)),
    );
  });
});

describe('SQLite migration 12: keys that name their digest leave the key index', () => {
  it('a database at version 11 knows every key after migrating, and indexes only the foreign ones', async () => {
    await migratedFrom(
      11,
      (old) => {
        for (const sql of STORAGE_KEYS_V11_ROWS) old.exec(sql);
      },
      (store, file) => expectMigratedStorageKeys(store, async () => {
        const db = new Database(file, { readonly: true });
        try {
          // INDEXED BY: the entries of the index itself (an error if it does not exist).
          return db.prepare(`
            SELECT storage_key FROM blobs INDEXED BY blobs_by_foreign_key WHERE storage_key >= ''
              AND substr(storage_key, 1, length(digest) + 4) <> replace(digest, ':', '/' || substr(digest, instr(digest, ':') + 1, 2) || '/') || '.'
            ORDER BY storage_key`).pluck().all() as string[];
        } finally {
          db.close();
        }
      }),
    );
  });
});

describe('SQLite schema migration by processes starting at once', () => {
  it('two processes opening a new database together both start; the schema is applied once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-migrate-race-'));
    const file = join(dir, 'metadata.db');
    const storeModule = fileURLToPath(new URL('../../src/metadata/sqlite/sqlite-store.js', import.meta.url));
    // Holding the write lock lines both up: each reads version 0, then waits for the lock.
    const holder = new Database(file);
    holder.pragma('journal_mode = WAL');
    holder.exec('BEGIN IMMEDIATE');
    const open = () =>
      new Promise<{ code: number | null; err: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          ['--input-type=module', '-e', `const { SqliteMetadataStore } = await import(${JSON.stringify(storeModule)}); await new SqliteMetadataStore(process.argv[1]).close();`, file],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        );
        let err = '';
        child.stderr.on('data', (d) => (err += d));
        child.on('exit', (code) => resolve({ code, err }));
      });
    try {
      const both = [open(), open()];
      await new Promise((r) => setTimeout(r, 1500));
      holder.exec('ROLLBACK');
      const results = await Promise.all(both);
      for (const r of results) assert.equal(r.code, 0, r.err);
      assert.equal(holder.pragma('user_version', { simple: true }), MIGRATIONS.length);
    } finally {
      holder.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SQLite store durability of its files (invariant 8)', () => {
  it('the directory holding a new database and its -wal file is synced before a write is acknowledged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-wal-'));
    const synced: string[] = [];
    class Observed extends SqliteMetadataStore {
      protected override async syncDirectory(d: string): Promise<void> {
        synced.push(d);
        await super.syncDirectory(d);
      }
    }
    const store = new Observed(join(dir, 'metadata.db'));
    try {
      const digest = `sha256:${'ab'.repeat(32)}`;
      await store.commitBlob(undefined, 'a/app', { digest, size: 1, storageKey: 'k1' }, 1);
      assert.deepEqual(synced, [dir]);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('GC dry run (SQLite on disk)', () => {
  it('reads the live database in place: no copy on disk or in memory, no write lock, one snapshot, nothing left behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-dry-run-'));
    const store = new SqliteMetadataStore(join(dir, 'metadata.db'));
    try {
      const now = Date.now();
      const [a, b] = ['a', 'b'].map((c) => `sha256:${c.repeat(64)}`);
      await store.commitBlob(undefined, 'app', { digest: a!, size: 3, storageKey: 'k1' }, now - 10_000);
      // A copy in memory would cost the whole database in RAM (a dry run on a 1M-image registry).
      store.db.serialize = () => {
        throw new Error('dry run serialized the database into memory');
      };
      const files = () => readdirSync(dir).sort();
      const digests = (page: { digest: string }[]) => page.map((c) => c.digest);
      const before = files();
      const seen = await store.dryRun(async (view) => {
        // A copy on disk cost 11 s of an 11.6 s dry run at 1M images (issue 18).
        assert.deepEqual(files(), before, 'the dry run copied the database');
        // The live store still takes writes while the view is open…
        await store.commitBlob(undefined, 'app', { digest: b!, size: 4, storageKey: 'k2' }, now - 10_000);
        // …and the view goes on answering from the state it started with.
        const candidates = digests(await view.listBlobCandidates(now, 10));
        assert.equal((await view.claimBlobIfGarbage(a!, now)).blob?.digest, a);
        return candidates;
      });
      assert.deepEqual(seen, [a]);
      assert.deepEqual(digests(await store.listBlobCandidates(now, 10)).sort(), [a, b].sort(), 'the view\'s claim reached the database');
      assert.ok(await store.findBlob('app', a!));
      assert.deepEqual(files(), before);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
