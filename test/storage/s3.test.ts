/**
 * The BlobStore contract against the S3 store, on a real S3 endpoint
 * (scripts/s3/start.sh: Swift s3api). Skips with a message when none is configured;
 * fails under CI=true.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { armPause } from '../../src/pause-points.js';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { MIN_PART_SIZE, S3BlobStore } from '../../src/storage/s3.js';
import { s3SkipReason, s3TestEnv, uniquePrefix } from '../helpers/s3-env.js';
import { blobStoreSuite, chunked } from './blob-store-suite.js';

const skip = s3SkipReason();

function makeStore(prefix: string, pageSize?: number): S3BlobStore {
  const env = s3TestEnv()!;
  for (const [k, v] of Object.entries(env.awsEnv)) process.env[k] ??= v;
  return new S3BlobStore({ bucket: env.bucket, prefix, endpoint: env.endpoint, region: env.region, partSize: MIN_PART_SIZE, pageSize });
}

if (skip) {
  describe('BlobStore contract: s3', () => {
    test(`skipped: ${skip}`, { skip });
  });
} else {
  blobStoreSuite('s3', async () => {
    const prefix = uniquePrefix('storage');
    // Pages of 2 entries: every listing (objects, multipart uploads, parts) paginates.
    const store = makeStore(prefix, 2);
    const other = makeStore(prefix, 2);
    return {
      store,
      other,
      partSize: MIN_PART_SIZE,
      importSource: async (data: Buffer) => {
        // Under the prefix but outside what the store lists, as another registry's storage in the bucket would be (and removed with it).
        const key = `${prefix}outside/${randomBytes(8).toString('hex')}/data`;
        await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: key, Body: data, ContentLength: data.length }));
        return { kind: 's3' as const, bucket: store.bucket, key, size: data.length };
      },
      cleanup: async () => {
        await store.deleteEverything();
        store.close();
        other.close();
      },
    };
  });

  describe('S3 store specifics', () => {
    test('commit does not copy: the multipart upload completes as the blob object itself', async () => {
      const store = makeStore(uniquePrefix('storage-nocopy'));
      try {
        const id = `nocopy-${randomBytes(4).toString('hex')}`;
        const data = randomBytes(2 * MIN_PART_SIZE + 123);
        await store.appendUpload(id, 0, chunked(data), () => {});
        const key = await store.commitUpload(id, data.length, `sha256:${'00'.repeat(32)}`);
        const head = await store.client.send(new HeadObjectCommand({ Bucket: store.bucket, Key: `${store.prefix}blobs/${key}` }));
        // A multipart result has an ETag "<md5 of part md5s>-<parts>": 2 full parts + the tail.
        assert.match(head.ETag ?? '', /-3"?$/);
        assert.equal(head.ContentLength, data.length);
        let tails = 0;
        for await (const _ of store.listUploads()) tails++;
        assert.equal(tails, 0, 'no tail object or multipart upload is left');
      } finally {
        await store.deleteEverything();
        store.close();
      }
    });

    test('a commit retried after the first completed (a crash before metadata) finds the blob made', async () => {
      const store = makeStore(uniquePrefix('storage-retry'));
      try {
        for (const size of [1000, MIN_PART_SIZE + 10]) {
          const id = `retry-${size}-${randomBytes(4).toString('hex')}`;
          const data = randomBytes(size);
          await store.appendUpload(id, 0, chunked(data), () => {});
          const marker = `${store.prefix}uploads/${id}/multipart`;
          const multipart = size > MIN_PART_SIZE ? await (await store.client.send(new GetObjectCommand({ Bucket: store.bucket, Key: marker }))).Body!.transformToString() : undefined;
          const key = await store.commitUpload(id, size, `sha256:${'00'.repeat(32)}`);
          // The crash came before the marker was deleted: it names a multipart upload that is complete.
          if (multipart) await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: marker, Body: multipart }));
          assert.equal(await makeStore(store.prefix).commitUpload(id, size, `sha256:${'00'.repeat(32)}`), key);
          assert.equal((await store.statBlob(key))?.size, size);
        }
      } finally {
        await store.deleteEverything();
        store.close();
      }
    });

    test('copyBlobTo rejects when the object is deleted between two ranges (the pull fails, never ends short)', async () => {
      const store = makeStore(uniquePrefix('storage-cut'));
      try {
        const id = `cut-${randomBytes(4).toString('hex')}`;
        const data = randomBytes(17 * 1024 * 1024); // three 8 MiB ranges: the third is requested after the pause
        await store.appendUpload(id, 0, chunked(data), () => {});
        const key = await store.commitUpload(id, data.length, `sha256:${'00'.repeat(32)}`);
        const pause = armPause('pull-between-ranges');
        let received = 0;
        const out = new Writable({
          write(chunk: Buffer, _enc, done) {
            received += chunk.length;
            done();
          },
        });
        const copying = store.copyBlobTo(key, { start: 0, end: data.length - 1 }, out, () => {});
        await pause.reached;
        await store.deleteBlob(key);
        pause.resume();
        // How it fails depends on timing: the next range's GET finds no object, or
        // the read-ahead already streaming it is cut off by the store ("aborted").
        // Either way the copy must reject, so the client's transfer fails.
        await assert.rejects(copying, (e: Error) => /no object|NoSuchKey|not found|ENOENT|aborted|premature|socket/i.test(`${e.name} ${e.message} ${(e as NodeJS.ErrnoException).code}`));
        assert.ok(received < data.length, `${received} of ${data.length} bytes were sent before the failure`);
      } finally {
        await store.deleteEverything();
        store.close();
      }
    });

    test('a part size below 5 MiB is refused', () => {
      assert.throws(() => new S3BlobStore({ bucket: 'b', partSize: 1024 * 1024 }), /at least/);
    });
  });
}
