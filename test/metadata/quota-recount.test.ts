/**
 * Quota namespaces are synced at every start (and reload). Their usage is
 * kept exact by the link triggers, so a sync recounts only a namespace that
 * is new or gained repositories: recounting every namespace at start read
 * every link of every quota'd repository, a start that grew with the registry
 * (issue 18). Observed by planting a wrong figure that only a recount would
 * correct. SQLite, and PostgreSQL when reachable.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import type { MetadataStore } from '../../src/metadata/store.js';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';
import { PostgresMetadataStore } from '../../src/metadata/postgres/postgres-store.js';
import { createTestDatabase, postgresUnavailable, type TestDatabase } from '../helpers/postgres.js';

const T = 1_700_000_000_000;
const digest = (c: string) => `sha256:${c.repeat(64)}`;

async function scenario(store: MetadataStore, plant: (bytes: number) => Promise<void>): Promise<void> {
  await store.commitBlob(undefined, 'team/a', { digest: digest('a'), size: 100, storageKey: 'ka' }, T);
  await store.commitBlob(undefined, 'team/b', { digest: digest('b'), size: 10, storageKey: 'kb' }, T);
  await store.syncQuotaNamespaces([{ name: 'team', repositories: ['team/a'] }]);
  const usage = async () => (await store.quotaUsage()).find((u) => u.namespace === 'team')?.bytes;
  assert.equal(await usage(), 100, 'a new namespace is counted');

  await plant(7);
  await store.syncQuotaNamespaces([{ name: 'team', repositories: ['team/a'] }]);
  assert.equal(await usage(), 7, 'an unchanged namespace is not recounted (a start costs nothing per image)');

  await store.syncQuotaNamespaces([{ name: 'team', repositories: ['team/a', 'team/b'] }]);
  assert.equal(await usage(), 110, 'a namespace that gained a repository is recounted');
}

describe('quota sync recounts only what changed', () => {
  it('SQLite', async () => {
    const store = new SqliteMetadataStore(':memory:');
    try {
      await scenario(store, async (bytes) => void store.db.prepare('UPDATE quota_namespaces SET bytes = ?').run(bytes));
    } finally {
      await store.close();
    }
  });

  const databases: TestDatabase[] = [];
  after(async () => {
    await Promise.all(databases.map((d) => d.drop()));
  });
  it('PostgreSQL', async (t) => {
    const unavailable = await postgresUnavailable();
    if (unavailable && process.env.CI !== 'true') return t.skip(unavailable);
    const db = await createTestDatabase();
    databases.push(db);
    const store = await PostgresMetadataStore.open(db.url, { poolSize: 2, clock: 'caller' });
    const client = new pg.Client(db.url);
    await client.connect();
    try {
      await scenario(store, async (bytes) => void (await client.query('UPDATE quota_namespaces SET bytes = $1', [bytes])));
    } finally {
      await client.end();
      await store.close();
    }
  });
});
