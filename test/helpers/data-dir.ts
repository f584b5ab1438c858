/**
 * Looking at what a test server stored, and at spec error bodies, shared by
 * the API tests. The storage helpers work on either test storage (the data
 * directory, or the S3 prefix of BERTH_TEST_STORAGE=s3).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { S3BlobStore } from '../../src/storage/s3.js';
import { join } from 'node:path';
import { digestOfKey } from '../../src/storage/blob-store.js';
import { TEST_STORAGE, testStore, type TestServer } from './server.js';

/** Files below `dir`, relative and sorted; [] when it does not exist. */
export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true }) as string[]).filter((p) => statSync(join(dir, p)).isFile()).sort();
}

/** Keys of every stored blob object, sorted. */
export async function blobKeys(server: TestServer): Promise<string[]> {
  if (TEST_STORAGE === 'fs') return listFiles(join(server.dataDir, 'blobs'));
  const keys: string[] = [];
  for await (const o of testStore(server.dataDir).listBlobs()) keys.push(o.key);
  return keys.sort();
}

/** Ids of uploads that have stored bytes (files under uploads/, or S3 tails and multipart uploads), sorted. */
export async function uploadFiles(server: TestServer): Promise<string[]> {
  if (TEST_STORAGE === 'fs') return listFiles(join(server.dataDir, 'uploads'));
  const ids: string[] = [];
  for await (const o of testStore(server.dataDir).listUploads()) ids.push(o.key);
  return ids.sort();
}

export async function uploadStored(server: TestServer, id: string): Promise<boolean> {
  return (await uploadFiles(server)).includes(id);
}

/** Digests of S3 objects by key: keys are unique per upload and objects immutable, so this never goes stale. */
const digestsByKey = new Map<string, string>();

/**
 * Blob objects stored for a digest. On disk the key names the digest
 * (<alg>/<xx>/<hex>.<upload-id>); S3 keys do not, so objects are hashed.
 */
export async function blobFiles(server: TestServer, digest: string): Promise<string[]> {
  const keys = await blobKeys(server);
  if (TEST_STORAGE === 'fs') return keys.filter((k) => digestOfKey(k) === digest);
  const store = testStore(server.dataDir);
  const algorithm = digest.split(':')[0]!;
  const out: string[] = [];
  for (const key of keys) {
    const memo = `${server.dataDir}:${algorithm}:${key}`;
    let d = digestsByKey.get(memo);
    if (!d) {
      const hash = createHash(algorithm);
      try {
        for await (const c of await store.openBlob(key)) hash.update(c as Buffer);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // deleted meanwhile
        throw e;
      }
      d = `${algorithm}:${hash.digest('hex')}`;
      digestsByKey.set(memo, d);
    }
    if (d === digest) out.push(key);
  }
  return out;
}

export async function blobSize(server: TestServer, key: string): Promise<number | undefined> {
  return (await testStore(server.dataDir).statBlob(key))?.size;
}

/** Replaces a stored blob's bytes behind Berth's back (fsck tests: bit rot). */
export async function overwriteBlob(dataDir: string, key: string, data: Buffer): Promise<void> {
  if (TEST_STORAGE === 'fs') return writeFileSync(join(dataDir, 'blobs', key), data);
  const store = testStore(dataDir) as S3BlobStore;
  await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: `${store.prefix}blobs/${key}`, Body: data, ContentLength: data.length }));
}

/** Asserts the status and the spec's error code of a response. */
export async function assertError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status} ${text}`);
  assert.equal((JSON.parse(text) as { errors: { code: string }[] }).errors[0]!.code, code, text);
}
