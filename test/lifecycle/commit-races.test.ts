/**
 * Commits under forced interleavings (pause points in a `berth serve` child),
 * on whichever stores the test servers use (SQLite + disk by default,
 * PostgreSQL + S3 with BERTH_TEST_METADATA=postgres BERTH_TEST_STORAGE=s3).
 *
 * Invariant 9: bytes that metadata names are deleted only by GC's claim. An
 * upload is committed at most once (claimed before storage is touched), so a
 * retried PUT on another node can neither reuse nor delete the key of the
 * first one's blob; and fsck never removes what a commit is about to name.
 * Invariant 8: a 201 means the bytes are there.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { pauseControl } from '../helpers/pause.js';
import { blobKeys } from '../helpers/data-dir.js';
import { bytes, randomBlob, RegistryClient, withQuery, type Blob } from '../helpers/registry-client.js';
import { makeDataDir, removeStorage, startServer, type TestServer } from '../helpers/server.js';

const NO_GC = { BERTH_GC_ENABLED: 'false' };

async function patch(client: RegistryClient, location: string, b: Blob): Promise<string> {
  const res = await client.fetch(location, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `0-${b.size - 1}`, 'Content-Length': String(b.size) },
    body: bytes(b.data),
  });
  assert.equal(res.status, 202, await res.text());
  return res.headers.get('location')!;
}

function put(client: RegistryClient, location: string, b: Blob): Promise<Response> {
  return client.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', headers: { 'Content-Length': '0' } });
}

async function assertPulls(client: RegistryClient, repo: string, b: Blob, what: string): Promise<void> {
  const head = await client.fetch(`/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' });
  assert.equal(head.status, 200, `${what}: HEAD`);
  const res = await client.getBlob(repo, b.digest);
  assert.equal(res.status, 200, `${what}: GET after HEAD 200`);
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(b.data), `${what}: bytes`);
}

describe('commits under forced interleavings (invariants 8 and 9)', () => {
  const servers: TestServer[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const s of servers) await s.stop({ keepData: true });
    for (const d of dirs) {
      rmSync(d, { recursive: true, force: true });
      await removeStorage(d);
    }
  });
  const start = async (dataDir: string, env: Record<string, string> = {}) => {
    const s = await startServer({ dataDir, env: { ...NO_GC, ...env } });
    servers.push(s);
    return s;
  };
  const newDir = () => {
    const d = makeDataDir();
    dirs.push(d);
    return d;
  };

  it('a PUT retried on a second node while the first commits: one 201, and the blob it names pulls (invariant 9)', async () => {
    const dataDir = newDir();
    const pause = pauseControl('commit-after-storage');
    try {
      const a = new RegistryClient((await start(dataDir)).url);
      const b = new RegistryClient((await start(dataDir, pause.env)).url);
      const blob = randomBlob(100_000);
      const location = await patch(a, await a.startUpload('races/retry'), blob);
      // Node B gets the PUT first and is held with the bytes under their key, metadata not yet committed.
      const first = put(b, location, blob);
      await pause.reached('commit-after-storage');
      // A claimed upload takes no more bytes, on any node.
      const extra = randomBlob(10);
      const late = await a.fetch(location, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${blob.size}-${blob.size + extra.size - 1}`, 'Content-Length': String(extra.size) },
        body: bytes(extra.data),
      });
      assert.equal(late.status, 416, `a PATCH during the commit: ${late.status} ${await late.text()}`);
      // The load balancer retries the same PUT on node A.
      const retried = await put(a, location, blob);
      const retriedText = await retried.text();
      pause.resume('commit-after-storage');
      const held = await first;
      const heldText = await held.text();
      const statuses = [held.status, retried.status];
      assert.equal(statuses.filter((s) => s === 201).length, 1, `exactly one PUT commits: held ${held.status} ${heldText}, retried ${retried.status} ${retriedText}`);
      assert.ok(statuses.every((s) => s === 201 || (s >= 400 && s < 500)), `the other is refused with a client error: ${statuses}`);
      await assertPulls(a, 'races/retry', blob, 'node A');
      await assertPulls(b, 'races/retry', blob, 'node B');
    } finally {
      pause.cleanup();
    }
  });

  it('a commit whose process dies after writing its object: known while claimed, then the claim expires with the upload timeout and fsck removes the object on its second look (invariants 8 and 9)', async () => {
    const dataDir = newDir();
    const crashing = await startServer({ dataDir, env: { ...NO_GC, BERTH_CRASH_AT: 'commit-after-rename' } });
    const client = new RegistryClient(crashing.url);
    const blob = randomBlob(30_000);
    const location = await patch(client, await client.startUpload('races/dead'), blob);
    await assert.rejects(put(client, location, blob), 'the server dies before answering');
    await crashing.stop({ keepData: true });
    const [objectKey] = await blobKeys(crashing);
    assert.ok(objectKey, 'the commit wrote its object');

    const fsck = async () => {
      const res = await berth(['fsck', '--data', dataDir, '--min-age', '0', '--repair', '--json']);
      assert.ok(res.code === 0 || res.code === 1, `fsck: ${res.code} ${res.stderr}`);
      return (JSON.parse(res.stdout) as { problems: { kind: string; key: string; repaired: boolean }[] }).problems;
    };
    for (let run = 0; run < 2; run++) assert.deepEqual(await fsck(), [], 'claimed: known, not an orphan');
    assert.deepEqual(await blobKeys(crashing), [objectKey]);

    // Not stuck forever: the claimed upload expires like an abandoned one.
    const config = join(dataDir, 'short-uploads.yaml');
    writeFileSync(config, 'gc:\n  uploadTimeout: 1s\n');
    await new Promise((r) => setTimeout(r, 1100));
    const gc = await berth(['gc', '--data', dataDir, '--config', config, '--json']);
    assert.equal(gc.code, 0, gc.stderr);
    assert.equal((JSON.parse(gc.stdout) as { uploadsPurged: number }).uploadsPurged, 1);
    assert.deepEqual((await fsck()).map((p) => [p.kind, p.key, p.repaired]), [['orphan-blob', objectKey, false]], 'first look: recorded');
    assert.deepEqual((await fsck()).map((p) => [p.kind, p.key, p.repaired]), [['orphan-blob', objectKey, true]], 'second look: removed');
    assert.deepEqual(await blobKeys(crashing), []);
  });

  for (const shape of ['chunked upload', 'monolithic POST ?digest='] as const) {
    it(`fsck --repair --min-age 0 while a ${shape} is between its storage and metadata commits keeps the bytes (invariant 9)`, async () => {
      const dataDir = newDir();
      const pause = pauseControl('commit-after-storage');
      try {
        const server = await start(dataDir, pause.env);
        const client = new RegistryClient(server.url);
        const blob = randomBlob(50_000);
        const committing =
          shape === 'chunked upload'
            ? put(client, await patch(client, await client.startUpload('races/fsck'), blob), blob)
            : client.fetch(`/v2/races/fsck/blobs/uploads/?digest=${blob.digest}`, {
                method: 'POST',
                headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(blob.size) },
                body: bytes(blob.data),
              });
        await pause.reached('commit-after-storage');
        // Twice: a second run would remove what the first one took for an orphan.
        for (let run = 0; run < 2; run++) {
          const res = await berth(['fsck', '--data', dataDir, '--min-age', '0', '--repair', '--json']);
          assert.ok(res.code === 0 || res.code === 1, `fsck: ${res.code} ${res.stderr}`);
          const problems = (JSON.parse(res.stdout) as { problems: { kind: string; repaired: boolean }[] }).problems;
          assert.deepEqual(problems.filter((p) => p.repaired), [], `run ${run + 1} removed nothing`);
        }
        pause.resume('commit-after-storage');
        const res = await committing;
        assert.equal(res.status, 201, await res.text());
        await assertPulls(client, 'races/fsck', blob, shape);
        const clean = await berth(['fsck', '--data', dataDir, '--min-age', '0', '--json']);
        assert.equal(clean.code, 0, clean.stdout);
      } finally {
        pause.cleanup();
      }
    });
  }
});
