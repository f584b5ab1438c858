import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { pauseControl } from '../helpers/pause.js';
import { errorCode, makeImage, makeIndex, OCI_INDEX, RegistryClient, type Image } from '../helpers/registry-client.js';
import { startServer, TEST_METADATA, type TestServer } from '../helpers/server.js';

/** The reference registry's failure, replayed: push, delete, GC from another process, re-push, pull. */
describe('garbage collection never makes the registry lie', () => {
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    server = await startServer({ args: [] , env: { BERTH_GC_ENABLED: 'false' } });
    client = new RegistryClient(server.url);
  });
  after(() => server.stop());

  async function headStatus(repo: string, digest: string): Promise<number> {
    return (await client.fetch(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).status;
  }

  async function pullAll(repo: string, ref: string, image: Image): Promise<void> {
    const res = await client.fetch(`/v2/${repo}/manifests/${ref}`);
    assert.equal(res.status, 200);
    for (const b of [image.config, ...image.layers]) {
      const blob = await client.getBlob(repo, b.digest);
      assert.equal(blob.status, 200, `blob ${b.digest} must be pullable`);
      assert.deepEqual(Buffer.from(await blob.arrayBuffer()), b.data);
    }
  }

  for (const how of ['berth gc process', 'admin trigger'] as const) {
    it(`deleted layers answer 404 after GC via ${how}, and a re-push uploads them for real (invariant 1)`, async () => {
      const repo = `scenario/${how === 'admin trigger' ? 'admin' : 'cli'}`;
      const image = makeImage({ layers: 3 });
      await client.pushImage(repo, image, 'v1');
      const del = await client.fetch(`/v2/${repo}/manifests/${image.digest}`, { method: 'DELETE' });
      assert.equal(del.status, 202);

      if (how === 'berth gc process') {
        const gc = await berth(['gc', '--data', server.dataDir, '--grace', '0', '--json']);
        assert.equal(gc.code, 0, gc.stderr);
        const report = JSON.parse(gc.stdout);
        assert.equal(report.blobsDeleted, 4);
      } else {
        // Without a grace override the configured one (1h) applies: nothing may go yet.
        const early = await client.fetch('/admin/gc', { method: 'POST' });
        assert.equal(early.status, 200);
        for (const l of image.layers) assert.equal(await headStatus(repo, l.digest), 200);
        const res = await client.fetch('/admin/gc?grace=0', { method: 'POST' });
        assert.equal(res.status, 200);
        assert.equal((await res.json()).blobsDeleted, 4);
      }
      for (const l of [image.config, ...image.layers]) assert.equal(await headStatus(repo, l.digest), 404, 'GC deleted it: HEAD must say so');
      await client.pushImage(repo, image, 'v1');
      await pullAll(repo, 'v1', image);
    });
  }

  it('the admin trigger refuses a malformed or repeated parameter with 400, and runs nothing', async () => {
    // Found by the HTTP fuzzer: a repeated grace arrived as an array and answered 500.
    const gcRuns = async () => {
      const text = await (await client.fetch('/metrics')).text();
      return Number(/^berth_lifecycle_runs_total\{kind="gc"\} (\d+)/m.exec(text)?.[1] ?? 0);
    };
    const before = await gcRuns();
    for (const query of ['grace=x', 'grace=x&grace=1h', 'grace=0&grace=0', 'dryRun=1&dryRun=0']) {
      const res = await client.fetch(`/admin/gc?${query}`, { method: 'POST' });
      assert.equal(res.status, 400, `POST /admin/gc?${query}`);
      const body = (await res.json()) as { errors: { code: string }[] };
      assert.equal(body.errors[0]!.code, 'UNSUPPORTED');
    }
    assert.equal(await gcRuns(), before, 'no collection ran');
    assert.ok((await client.fetch('/admin/gc', { method: 'POST' })).ok); // the configured grace (1h): deletes nothing here
    assert.equal(await gcRuns(), before + 1, 'the counter counts runs (so the check above can fail)');
    assert.deepEqual(server.loggedErrors(), []);
  });

  it('dry run reports exactly what a real run then deletes, and deletes nothing', async () => {
    const repo = 'dry/run';
    const kept = makeImage();
    const dropped = makeImage();
    await client.pushImage(repo, kept, 'keep');
    await client.pushImage(repo, dropped, 'drop');
    await client.fetch(`/v2/${repo}/manifests/drop`, { method: 'DELETE' });
    const dry = await berth(['gc', '--data', server.dataDir, '--grace', '0', '--dry-run', '--verbose', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    const predicted = JSON.parse(dry.stdout);
    assert.ok(predicted.manifests.includes(`${repo}@${dropped.digest}`));
    for (const l of dropped.layers) assert.ok(predicted.blobs.includes(l.digest));
    assert.equal(await headStatus(repo, dropped.layers[0]!.digest), 200, 'a dry run deletes nothing');
    const real = await berth(['gc', '--data', server.dataDir, '--grace', '0', '--verbose', '--json']);
    const done = JSON.parse(real.stdout);
    assert.deepEqual([...done.blobs].sort(), [...predicted.blobs].sort());
    await pullAll(repo, 'keep', kept);
  });

  it('keeps children of a tagged index and referrers of a live subject; collects them once released', async () => {
    const repo = 'keep/graph';
    const a = makeImage();
    const b = makeImage();
    await client.pushImage(repo, a);
    await client.pushImage(repo, b);
    const index = makeIndex([a, b]);
    assert.equal((await client.putManifest(repo, 'multi', index.manifest, OCI_INDEX)).status, 201);
    const sig = makeImage({ layers: 1, subject: { mediaType: a.mediaType, digest: a.digest, size: a.manifest.length }, artifactType: 'application/vnd.example.sig' });
    await client.pushImage(repo, sig);
    const gc1 = await berth(['gc', '--data', server.dataDir, '--grace', '0', '--json']);
    assert.equal(JSON.parse(gc1.stdout).manifestsDeleted, 0, gc1.stdout);
    assert.equal((await client.fetch(`/v2/${repo}/manifests/${sig.digest}`)).status, 200);
    await pullAll(repo, a.digest, a);

    await client.fetch(`/v2/${repo}/manifests/multi`, { method: 'DELETE' });
    const gc2 = await berth(['gc', '--data', server.dataDir, '--grace', '0', '--json']);
    assert.equal(JSON.parse(gc2.stdout).manifestsDeleted, 4, 'index, both children and the signature');
    assert.equal((await client.fetch(`/v2/${repo}/manifests/${a.digest}`)).status, 404);
    assert.equal(await headStatus(repo, a.layers[0]!.digest), 404);
  });

  it('exposes GC counters for monitoring, counting runs of every process', async () => {
    const res = await client.fetch('/metrics');
    const text = await res.text();
    const runs = /berth_lifecycle_runs_total\{kind="gc"\} (\d+)/.exec(text);
    assert.ok(runs && Number(runs[1]) >= 3, text.slice(0, 500));
    assert.match(text, /berth_gc_blobs_deleted_total\{kind="gc"\} [1-9]/);
  });
});

describe('the background collector', () => {
  it('collects on its own schedule with the same protocol, and a re-push restores the image', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { makeDataDir, removeStorage } = await import('../helpers/server.js');
    const { rmSync } = await import('node:fs');
    const dataDir = makeDataDir();
    const config = join(dataDir, 'berth.yaml');
    writeFileSync(config, 'gc:\n  enabled: true\n  interval: 300ms\n  blobGrace: 0\n  manifestGrace: 0\n');
    const server = await startServer({ dataDir, args: ['--config', config] });
    try {
      const client = new RegistryClient(server.url);
      const image = makeImage({ layers: 2 });
      // The collector runs every 300 ms at grace 0, so a blob pushed and not yet
      // referenced may be taken before the manifest PUT (grace 0 allows it): push
      // as docker does, uploading again on MANIFEST_BLOB_UNKNOWN, until whole.
      const pushWhole = async () => {
        for (let attempt = 0; ; attempt++) {
          try {
            return await client.pushImage('bg/app', image, 'v1');
          } catch (e) {
            // A push to S3 takes long enough to lose that race a few times in a row.
            if (attempt > 20) throw e;
          }
        }
      };
      await pushWhole();
      await client.fetch(`/v2/bg/app/manifests/${image.digest}`, { method: 'DELETE' });
      const deadline = Date.now() + 10_000;
      while ((await client.fetch(`/v2/bg/app/blobs/${image.layers[0]!.digest}`, { method: 'HEAD' })).status !== 404) {
        assert.ok(Date.now() < deadline, 'the background collector did not run');
        await new Promise((r) => setTimeout(r, 100));
      }
      // Push again, as a client would after being told the layer is unknown; it
      // must end with the image whole.
      await pushWhole();
      for (const b of [image.config, ...image.layers]) {
        const res = await client.getBlob('bg/app', b.digest);
        assert.equal(res.status, 200);
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), b.data);
      }
    } finally {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
      await removeStorage(dataDir);
    }
  });
});

/**
 * Invariant 5: "it exists" is a promise. A grace of 3 s plus the registry's
 * touchInterval (1 s) is GC's cutoff, so waiting 4.2 s makes everything
 * pushed before the wait garbage unless an answer renewed it; and a GC
 * process that takes up to 4 s to start on a loaded machine still runs
 * inside the grace the renewal gave.
 */
describe('existence answers are promises (invariant 5)', () => {
  const PAST_GRACE_MS = 4200;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
    client = new RegistryClient(server.url);
  });
  after(() => server.stop());

  /** A GC pass; what it deleted (earlier tests' garbage included: check your own digests). */
  async function gc() {
    const run = await berth(['gc', '--data', server.dataDir, '--grace', '3s', '--verbose', '--json']);
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as { manifests: string[]; blobs: string[] };
  }

  it('HEAD 200 of config and layer renews their repository links: after GC the manifest PUT succeeds', async () => {
    const repo = 'promise/head';
    const image = makeImage({ layers: 1 });
    for (const b of [image.config, ...image.layers]) assert.equal((await client.pushBlob(repo, b)).status, 201);
    await sleep(PAST_GRACE_MS);
    for (const b of [image.config, ...image.layers]) {
      assert.equal((await client.fetch(`/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' })).status, 200);
    }
    const report = await gc();
    for (const b of [image.config, ...image.layers]) assert.ok(!report.blobs.includes(b.digest));
    // The links the HEADs were about must have stayed, not only the blob rows.
    const res = await client.putManifest(repo, 'v1', image.manifest, image.mediaType);
    assert.equal(res.status, 201, await res.text());
  });

  it('an untagged manifest pushed again is kept a full grace period, like a new one', async () => {
    const repo = 'promise/repush';
    const image = makeImage({ layers: 1 });
    await client.pushImage(repo, image);
    await sleep(PAST_GRACE_MS);
    assert.equal((await client.putManifest(repo, image.digest, image.manifest, image.mediaType)).status, 201);
    assert.deepEqual((await gc()).manifests.filter((m) => m.startsWith(`${repo}@`)), []);
    assert.equal((await client.fetch(`/v2/${repo}/manifests/${image.digest}`)).status, 200);
  });

  it('an index pushed after HEAD-ing its untagged children succeeds after GC', async () => {
    const repo = 'promise/index';
    const a = makeImage({ layers: 1 });
    const b = makeImage({ layers: 1 });
    await client.pushImage(repo, a);
    await client.pushImage(repo, b);
    await sleep(PAST_GRACE_MS);
    for (const m of [a, b]) {
      const res = await client.fetch(`/v2/${repo}/manifests/${m.digest}`, { method: 'HEAD', headers: { Accept: m.mediaType } });
      assert.equal(res.status, 200);
    }
    assert.deepEqual((await gc()).manifests.filter((m) => m.startsWith(`${repo}@`)), []);
    const index = makeIndex([a, b]);
    const res = await client.putManifest(repo, 'multi', index.manifest, OCI_INDEX);
    assert.equal(res.status, 201, await res.text());
  });

  it('a GC claim committed between a HEAD\'s read and its renewal gives 404, never 200', async () => {
    const pause = pauseControl('stat-after-read');
    const held = await startServer({ env: { BERTH_GC_ENABLED: 'false', ...pause.env } });
    try {
      const c = new RegistryClient(held.url);
      const image = makeImage({ layers: 1 });
      const layer = image.layers[0]!;
      assert.equal((await c.pushBlob('promise/race', layer)).status, 201);
      await sleep(PAST_GRACE_MS);
      const head = c.fetch(`/v2/promise/race/blobs/${layer.digest}`, { method: 'HEAD' });
      await pause.reached('stat-after-read');
      const run = await berth(['gc', '--data', held.dataDir, '--grace', '1s', '--json']);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(JSON.parse(run.stdout).blobsDeleted, 1, 'GC claimed the blob while the HEAD was held');
      pause.resume('stat-after-read');
      const res = await head;
      assert.equal(res.status, 404, 'the blob is gone: "exists" would be a lie');
      const put = await c.putManifest('promise/race', 'v1', image.manifest, image.mediaType);
      assert.equal(await errorCode(put), 'MANIFEST_BLOB_UNKNOWN');
    } finally {
      pause.cleanup();
      await held.stop();
    }
  });
});

/** Invariant 10: one clock. Nodes whose clocks disagree must not shorten anyone's grace. */
describe('one clock for grace periods (invariant 10)', () => {
  it('with PostgreSQL, a server whose clock is behind and a GC whose clock is ahead do not shorten the grace', async (t) => {
    if (TEST_METADATA !== 'postgres') {
      // SQLite is one machine: every process reads the same clock.
      t.skip('needs PostgreSQL (BERTH_TEST_METADATA=postgres): nodes with clocks of their own');
      return;
    }
    const hour = 3_600_000;
    const server = await startServer({ env: { BERTH_GC_ENABLED: 'false', BERTH_TEST_CLOCK_SKEW_MS: String(-hour) } });
    try {
      const client = new RegistryClient(server.url);
      const image = makeImage({ layers: 1 });
      for (const b of [image.config, ...image.layers]) assert.equal((await client.pushBlob('clock/app', b)).status, 201);
      await client.pushImage('clock/app', makeImage({ layers: 1 })); // an untagged manifest too
      // By the two nodes' own clocks the uploads are two hours old; by the database's, moments.
      const run = await berth(['gc', '--data', server.dataDir, '--grace', '90m', '--json'], { BERTH_TEST_CLOCK_SKEW_MS: String(hour) });
      assert.equal(run.code, 0, run.stderr);
      const report = JSON.parse(run.stdout);
      assert.equal(report.blobsDeleted, 0, run.stdout);
      assert.equal(report.manifestsDeleted, 0, run.stdout);
      assert.equal(report.linksRemoved, 0, run.stdout);
      const res = await client.putManifest('clock/app', 'v1', image.manifest, image.mediaType);
      assert.equal(res.status, 201, await res.text());
    } finally {
      await server.stop();
    }
  });
});
