/**
 * Every request step × lifecycle step that can touch the same blob or
 * manifest, forced with pause points (src/pause-points.ts), not left to soak
 * luck: one side is held at a named step in its own process (`berth serve`,
 * `berth gc`, `berth fsck`), the other acts, the first goes on, and the
 * outcome is asserted exactly. Runs on whichever stores the test servers use
 * (SQLite + disk by default; PostgreSQL + S3 in the scale-out pass, see
 * scripts/test-scale-out.sh).
 *
 * Invariant 2: a manifest pushed while GC claims its blobs either commits
 * first (kept) or gets MANIFEST_BLOB_UNKNOWN; never both. Invariant 3: a
 * re-upload of content GC is deleting is never lost. Invariant 5: HEAD 200,
 * a mount's 201, a manifest PUT or HEAD by digest keep what they answered
 * about for the grace. Invariant 9: fsck removes nothing metadata names or
 * a commit is about to name.
 *
 * GC runs with `--grace 0` (everything unreferenced is garbage at once)
 * where a request only has to lose the race, and with `--grace 1ms` where a
 * HEAD must renew what it answers about: a renewal is due only for what was
 * last seen a touch interval (1 s) ago, and that GC's cutoff is then 1 ms +
 * the touch interval in the past, so fixtures are made ~1.1 s old first.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { berth, type CliResult } from '../helpers/berth-cli.js';
import { assertError, blobFiles, blobKeys } from '../helpers/data-dir.js';
import { pauseControl, type PauseControl } from '../helpers/pause.js';
import { bytes, makeImage, makeIndex, OCI_INDEX, randomBlob, RegistryClient, withQuery, type Blob, type Image } from '../helpers/registry-client.js';
import { makeDataDir, removeStorage, startServer, testStore, type TestServer } from '../helpers/server.js';

const PAST_GRACE_MS = 1150;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface GcReport {
  blobsDeleted: number;
  manifestsDeleted: number;
  linksRemoved: number;
  blobs: string[];
  manifests: string[];
}

interface FsckProblem {
  kind: string;
  key: string;
  repaired: boolean;
}

function parsed<T>(run: CliResult, what: string, codes = [0]): T {
  assert.ok(codes.includes(run.code), `${what}: exit ${run.code}\n${run.stderr}\n${run.stdout}`);
  return JSON.parse(run.stdout) as T;
}

describe('request steps × lifecycle steps, forced (invariants 2, 3, 5, 9)', () => {
  const servers: TestServer[] = [];
  const pauses: PauseControl[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const p of pauses) p.cleanup();
    for (const s of servers) await s.stop({ keepData: true });
    for (const d of dirs) {
      rmSync(d, { recursive: true, force: true });
      await removeStorage(d);
    }
  });

  /** A server of its own (GC off: only the runs a test makes), optionally armed. */
  async function serve(pause?: PauseControl): Promise<{ server: TestServer; client: RegistryClient; dataDir: string }> {
    const dataDir = makeDataDir();
    dirs.push(dataDir);
    const server = await startServer({ dataDir, env: { BERTH_GC_ENABLED: 'false', ...pause?.env } });
    servers.push(server);
    return { server, client: new RegistryClient(server.url), dataDir };
  }

  /** A second server (node) on the same stores, armed: the first one pushes fixtures unhindered. */
  async function armedNode(dataDir: string, pause: PauseControl): Promise<RegistryClient> {
    const server = await startServer({ dataDir, env: { BERTH_GC_ENABLED: 'false', ...pause.env } });
    servers.push(server);
    return new RegistryClient(server.url);
  }

  function arm(...points: Parameters<typeof pauseControl>): PauseControl {
    const p = pauseControl(...points);
    pauses.push(p);
    return p;
  }

  /** `berth gc` as a separate process (started, not awaited: it may be held). */
  function gc(dataDir: string, opts: { grace?: string; pause?: PauseControl } = {}): Promise<GcReport> {
    return berth(['gc', '--data', dataDir, '--grace', opts.grace ?? '0', '--verbose', '--json'], opts.pause?.env).then((r) => parsed<GcReport>(r, 'gc'));
  }

  function fsck(dataDir: string, opts: { repair?: boolean; pause?: PauseControl } = {}): Promise<FsckProblem[]> {
    const args = ['fsck', '--data', dataDir, '--min-age', '0', '--json', ...(opts.repair ? ['--repair'] : [])];
    return berth(args, opts.pause?.env).then((r) => parsed<{ problems: FsckProblem[] }>(r, 'fsck', [0, 1]).problems);
  }

  async function assertFsckClean(dataDir: string): Promise<void> {
    assert.deepEqual(await fsck(dataDir), [], 'fsck finds metadata and storage agree');
  }

  const head = async (client: RegistryClient, repo: string, digest: string) => (await client.fetch(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).status;

  async function assertPulls(client: RegistryClient, repo: string, b: Blob, what: string): Promise<void> {
    assert.equal(await head(client, repo, b.digest), 200, `${what}: HEAD`);
    const res = await client.getBlob(repo, b.digest);
    assert.equal(res.status, 200, `${what}: GET`);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(b.data), `${what}: bytes`);
  }

  async function assertImagePulls(client: RegistryClient, repo: string, ref: string, image: Image): Promise<void> {
    const res = await client.fetch(`/v2/${repo}/manifests/${ref}`, { headers: { Accept: image.mediaType } });
    assert.equal(res.status, 200, `manifest ${repo}:${ref}`);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(image.manifest));
    for (const b of [image.config, ...image.layers]) await assertPulls(client, repo, b, `${repo}:${ref} blob`);
  }

  const mount = (client: RegistryClient, repo: string, digest: string, from: string) =>
    client.fetch(`/v2/${repo}/blobs/uploads/?mount=${digest}&from=${from}`, { method: 'POST' });

  // Request held × GC ---------------------------------------------------------

  it('mount held before its link × GC claims and deletes the source blob: 202 and an upload, never 201 (mount-before-link)', async () => {
    const pause = arm('mount-before-link');
    const { client, dataDir } = await serve(pause);
    const b = randomBlob(2000);
    await client.pushBlob('mnt/src', b);
    const mounting = mount(client, 'mnt/dst', b.digest, 'mnt/src');
    await pause.reached('mount-before-link');
    assert.deepEqual((await gc(dataDir)).blobs, [b.digest], 'GC deleted the source blob while the mount was held');
    pause.resume('mount-before-link');
    const res = await mounting;
    assert.equal(res.status, 202, `a mount of a deleted blob falls back to an upload: ${res.status} ${await res.text()}`);
    const location = res.headers.get('location')!;
    assert.match(location, /^\/v2\/mnt\/dst\/blobs\/uploads\/[^/?]+/);
    assert.equal(await head(client, 'mnt/dst', b.digest), 404);
    assert.equal(await head(client, 'mnt/src', b.digest), 404);
    // The client uploads for real through the session it was given.
    const put = await client.fetch(withQuery(location, `digest=${b.digest}`), {
      method: 'PUT',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
      body: bytes(b.data),
    });
    assert.equal(put.status, 201, await put.text());
    await assertPulls(client, 'mnt/dst', b, 'uploaded after the fallback');
    await assertFsckClean(dataDir);
  });

  it('manifest PUT held before its transaction × GC deletes its blobs: MANIFEST_BLOB_UNKNOWN, nothing stored (manifest-before-put)', async () => {
    const pause = arm('manifest-before-put');
    const { server, client, dataDir } = await serve(pause);
    const image = makeImage({ layers: 1 });
    for (const b of [image.config, ...image.layers]) await client.pushBlob('mput/app', b);
    const putting = client.putManifest('mput/app', 'v1', image.manifest, image.mediaType);
    await pause.reached('manifest-before-put');
    const report = await gc(dataDir);
    assert.deepEqual(report.blobs.sort(), [image.config.digest, image.layers[0]!.digest].sort(), 'GC deleted both blobs while the PUT was held');
    pause.resume('manifest-before-put');
    await assertError(await putting, 400, 'MANIFEST_BLOB_UNKNOWN');
    assert.equal((await client.fetch('/v2/mput/app/manifests/v1')).status, 404, 'no manifest names the deleted blobs');
    assert.deepEqual(await blobKeys(server), []);
    // The client uploads again, and then the push succeeds.
    await client.pushImage('mput/app', image, 'v1');
    await assertImagePulls(client, 'mput/app', 'v1', image);
    await assertFsckClean(dataDir);
  });

  it('index PUT held before its transaction × GC deletes its untagged children: MANIFEST_BLOB_UNKNOWN (manifest-before-put)', async () => {
    const pause = arm('manifest-before-put');
    const { client, dataDir } = await serve();
    const held = await armedNode(dataDir, pause);
    const a = makeImage({ layers: 1 });
    const b = makeImage({ layers: 1 });
    await client.pushImage('mput/multi', a);
    await client.pushImage('mput/multi', b);
    const index = makeIndex([a, b]);
    const putting = held.putManifest('mput/multi', 'multi', index.manifest, OCI_INDEX);
    await pause.reached('manifest-before-put');
    assert.deepEqual((await gc(dataDir)).manifests.sort(), [`mput/multi@${a.digest}`, `mput/multi@${b.digest}`].sort());
    pause.resume('manifest-before-put');
    await assertError(await putting, 400, 'MANIFEST_BLOB_UNKNOWN');
    assert.equal((await client.fetch('/v2/mput/multi/manifests/multi')).status, 404);
    await assertFsckClean(dataDir);
  });

  it('upload held between its bytes and its metadata × GC deletes the old blob of that digest: 201, and the new bytes pull (commit-after-storage)', async () => {
    const pause = arm('commit-after-storage');
    const { server, client, dataDir } = await serve();
    const held = await armedNode(dataDir, pause);
    const b = randomBlob(3000);
    await client.pushBlob('reup/app', b);
    const [oldKey] = await blobFiles(server, b.digest);
    const again = held.pushBlob('reup/app', b).catch((e: Error) => e);
    await pause.reached('commit-after-storage');
    assert.deepEqual((await gc(dataDir)).blobs, [b.digest], 'GC deleted the old blob while the re-upload was held');
    pause.resume('commit-after-storage');
    const res = await again;
    assert.ok(!(res instanceof Error), `the re-upload commits: ${String(res)}`);
    assert.equal(res.status, 201);
    await assertPulls(client, 'reup/app', b, 're-uploaded');
    const keys = await blobFiles(server, b.digest);
    assert.equal(keys.length, 1);
    assert.notEqual(keys[0], oldKey, 'the re-upload wrote a key of its own');
    await assertFsckClean(dataDir);
  });

  // GC held × requests ----------------------------------------------------------

  it('GC held after listing blob candidates × HEAD, mount and manifest PUT re-reference them: each claim re-validates and keeps them (gc-after-candidates)', async () => {
    const { client, dataDir } = await serve();
    const headed = randomBlob(1000);
    const mounted = randomBlob(1000);
    const image = makeImage({ layers: 1 });
    const untouched = randomBlob(1000);
    for (const b of [headed, mounted, untouched, image.config, ...image.layers]) await client.pushBlob('cand/app', b);
    await sleep(PAST_GRACE_MS);
    const pause = arm('gc-after-candidates');
    const run = gc(dataDir, { grace: '1ms', pause });
    await pause.reached('gc-after-candidates');
    assert.equal(await head(client, 'cand/app', headed.digest), 200);
    const m = await mount(client, 'cand/other', mounted.digest, 'cand/app');
    assert.equal(m.status, 201, await m.text());
    const put = await client.putManifest('cand/app', 'v1', image.manifest, image.mediaType);
    assert.equal(put.status, 201, await put.text());
    pause.resume('gc-after-candidates');
    const report = await run;
    // The same pass deleted what nothing re-referenced: it was past the grace for all of them.
    assert.deepEqual(report.blobs, [untouched.digest]);
    await assertPulls(client, 'cand/app', headed, 'said to exist by HEAD');
    await assertPulls(client, 'cand/other', mounted, 'mounted');
    await assertImagePulls(client, 'cand/app', 'v1', image);
    // The mount renewed the blob and its link into cand/other; cand/app's stale link went.
    assert.equal(await head(client, 'cand/app', mounted.digest), 404);
    assert.equal(await head(client, 'cand/app', untouched.digest), 404);
    await assertFsckClean(dataDir);
  });

  it('GC held after listing untagged manifests × HEAD by digest, tag PUT and index PUT re-reference them: kept (gc-after-manifest-candidates)', async () => {
    const { client, dataDir } = await serve();
    const [headed, tagged, child, untouched] = [0, 1, 2, 3].map(() => makeImage({ layers: 1 }));
    for (const im of [headed, tagged, child, untouched]) await client.pushImage('mcand/app', im!);
    await sleep(PAST_GRACE_MS);
    const pause = arm('gc-after-manifest-candidates');
    const run = gc(dataDir, { grace: '1ms', pause });
    await pause.reached('gc-after-manifest-candidates');
    const h = await client.fetch(`/v2/mcand/app/manifests/${headed!.digest}`, { method: 'HEAD', headers: { Accept: headed!.mediaType } });
    assert.equal(h.status, 200);
    assert.equal((await client.putManifest('mcand/app', 'v1', tagged!.manifest, tagged!.mediaType)).status, 201);
    const index = makeIndex([child!]);
    assert.equal((await client.putManifest('mcand/app', 'multi', index.manifest, OCI_INDEX)).status, 201);
    pause.resume('gc-after-manifest-candidates');
    const report = await run;
    assert.deepEqual(report.manifests, [`mcand/app@${untouched!.digest}`]);
    await assertImagePulls(client, 'mcand/app', headed!.digest, headed!);
    await assertImagePulls(client, 'mcand/app', 'v1', tagged!);
    await assertImagePulls(client, 'mcand/app', child!.digest, child!);
    assert.equal((await client.fetch(`/v2/mcand/app/manifests/${untouched!.digest}`)).status, 404);
    await assertFsckClean(dataDir);
  });

  it('GC held after claiming a blob × HEAD, GET, mount, manifest PUT and a re-upload of it: gone until uploaded again, and the upload is kept (gc-after-claim)', async () => {
    const { server, client, dataDir } = await serve();
    const b = randomBlob(4000);
    await client.pushBlob('claim/app', b);
    const [oldKey] = await blobFiles(server, b.digest);
    const pause = arm('gc-after-claim');
    const run = gc(dataDir, { pause });
    await pause.reached('gc-after-claim');
    // Marked deleting, bytes still stored: nobody is told it exists.
    assert.deepEqual(await blobFiles(server, b.digest), [oldKey], 'the claimed bytes are still there');
    assert.equal(await head(client, 'claim/app', b.digest), 404);
    assert.equal((await client.getBlob('claim/app', b.digest)).status, 404);
    const m = await mount(client, 'claim/other', b.digest, 'claim/app');
    assert.equal(m.status, 202, `mount of a blob being deleted: ${m.status}`);
    const config = randomBlob(100);
    await client.pushBlob('claim/app', config);
    const image = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: b.digest, size: b.size }],
    };
    const manifest = Buffer.from(JSON.stringify(image));
    await assertError(await client.putManifest('claim/app', 'v1', manifest, image.mediaType), 400, 'MANIFEST_BLOB_UNKNOWN');
    // Uploaded again while GC holds its claim: a new key, which GC does not own.
    assert.equal((await client.pushBlob('claim/app', b)).status, 201);
    assert.equal(await head(client, 'claim/app', b.digest), 200);
    pause.resume('gc-after-claim');
    assert.deepEqual((await run).blobs, [b.digest], 'GC deleted what it claimed: the old object');
    const keys = await blobFiles(server, b.digest);
    assert.equal(keys.length, 1);
    assert.notEqual(keys[0], oldKey);
    await assertPulls(client, 'claim/app', b, 're-uploaded during the claim');
    assert.equal((await client.putManifest('claim/app', 'v1', manifest, image.mediaType)).status, 201);
    await assertFsckClean(dataDir);
  });

  // fsck held × requests ------------------------------------------------------

  it('fsck held after listing an object × a push committing new objects and GC deleting the listed one: nothing named is removed (fsck-after-listing)', async () => {
    const { server, client, dataDir } = await serve();
    const listed = randomBlob(1500);
    await client.pushBlob('fsck/app', listed);
    const pause = arm('fsck-after-listing');
    const checking = fsck(dataDir, { repair: true, pause });
    await pause.reached('fsck-after-listing');
    const image = makeImage({ layers: 2 });
    await client.pushImage('fsck/app', image, 'v1');
    assert.deepEqual((await gc(dataDir)).blobs, [listed.digest], 'GC deleted the object fsck had listed');
    pause.resume('fsck-after-listing');
    const problems = await checking;
    assert.deepEqual(problems.filter((p) => p.repaired), [], 'this run removed nothing');
    assert.deepEqual(problems, [], 'and reports no drift: the object GC deleted is not an orphan');
    // A second repair run (which would remove what the first recorded) keeps everything too.
    assert.deepEqual(await fsck(dataDir, { repair: true }), []);
    await assertImagePulls(client, 'fsck/app', 'v1', image);
    assert.equal((await blobKeys(server)).length, 3);
  });

  it('fsck held after listing blob records × GC deletes one of them: not reported missing, nothing forgotten (fsck-after-records)', async () => {
    const { client, dataDir } = await serve();
    const gone = randomBlob(1200);
    const kept = makeImage({ layers: 1 });
    await client.pushBlob('fsck/records', gone);
    await client.pushImage('fsck/records', kept, 'v1');
    const pause = arm('fsck-after-records');
    const checking = fsck(dataDir, { repair: true, pause });
    await pause.reached('fsck-after-records');
    assert.deepEqual((await gc(dataDir)).blobs, [gone.digest], 'GC deleted a blob fsck had listed');
    pause.resume('fsck-after-records');
    assert.deepEqual(await checking, [], 'GC\'s deletion is not drift');
    assert.equal(await head(client, 'fsck/records', gone.digest), 404);
    await assertImagePulls(client, 'fsck/records', 'v1', kept);
    await assertFsckClean(dataDir);
  });

  it('fsck held before removing an orphan × a commit of the same content and a PUT to the orphan\'s upload: the commit keeps its own key, the PUT is refused (fsck-before-remove)', async () => {
    const { server, client, dataDir } = await serve();
    const b = randomBlob(2500);
    // An orphan: bytes a commit wrote under its key whose claim then went (a crashed commit whose upload expired).
    const orphanUpload = randomUUID();
    const orphanKey = await testStore(dataDir).writeBlob!(orphanUpload, b.digest, Readable.from([b.data]), b.size, () => {});
    assert.deepEqual((await fsck(dataDir, { repair: true })).map((p) => [p.kind, p.key, p.repaired]), [['orphan-blob', orphanKey, false]], 'first look: recorded');
    const pause = arm('fsck-before-remove');
    const checking = fsck(dataDir, { repair: true, pause });
    await pause.reached('fsck-before-remove');
    // Nobody can claim the orphan's key: its upload is unknown.
    const retried = await client.fetch(`/v2/fsck/app/blobs/uploads/${orphanUpload}?digest=${b.digest}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
      body: bytes(b.data),
    });
    await assertError(retried, 404, 'BLOB_UPLOAD_UNKNOWN');
    // The same content pushed now commits under a key of its own.
    assert.equal((await client.pushBlob('fsck/app', b)).status, 201);
    pause.resume('fsck-before-remove');
    assert.deepEqual((await checking).map((p) => [p.kind, p.key, p.repaired]), [['orphan-blob', orphanKey, true]], 'second look: the orphan, and only it, removed');
    const keys = await blobFiles(server, b.digest);
    assert.equal(keys.length, 1);
    assert.notEqual(keys[0], orphanKey);
    await assertPulls(client, 'fsck/app', b, 'committed while fsck was about to remove the orphan');
    await assertFsckClean(dataDir);
  });
});
