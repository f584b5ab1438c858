/**
 * A redirected pull's pre-signed URL never outlives the bytes it points at:
 * it is valid for at most the blob grace period, which the GET that hands it
 * out has just renewed (invariants 5 and 9). A grace too short for any URL is
 * refused at start. S3 storage only (redirects need it).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { randomBlob, RegistryClient } from '../helpers/registry-client.js';
import { startServer, TEST_STORAGE, type TestServer } from '../helpers/server.js';

describe('pre-signed URL lifetime and the blob grace', { skip: TEST_STORAGE !== 's3' ? 'S3 storage only (BERTH_TEST_STORAGE=s3)' : undefined }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-redirect-'));
  let server: TestServer | undefined;
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the URL expires within the blob grace period', async () => {
    const config = join(dir, 'berth.yaml');
    writeFileSync(config, 'storage:\n  redirect: true\ngc:\n  blobGrace: 20s\n');
    server = await startServer({ args: ['--config', config], env: { BERTH_GC_ENABLED: 'false' } });
    const client = new RegistryClient(server.url);
    const b = randomBlob(1000);
    await client.pushBlob('redirect/short', b);
    const res = await client.getBlob('redirect/short', b.digest);
    assert.equal(res.status, 307);
    const expires = Number(new URL(res.headers.get('location')!).searchParams.get('X-Amz-Expires'));
    assert.ok(expires >= 1 && expires <= 20, `X-Amz-Expires=${expires}, blob grace 20 s`);
    const pulled = await fetch(res.headers.get('location')!);
    assert.ok(Buffer.from(await pulled.arrayBuffer()).equals(b.data));
  });

  it('a blob grace under a second with redirects on is refused at start, with the reason', async () => {
    const config = join(dir, 'zero.yaml');
    writeFileSync(config, 'storage:\n  redirect: true\ngc:\n  blobGrace: 0s\n');
    const res = await berth(['serve', '--addr', '127.0.0.1:0', '--data', join(dir, 'data'), '--config', config]);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /storage\.redirect needs gc\.blobGrace of at least 1s/);
  });
});
