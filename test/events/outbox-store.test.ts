/**
 * The outbox part of both metadata stores: events written with the change
 * they report (and only then), the delivery lease, backoff, dead letters.
 * SQLite always; PostgreSQL when reachable.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';
import { PostgresMetadataStore } from '../../src/metadata/postgres/postgres-store.js';
import type { OutboxOptions } from '../../src/metadata/outbox.js';
import type { MetadataStore, NewManifest, WriteGuard } from '../../src/metadata/store.js';
import { createTestDatabase, postgresUnavailable, type TestDatabase } from '../helpers/postgres.js';
import { digestOf } from '../metadata/store-suite.js';

const OUTBOX: OutboxOptions = {
  endpoints: [
    { name: 'all', accepts: () => true },
    { name: 'no-blobs', accepts: (e) => e.mediaType !== 'application/octet-stream' },
  ],
};
const CLAIM = { limit: 10, leaseMs: 5_000, maxAge: 3_600_000, maxCount: 1000 };

function manifestOf(name: string, blobs: string[]): NewManifest {
  const body = Buffer.from(JSON.stringify({ name, layers: blobs.map((digest) => ({ mediaType: 'x', digest, size: 1 })) }));
  return { digest: digestOf(body.toString()), mediaType: 'application/vnd.oci.image.manifest.v1+json', size: body.length, body, blobs, children: [] };
}

type Open = (outbox?: OutboxOptions) => Promise<MetadataStore>;

function suite(name: string, setup: () => Promise<{ open: Open; cleanup: () => Promise<void> } | string>) {
  describe(`event outbox: ${name}`, () => {
    let fixture: { open: Open; cleanup: () => Promise<void> } | undefined;
    const stores: MetadataStore[] = [];
    after(async () => {
      for (const s of stores) await s.close();
      await fixture?.cleanup();
    });
    async function open(t: { skip(m: string): void }, outbox?: OutboxOptions): Promise<MetadataStore | undefined> {
      if (!fixture) {
        const f = await setup();
        if (typeof f === 'string') {
          t.skip(f);
          return undefined;
        }
        fixture = f;
      }
      const s = await fixture.open(outbox);
      stores.push(s);
      return s;
    }

    it('a change writes its events in its own transaction: none when it fails, one per endpoint that takes it', async (t) => {
      const store = await open(t, OUTBOX);
      if (!store) return;
      const now = await store.now();
      const blob = digestOf(`blob-${name}-1`);
      const m = manifestOf(`m-${name}-1`, [blob]);
      await assert.rejects(store.putManifest('o/a', m, 'v1', now), /MANIFEST_BLOB_UNKNOWN|unknown/i);
      assert.deepEqual(await store.claimEvents('all', 'x', now, CLAIM), [], 'a refused push writes no event');
      await store.commitBlob(undefined, 'o/a', { digest: blob, size: 1, storageKey: `k-${blob}` }, now);
      await store.putManifest('o/a', m, 'v1', now, { actor: 'alice' });
      assert.equal(await store.deleteTag('o/a', 'nope', now), false);
      const all = (await store.claimEvents('all', 'x', now + 1000, CLAIM))!;
      assert.deepEqual(all.map((r) => [r.event.action, r.event.digest, r.event.tag]), [['push', blob, undefined], ['push', m.digest, 'v1']]);
      assert.equal(all[1]!.event.ctx?.actor, 'alice');
      assert.deepEqual(all[1]!.event.references, [{ mediaType: 'x', digest: blob, size: 1 }]);
      const noBlobs = (await store.claimEvents('no-blobs', 'x', now + 1000, CLAIM))!;
      assert.deepEqual(noBlobs.map((r) => r.event.digest), [m.digest], 'the ignore rule applies before the row is written');
      assert.equal(noBlobs[0]!.id, all[1]!.id, 'one id per event, whichever endpoint');
    });

    it('without an outbox, no rows', async (t) => {
      const store = await open(t);
      if (!store) return;
      const now = await store.now();
      const blob = digestOf(`blob-${name}-quiet`);
      await store.commitBlob(undefined, 'o/q', { digest: blob, size: 1, storageKey: `k-${blob}` }, now);
      assert.ok(!(await store.eventStats(now)).some((s) => s.pending > 0 && s.endpoint === 'quiet'));
    });

    it('policies: a write a guard refuses writes no event; a retention delete writes retention.delete', async (t) => {
      const store = await open(t, { endpoints: [{ name: 'pol', accepts: () => true }] });
      if (!store) return;
      const now = await store.now();
      const blob = digestOf(`blob-${name}-pol`);
      await store.commitBlob(undefined, 'o/p', { digest: blob, size: 1, storageKey: `k-${blob}` }, now);
      const m1 = manifestOf(`m-${name}-pol-1`, [blob]);
      const m2 = manifestOf(`m-${name}-pol-2`, [blob]);
      await store.putManifest('o/p', m1, 'v1', now);
      const before = (await store.claimEvents('pol', 'x', (await store.now()) + 100, CLAIM))!;
      await store.ackEvents('pol', 'x', before.map((r) => r.seq));
      const immutable: WriteGuard = { refuseTagChange: (tag) => (tag === 'v1' ? new Error(`tag ${tag} is immutable`) : undefined) };
      await assert.rejects(store.putManifest('o/p', m2, 'v1', now, { actor: 'alice' }, immutable), /immutable/);
      await assert.rejects(store.deleteTag('o/p', 'v1', now, { actor: 'alice' }, immutable), /immutable/);
      await assert.rejects(store.deleteManifest('o/p', m1.digest, now, { actor: 'alice' }, immutable), /immutable/);
      assert.deepEqual(await store.claimEvents('pol', 'x', (await store.now()) + 200, CLAIM), [], 'refused writes leave no event');
      const [seen] = await store.listRetentionTags('o/p');
      assert.equal(await store.deleteTagIfUnchanged('o/p', seen!, await store.now()), true);
      const events = (await store.claimEvents('pol', 'x', (await store.now()) + 300, CLAIM))!;
      assert.deepEqual(events.map((r) => [r.event.action, r.event.repository, r.event.tag, r.event.digest]), [['retention.delete', 'o/p', 'v1', m1.digest]]);
    });

    it('fsck drift: one fsck.drift event per problem, in one transaction; none without an outbox', async (t) => {
      const store = await open(t, { endpoints: [{ name: 'drift', accepts: () => true }] });
      if (!store) return;
      const quiet = (await open(t))!;
      const blob = digestOf(`blob-${name}-drift`);
      await quiet.recordFsckDrift([{ problem: 'missing', digest: blob, size: 3 }]);
      await store.recordFsckDrift([]);
      await store.recordFsckDrift([
        { problem: 'missing', digest: blob, size: 3 },
        { problem: 'orphan-upload', size: 7 },
      ]);
      const events = (await store.claimEvents('drift', 'x', (await store.now()) + 100, CLAIM))!;
      assert.deepEqual(
        events.map((r) => r.event),
        [
          { action: 'fsck.drift', repository: '', problem: 'missing', digest: blob, size: 3 },
          { action: 'fsck.drift', repository: '', problem: 'orphan-upload', size: 7 },
        ],
      );
    });

    it('the lease: a second owner gets nothing until the first acks, or its lease runs out (a crash)', async (t) => {
      const a = await open(t, { endpoints: [{ name: 'lease', accepts: () => true }] });
      if (!a) return;
      const b = (await open(t, { endpoints: [{ name: 'lease', accepts: () => true }] }))!;
      const now = await a.now();
      for (let i = 0; i < 3; i++) {
        const blob = digestOf(`blob-${name}-lease-${i}`);
        await a.commitBlob(undefined, 'o/l', { digest: blob, size: 1, storageKey: `k-${blob}` }, now);
      }
      const t0 = (await a.now()) + 100;
      const first = (await a.claimEvents('lease', 'A', t0, { ...CLAIM, limit: 2 }))!;
      assert.equal(first.length, 2);
      assert.equal(await b.claimEvents('lease', 'B', t0 + 10, CLAIM), undefined, 'leased to A');
      // A "crashes": after the lease, B takes the same events (same ids: receivers de-duplicate).
      const again = (await b.claimEvents('lease', 'B', t0 + CLAIM.leaseMs + 1, { ...CLAIM, limit: 2 }))!;
      assert.deepEqual(again.map((r) => r.id), first.map((r) => r.id));
      await b.ackEvents('lease', 'B', again.map((r) => r.seq));
      const rest = (await a.claimEvents('lease', 'A', t0 + CLAIM.leaseMs + 2, CLAIM))!;
      assert.equal(rest.length, 1);
      // A failure backs the endpoint off until retryAt, for every owner.
      await a.failEvents('lease', 'A', rest.map((r) => r.seq), t0 + 60_000, 'HTTP 500');
      assert.equal(await b.claimEvents('lease', 'B', t0 + 30_000, CLAIM), undefined);
      const stats = (await a.eventStats(t0)).find((s) => s.endpoint === 'lease')!;
      assert.equal(stats.pending, 1);
      assert.equal(stats.failures, 1);
      assert.equal(stats.lastError, 'HTTP 500');
      const retried = (await b.claimEvents('lease', 'B', t0 + 60_001, CLAIM))!;
      assert.deepEqual(retried.map((r) => [r.id, r.attempts]), [[rest[0]!.id, 1]]);
    });

    it('too many pending: the oldest are dead-lettered, and a replay brings them back', async (t) => {
      const s = await open(t, { endpoints: [{ name: 'dl', accepts: () => true }] });
      if (!s) return;
      const now = await s.now();
      for (let i = 0; i < 4; i++) {
        const blob = digestOf(`blob-${name}-dl-${i}`);
        await s.commitBlob(undefined, 'o/d', { digest: blob, size: 1, storageKey: `k-${blob}` }, now);
      }
      const claimed = (await s.claimEvents('dl', 'A', (await s.now()) + 100, { ...CLAIM, maxCount: 1 }))!;
      assert.equal(claimed.length, 1);
      assert.equal(claimed[0]!.event.digest, digestOf(`blob-${name}-dl-3`), 'the newest is kept');
      await s.ackEvents('dl', 'A', claimed.map((r) => r.seq));
      assert.equal((await s.eventStats(now)).find((x) => x.endpoint === 'dl')!.deadLettered, 3);
      assert.equal(await s.replayEvents('dl', (await s.now()) + 200), 3);
      const replayed = (await s.claimEvents('dl', 'A', (await s.now()) + 300, CLAIM))!;
      assert.deepEqual(replayed.map((r) => r.event.digest), [0, 1, 2].map((i) => digestOf(`blob-${name}-dl-${i}`)), 'in their order');
    });
  });
}

suite('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-outbox-'));
  return {
    open: async (outbox) => new SqliteMetadataStore(join(dir, 'metadata.db'), { outbox }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

suite('postgres', async () => {
  const why = await postgresUnavailable();
  if (why) return why;
  const db: TestDatabase = await createTestDatabase();
  return { open: (outbox) => PostgresMetadataStore.open(db.url, { outbox }), cleanup: () => db.drop() };
});
