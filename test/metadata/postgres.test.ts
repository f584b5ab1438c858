/**
 * The shared MetadataStore suite against PostgreSQL (a fresh database per
 * test; `open()` gives a second pool on it, i.e. another node), plus what is
 * PostgreSQL's own: migrations under concurrent starts, schema refusal.
 * Skips with a message when no server is reachable, and fails then under CI=true.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresMetadataStore, redactUrl } from '../../src/metadata/postgres/postgres-store.js';
import { LATEST_VERSION, MIGRATIONS } from '../../src/metadata/postgres/migrations.js';
import { berth } from '../helpers/berth-cli.js';
import { createTestDatabase, postgresUnavailable, type TestDatabase } from '../helpers/postgres.js';
import { LINK_REFS_V10_ROWS, STORAGE_KEYS_V11_ROWS, expectMigratedLinkRefs, expectMigratedRunHistory, expectMigratedStorageKeys, metadataStoreSuite } from './store-suite.js';

const unavailable = await postgresUnavailable();

async function linkRefs(url: string): Promise<string[]> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const r = await client.query(`
      SELECT r.name || ' ' || l.digest || ' ' || l.refs AS line FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
      ORDER BY r.name, l.digest`);
    return r.rows.map((row) => row.line as string);
  } finally {
    await client.end();
  }
}

if (unavailable && process.env.CI === 'true') {
  it('PostgreSQL is reachable (required under CI=true)', () => assert.fail(unavailable));
} else if (unavailable) {
  describe('MetadataStore contract: postgres', { skip: `skipped: ${unavailable}` }, () => {
    it('needs a PostgreSQL server');
  });
} else {
  const databases: TestDatabase[] = [];
  after(async () => {
    await Promise.all(databases.map((d) => d.drop()));
  });

  metadataStoreSuite('postgres', async () => {
    const db = await createTestDatabase();
    databases.push(db);
    return {
      // The contract suite reasons about fixed times: stamp them from the `now` arguments.
      open: () => PostgresMetadataStore.open(db.url, { poolSize: 4, clock: 'caller' }),
      cleanup: () => db.drop(),
      linkRefs: () => linkRefs(db.url),
    };
  });

  describe('PostgreSQL console figures', () => {
    it('links into two repositories that share blobs, in opposite orders, neither wait on each other nor deadlock', async () => {
      // The per-repository figures used to be kept by updating the other
      // repository's row when a blob became shared: two pushes linking each
      // other's blobs locked the two rows in opposite orders (a deadlock,
      // found by PostgreSQL after a second of waiting).
      const db = await createTestDatabase();
      databases.push(db);
      const store = await PostgresMetadataStore.open(db.url, { poolSize: 2 });
      const [c0, c1, c2] = [new pg.Client(db.url), new pg.Client(db.url), new pg.Client(db.url)];
      await Promise.all([c0.connect(), c1.connect(), c2.connect()]);
      try {
        const ids = (await c0.query(`INSERT INTO repositories (name, created_at) VALUES ('a', 0), ('b', 0) RETURNING id`)).rows.map((r) => r.id as number);
        const [a, b] = ids as [number, number];
        const sizes: Record<string, number> = { x: 1, y: 10, w: 100, z: 1000 };
        for (const [d, size] of Object.entries(sizes)) await c0.query(`INSERT INTO blobs (digest, size, storage_key, last_seen) VALUES ($1, $2, $1, 0)`, [d, size]);
        await c0.query(`INSERT INTO repository_blobs (repository_id, digest, last_seen) VALUES ($1, 'x', 0), ($2, 'y', 0)`, [b, a]);
        await c1.query('BEGIN');
        await c2.query('BEGIN');
        await c1.query(`INSERT INTO repository_blobs (repository_id, digest, last_seen) VALUES ($1, 'w', 0)`, [a]);
        await c2.query(`INSERT INTO repository_blobs (repository_id, digest, last_seen) VALUES ($1, 'z', 0)`, [b]);
        await c1.query(`SET lock_timeout = '300ms'`);
        await c2.query(`SET lock_timeout = '300ms'`);
        await Promise.all([
          c1.query(`INSERT INTO repository_blobs (repository_id, digest, last_seen) VALUES ($1, 'x', 0)`, [a]),
          c2.query(`INSERT INTO repository_blobs (repository_id, digest, last_seen) VALUES ($1, 'y', 0)`, [b]),
        ]);
        await c1.query('COMMIT');
        await c2.query('COMMIT');
        const figures = Object.fromEntries((await store.repositorySummaries()).map((r) => [r.name, [r.bytes, r.uniqueBytes]]));
        assert.deepEqual(figures, { a: [111, 100], b: [1011, 1000] });
      } finally {
        await Promise.all([c0.end(), c1.end(), c2.end()]);
        await store.close();
      }
    });
  });

  describe('PostgreSQL schema migrations', () => {
    it('nodes starting at once on an empty database migrate it exactly once', async () => {
      const db = await createTestDatabase();
      databases.push(db);
      const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresMetadataStore.open(db.url, { poolSize: 2 })));
      await Promise.all(stores.map((s) => s.close()));
      const client = new pg.Client(db.url);
      await client.connect();
      const rows = (await client.query('SELECT version FROM berth_schema_migrations ORDER BY version')).rows.map((r) => r.version);
      await client.end();
      assert.deepEqual(rows, Array.from({ length: LATEST_VERSION }, (_, i) => i + 1));
    });

    it('a schema newer than the code is refused at start, by serve and by migrate', async () => {
      const db = await createTestDatabase();
      databases.push(db);
      await (await PostgresMetadataStore.open(db.url)).close();
      const client = new pg.Client(db.url);
      await client.connect();
      await client.query(`INSERT INTO berth_schema_migrations (version, description, applied_at) VALUES (${LATEST_VERSION + 1}, 'future', 0)`);
      await client.end();
      await assert.rejects(PostgresMetadataStore.open(db.url), /schema version \d+ is newer than this Berth understands/);
      const migrate = await berth(['migrate', '--metadata', db.url]);
      assert.equal(migrate.code, 1);
      assert.match(migrate.stderr, /newer than this Berth understands/);
      const serve = await berth(['serve', '--addr', '127.0.0.1:0', '--data', '/nonexistent-berth-dir', '--metadata', db.url]);
      assert.notEqual(serve.code, 0);
      assert.match(serve.stderr, /newer than this Berth understands/);
    });

    it('berth migrate applies pending migrations and prints from → to; --status only reports', async () => {
      const db = await createTestDatabase();
      databases.push(db);
      const status = await berth(['migrate', '--status', '--json', '--metadata', db.url]);
      assert.equal(status.code, 1, 'pending migrations: exit 1');
      assert.equal(JSON.parse(status.stdout).from, 0);
      const withPassword = new URL(db.url);
      withPassword.password = 'hunter2';
      const run = await berth(['migrate', '--metadata', db.url]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`schema version 0 → ${LATEST_VERSION}`));
      const again = await berth(['migrate', '--status', '--metadata', db.url]);
      assert.equal(again.code, 0);
      assert.match(again.stdout, /up to date/);
      assert.doesNotMatch(redactUrl(withPassword.toString()), /hunter2/);
    });

    /** A database at schema `version`, as a node of that release left it, with `seed`'s rows. */
    async function databaseAt(version: number, seed: (client: pg.Client) => Promise<void>): Promise<string> {
      const db = await createTestDatabase();
      databases.push(db);
      const client = new pg.Client(db.url);
      await client.connect();
      try {
        await client.query('CREATE TABLE berth_schema_migrations (version integer PRIMARY KEY, description text NOT NULL, applied_at bigint NOT NULL)');
        for (const m of MIGRATIONS.filter((m) => m.version <= version)) {
          await client.query(m.sql);
          await client.query('INSERT INTO berth_schema_migrations (version, description, applied_at) VALUES ($1, $2, 0)', [m.version, m.description]);
        }
        await seed(client);
      } finally {
        await client.end();
      }
      return db.url;
    }

    it('version 10: a database at version 9 with runs gets exact totals per kind after migrating', async () => {
      const url = await databaseAt(9, async (client) => {
        await client.query(`
          INSERT INTO lifecycle_runs (kind, trigger, started_at, duration_ms, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems)
          SELECT CASE WHEN i % 4 = 0 THEN 'fsck' ELSE 'gc' END, 'background', 1000 + i, i, 1, 2, 3000000000 * i, 4, CASE WHEN i % 4 = 0 THEN 5 ELSE 0 END
          FROM generate_series(1, 1200) AS i`);
      });
      const store = await PostgresMetadataStore.open(url, { poolSize: 2 });
      try {
        await expectMigratedRunHistory(store);
      } finally {
        await store.close();
      }
    });

    it('version 11: a database at version 10 with manifests gets exact counts per link after migrating', async () => {
      const url = await databaseAt(10, async (client) => {
        for (const sql of LINK_REFS_V10_ROWS) await client.query(sql);
      });
      const store = await PostgresMetadataStore.open(url, { poolSize: 2, clock: 'caller' });
      try {
        await expectMigratedLinkRefs(store, () => linkRefs(url));
      } finally {
        await store.close();
      }
    });

    it('version 12: a database at version 11 knows every key after migrating, and indexes only the foreign ones', async () => {
      const url = await databaseAt(11, async (client) => {
        for (const sql of STORAGE_KEYS_V11_ROWS) await client.query(sql);
      });
      const store = await PostgresMetadataStore.open(url, { poolSize: 2, clock: 'caller' });
      const client = new pg.Client(url);
      await client.connect();
      try {
        await expectMigratedStorageKeys(store, async () => {
          // The index's own predicate, read from the catalog: the keys it holds.
          const def = (await client.query(`SELECT pg_get_expr(indpred, indrelid) AS pred FROM pg_index WHERE indexrelid = 'blobs_by_foreign_key'::regclass AND indisunique`)).rows[0]!.pred as string;
          const unique = (await client.query(`SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'blobs'::regclass AND indisunique AND indpred IS NULL AND indkey::text = (SELECT attnum::text FROM pg_attribute WHERE attrelid = 'blobs'::regclass AND attname = 'storage_key')`)).rows[0]!.n as number;
          assert.equal(unique, 0, 'no index of every key is left');
          return (await client.query(`SELECT storage_key FROM blobs WHERE ${def} ORDER BY storage_key COLLATE "C"`)).rows.map((r) => r.storage_key as string);
        });
      } finally {
        await client.end();
        await store.close();
      }
    });

    it('an unreachable server is a clear error naming the URL without its password', async () => {
      const r = await berth(['migrate', '--metadata', 'postgres://someone:hunter2@127.0.0.1:1/none']);
      assert.notEqual(r.code, 0);
      assert.doesNotMatch(r.stderr + r.stdout, /hunter2/);
    });
  });
}
