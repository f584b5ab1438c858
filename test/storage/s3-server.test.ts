/**
 * Berth on S3 as a scale-out deployment uses it: two `berth serve` nodes
 * sharing one metadata database and one bucket prefix (an upload started on
 * one node continues on the other, after the first was killed), and blob
 * GETs redirected to pre-signed URLs. Runs when an S3 endpoint is configured
 * (S3_ENDPOINT), whatever BERTH_TEST_STORAGE says; skips visibly otherwise and
 * fails under CI=true.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MIN_PART_SIZE, S3BlobStore } from '../../src/storage/s3.js';
import { bytes, RegistryClient } from '../helpers/registry-client.js';
import { s3SkipReason, s3TestEnv, uniquePrefix } from '../helpers/s3-env.js';
import { makeDataDir, startServer } from '../helpers/server.js';

const skip = s3SkipReason();

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** A config file putting a server's blobs under `prefix` (5 MiB parts, so a few MiB cross parts). */
function s3Config(dataDir: string, prefix: string, extra = ''): string {
  const env = s3TestEnv()!;
  const file = join(dataDir, `berth-${randomBytes(3).toString('hex')}.yaml`);
  writeFileSync(file, `storage:\n  url: s3://${env.bucket}/${prefix}\n  partSize: 5MiB\n${extra}`);
  return file;
}

async function emptyPrefix(prefix: string): Promise<void> {
  const env = s3TestEnv()!;
  for (const [k, v] of Object.entries(env.awsEnv)) process.env[k] ??= v;
  const store = new S3BlobStore({ bucket: env.bucket, prefix, endpoint: env.endpoint, region: env.region, partSize: MIN_PART_SIZE });
  await store.deleteEverything();
  store.close();
}

describe('Berth on S3: several nodes, redirects', { skip }, () => {
  it('an upload started on node A, which is then killed, continues and completes on node B', async () => {
    const dataDir = makeDataDir();
    const prefix = uniquePrefix('two-nodes');
    const env = s3TestEnv()!.awsEnv;
    const config = s3Config(dataDir, prefix);
    const a = await startServer({ dataDir, env, args: ['--config', config] });
    const b = await startServer({ dataDir, env, args: ['--config', config] });
    try {
      const data = randomBytes(3 * MIN_PART_SIZE + 12_345);
      const digest = sha256(data);
      const onA = new RegistryClient(a.url);
      const onB = new RegistryClient(b.url);
      const location = await onA.startUpload('nodes/app');
      // Node A takes a chunk crossing a part boundary, then dies without a trace of the upload in its memory mattering.
      const first = MIN_PART_SIZE + 1000;
      const p1 = await onA.fetch(location, { method: 'PATCH', headers: { 'Content-Range': `0-${first - 1}` }, body: bytes(data.subarray(0, first)) });
      assert.equal(p1.status, 202, await p1.text());
      await a.kill();
      // Node B continues: another chunk, then the last one with the PUT.
      const second = 2 * MIN_PART_SIZE + 77;
      const p2 = await onB.fetch(location, { method: 'PATCH', headers: { 'Content-Range': `${first}-${second - 1}` }, body: bytes(data.subarray(first, second)) });
      assert.equal(p2.status, 202, await p2.text());
      assert.equal(p2.headers.get('range'), `0-${second - 1}`);
      const put = await onB.fetch(`${location}?digest=${digest}`, { method: 'PUT', body: bytes(data.subarray(second)) });
      assert.equal(put.status, 201, await put.text());
      const got = await onB.getBlob('nodes/app', digest);
      assert.equal(got.status, 200);
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(data), 'the blob holds the bytes both nodes received');
      assert.deepEqual(b.loggedErrors(), []);
    } finally {
      await a.stop();
      await b.stop();
      rmSync(dataDir, { recursive: true, force: true });
      await emptyPrefix(prefix);
    }
  });

  it('with storage.redirect, GET answers 307 to a pre-signed URL that serves the bytes; HEAD is answered by Berth', async () => {
    const dataDir = makeDataDir();
    const prefix = uniquePrefix('redirect');
    const server = await startServer({ dataDir, env: s3TestEnv()!.awsEnv, args: ['--config', s3Config(dataDir, prefix, '  redirect: true\n')] });
    try {
      const client = new RegistryClient(server.url);
      const data = randomBytes(50_000);
      const digest = sha256(data);
      await client.pushBlob('redirect/app', { data, digest, size: data.length } as Parameters<RegistryClient['pushBlob']>[1]);
      const head = await client.fetch(`/v2/redirect/app/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(data.length));
      const res = await client.getBlob('redirect/app', digest);
      assert.equal(res.status, 307);
      assert.equal(res.headers.get('docker-content-digest'), digest);
      const location = res.headers.get('location')!;
      assert.match(location, /X-Amz-Signature=/);
      const direct = await fetch(location);
      assert.equal(direct.status, 200);
      assert.ok(Buffer.from(await direct.arrayBuffer()).equals(data));
      const ranged = await fetch(location, { headers: { Range: 'bytes=10-19' } });
      assert.equal(ranged.status, 206);
      assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(10, 20)));
      // A client that follows redirects pulls as usual; an unknown blob is still Berth's 404.
      const followed = await fetch(`${server.url}/v2/redirect/app/blobs/${digest}`);
      assert.ok(Buffer.from(await followed.arrayBuffer()).equals(data));
      assert.equal((await client.getBlob('redirect/app', sha256(Buffer.from('nope')))).status, 404);
    } finally {
      await server.stop();
      await emptyPrefix(prefix);
    }
  });
});
