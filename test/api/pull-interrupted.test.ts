/**
 * A pull whose blob object disappears in the middle (GC removed it, or drift)
 * must end as a failed transfer, never as a clean 200 with fewer bytes than
 * its Content-Length promised (invariant 1: a 200 is the blob's bytes).
 * S3 reads a blob as several ranged GETs; the pause point between two of them
 * lets the test delete the object at exactly that moment. The filesystem
 * store reads from a descriptor opened before the headers, which a deletion
 * does not affect, so this runs on S3 only.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { pauseControl } from '../helpers/pause.js';
import { blob, RegistryClient } from '../helpers/registry-client.js';
import { startServer, TEST_STORAGE, testStore, type TestServer } from '../helpers/server.js';

describe('a blob whose object is deleted in the middle of a pull', { skip: TEST_STORAGE !== 's3' ? 'S3 storage only (BERTH_TEST_STORAGE=s3)' : undefined }, () => {
  let server: TestServer | undefined;
  const pause = pauseControl('pull-between-ranges');
  after(async () => {
    await server?.stop();
    pause.cleanup();
  });

  it('ends the response as a failure, not as a truncated 200', async () => {
    server = await startServer({ env: { BERTH_GC_ENABLED: 'false', ...pause.env } });
    const client = new RegistryClient(server.url);
    // Three 8 MiB ranges: the third is requested only after the pause.
    const b = blob(randomBytes(17 * 1024 * 1024));
    await client.pushBlob('pull/cut', b);
    const res = await client.getBlob('pull/cut', b.digest);
    assert.equal(res.status, 200);
    const body = res.arrayBuffer().then(
      (buf) => ({ ok: true as const, bytes: Buffer.from(buf) }),
      (e: Error) => ({ ok: false as const, error: e }),
    );
    await pause.reached('pull-between-ranges');
    const store = testStore(server.dataDir);
    for await (const o of store.listBlobs()) await store.deleteBlob(o.key);
    pause.resume('pull-between-ranges');
    const outcome = await body;
    // The third range is gone: the only true outcome is a failed transfer.
    assert.equal(outcome.ok, false, outcome.ok ? `the body ended cleanly with ${outcome.bytes.length} of ${b.size} bytes` : '');
  });
});
