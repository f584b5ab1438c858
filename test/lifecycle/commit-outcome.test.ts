/**
 * A commit whose metadata outcome is uncertain (the PostgreSQL connection
 * is lost during COMMIT: the transaction committed, the client got an
 * error) must not delete the bytes metadata now names (invariant 9), for
 * every shape of upload. Runs on the stores the test servers use
 * (BERTH_TEST_METADATA, BERTH_TEST_STORAGE), driving registry/ in process
 * with a metadata store wrapper that throws after committing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { MetadataStore } from '../../src/metadata/store.js';
import { PostgresMetadataStore } from '../../src/metadata/postgres/postgres-store.js';
import { SqliteMetadataStore } from '../../src/metadata/sqlite/sqlite-store.js';
import { parseDigest } from '../../src/registry/reference.js';
import { Registry } from '../../src/registry/registry.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { sha256 } from '../helpers/registry-client.js';
import { makeDataDir, removeStorage, TEST_METADATA, testStore } from '../helpers/server.js';

/** Commits for real, then reports a lost connection, as a COMMIT whose answer never arrived. */
function losingCommitAnswers(store: MetadataStore): MetadataStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'commitBlob') {
        return async (...args: Parameters<MetadataStore['commitBlob']>) => {
          await target.commitBlob(...args);
          throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
        };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('a commit whose metadata outcome is uncertain keeps its bytes (invariant 9)', () => {
  const dataDir = makeDataDir();
  let metadata: MetadataStore;
  let storage: BlobStore;
  let registry: Registry;
  let database: TestDatabase | undefined;
  before(async () => {
    if (TEST_METADATA === 'postgres') {
      database = await createTestDatabase();
      metadata = await PostgresMetadataStore.open(database.url);
    } else {
      metadata = new SqliteMetadataStore(join(dataDir, 'metadata.db'));
    }
    storage = testStore(dataDir);
    if (storage instanceof FilesystemBlobStore) await storage.init();
    registry = new Registry(losingCommitAnswers(metadata), storage);
  });
  after(async () => {
    await metadata.close();
    await database?.drop();
    await removeStorage(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function assertStored(repo: string, data: Buffer): Promise<void> {
    const blob = await metadata.findBlob(repo, sha256(data));
    assert.ok(blob, 'the commit did happen: metadata names the blob');
    const chunks: Buffer[] = [];
    for await (const c of await storage.openBlob(blob.storageKey)) chunks.push(c as Buffer);
    assert.ok(Buffer.concat(chunks).equals(data), 'and its bytes are there');
  }

  const shapes: [string, number, (repo: string, data: Buffer) => Promise<unknown>][] = [
    ['POST ?digest= (one write)', 1000, (repo, data) => registry.uploads.monolithic(repo, parseDigest(sha256(data)), { stream: Readable.from([data]), length: data.length })],
    ['POST ?digest= (streamed, no length)', 1000, (repo, data) => registry.uploads.monolithic(repo, parseDigest(sha256(data)), { stream: Readable.from([data]) })],
    ['POST, PATCH, PUT', 70_000, async (repo, data) => {
      const upload = await registry.uploads.start(repo);
      await registry.uploads.append(repo, upload.id, { stream: Readable.from([data]), length: data.length });
      return registry.uploads.finish(repo, upload.id, parseDigest(sha256(data)), undefined);
    }],
    ['POST, PUT with the whole body', 2000, async (repo, data) => {
      const upload = await registry.uploads.start(repo);
      return registry.uploads.finish(repo, upload.id, parseDigest(sha256(data)), { stream: Readable.from([data]), length: data.length });
    }],
  ];
  for (const [shape, size, push] of shapes) {
    it(shape, async () => {
      const repo = `uncertain/${shape.replace(/[^a-z]+/gi, '-').replace(/^-|-$/g, '').toLowerCase()}`;
      const data = randomBytes(size);
      await assert.rejects(push(repo, data), /Connection terminated/);
      await assertStored(repo, data);
    });
  }
});
