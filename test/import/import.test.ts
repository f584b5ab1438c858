/**
 * `berth import` on reference-registry trees written directly: a tree
 * damaged on purpose (each kind of damage skipped, counted and named, the
 * rest imported), --dry-run, --repository, --no-verify, --incremental, and
 * an import killed between storing a blob and recording it, then resumed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { ReferenceTree } from '../helpers/reference-tree.js';
import { BERTH_BIN, makeDataDir, metadataArgs, startServer, storageArgs, TEST_STORAGE } from '../helpers/server.js';

async function importJson(args: string[], env: Record<string, string> = {}) {
  const res = await berth(['import', ...args, '--json'], env);
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout);
}

async function fsckClean(dataDir: string): Promise<void> {
  const fsck = await berth(['fsck', '--data', dataDir]);
  assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
}

describe('berth import of a damaged tree', () => {
  let work: string;
  let tree: ReferenceTree;
  let good: ReturnType<ReferenceTree['image']>;
  const made: string[] = [];

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'berth-import-'));
    tree = new ReferenceTree(join(work, 'source'));
    good = tree.image('good/app', 'v1', ['good layer\n', 'second good layer\n']);
    tree.upload('good/app', '6b1e36d1-1b1f-4f6a-9b4c-0d7f3a7e4c11', 'half an upload');
    tree.raw('repositories/good/app/_layers/sha256/not-a-digest/link', 'garbage');
    tree.raw('blobs/sha256/junk.txt', 'garbage');
    // A tag name the grammar refuses, a tag with no current link, a revision link holding garbage.
    tree.tag('good/app', '-bad', good.digest);
    tree.raw('repositories/good/app/_manifests/tags/empty/index/sha256/x/link', good.digest);
    tree.raw(`repositories/good/app/_manifests/revisions/sha256/${'e'.repeat(64)}/link`, 'not a digest');

    // A layer whose data file is gone: the blob, its manifest and its tag are skipped.
    const missing = tree.image('damaged/missing', 'v1', ['missing layer\n']);
    unlinkSync(tree.dataPath(missing.layers[0]!));
    // A link to a blob that never had data.
    tree.linkLayer('damaged/dangling', `sha256:${'d'.repeat(64)}`);
    // A layer whose bytes do not match its digest.
    const corrupt = tree.image('damaged/corrupt', 'v1', ['corrupt layer\n']);
    writeFileSync(tree.dataPath(corrupt.layers[0]!), 'something else\n');
    // A schema 1 manifest, tagged.
    const schema1 = tree.blob(JSON.stringify({ schemaVersion: 1, name: 'damaged/old', tag: 'old', fsLayers: [], history: [] }));
    tree.revision('damaged/old', schema1);
    tree.tag('damaged/old', 'old', schema1);
    // A tag whose revision link was removed (a manifest deleted under it).
    const gone = tree.image('damaged/gone', 'v1', ['gone layer\n']);
    unlinkSync(join(tree.base, 'repositories/damaged/gone/_manifests/revisions/sha256', gone.digest.slice(7), 'link'));
    // An index whose child is not in the repository.
    const elsewhere = tree.image('damaged/elsewhere', undefined, ['child layer\n']);
    const index = tree.blob(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: elsewhere.digest, size: elsewhere.manifest.length }],
      }),
    );
    tree.revision('damaged/index', index);
    tree.tag('damaged/index', 'v1', index);
    // A repository name Berth refuses, and a blob nothing links.
    tree.image('Bad/Name', 'v1', ['bad name layer\n']);
    tree.blob('nobody links this\n');
  });
  after(() => {
    rmSync(work, { recursive: true, force: true });
    for (const d of made) rmSync(d, { recursive: true, force: true });
  });

  const dataDir = () => {
    const d = makeDataDir();
    made.push(d);
    return d;
  };

  it('imports what is sound and names everything else with its reason', async () => {
    const data = dataDir();
    const report = await importJson([tree.root, '--data', data]);
    assert.deepEqual(
      Object.fromEntries(Object.entries(report.reasons).sort()),
      Object.fromEntries(
        Object.entries({
          'invalid repository name': 1,
          'blob data missing': 2, // damaged/missing's layer, damaged/dangling's link
          'blob data does not match its digest': 1,
          'schema 1 manifest': 1,
          'manifest references a blob that was not imported': 2, // damaged/missing, damaged/corrupt
          'index references a manifest that was not imported': 1,
          "tag's manifest was not imported": 4, // missing, corrupt, old, index
          "tag's revision is gone": 1,
          'upload in progress': 1,
          'invalid tag name': 1,
          'tag link missing or unreadable': 1,
          'link file unreadable': 1,
          // damaged/gone's manifest and Bad/Name's blobs (config, layer, manifest) are linked by nothing imported.
          'blob not linked to any repository': 5,
        }).sort(),
      ),
    );
    assert.equal(report.uploads, 1);
    // good/app whole; damaged/gone and damaged/elsewhere's manifests; the blobs of every readable image.
    assert.equal(report.manifests.imported, 2);
    assert.equal(report.tags.imported, 1);
    const text = await berth(['import', tree.root, '--data', data, '--verbose']);
    assert.match(text.stdout, /skipped blob damaged\/corrupt sha256:[0-9a-f]{64}: blob data does not match its digest \(sha256:/);
    assert.match(text.stdout, /skipped repository Bad\/Name -: invalid repository name/);
    assert.match(text.stdout, /skipped tag damaged\/gone v1: tag's revision is gone/);
    await fsckClean(data);

    const server = await startServer({ dataDir: data, env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const m = await fetch(`${server.url}/v2/good/app/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(m.status, 200);
      assert.ok(Buffer.from(await m.arrayBuffer()).equals(good.manifest));
      for (const d of [good.config, ...good.layers]) assert.equal((await fetch(`${server.url}/v2/good/app/blobs/${d}`, { method: 'HEAD' })).status, 200);
      assert.equal((await fetch(`${server.url}/v2/damaged/missing/manifests/v1`)).status, 404);
    } finally {
      await server.stop();
    }
  });

  it('--dry-run reports the same and writes nothing; --repository imports a subset', async () => {
    const data = dataDir();
    const dry = await importJson([tree.root, '--data', data, '--dry-run']);
    assert.equal(dry.dryRun, true);
    assert.equal(dry.manifests.imported, 2);
    assert.equal(dry.reasons['blob data does not match its digest'], 1);
    const after = await importJson([tree.root, '--data', data, '--repository', 'good/app']);
    assert.equal(after.manifests.imported, 1, 'the dry run recorded nothing');
    assert.equal(after.manifests.present, 0);
    assert.equal(after.repositories.imported, 1);
    assert.equal(after.unlinkedBlobs, 0, 'a subset does not judge the rest of the source');
  });

  it('--no-verify imports linked bytes unchecked, says so, and fsck then finds the corrupt blob', async (t) => {
    const data = dataDir();
    const res = await berth(['import', tree.root, '--data', data, '--no-verify', '--repository', 'damaged/corrupt']);
    assert.equal(res.code, 0, res.stderr);
    if (TEST_STORAGE === 's3') {
      // Into S3 the blobs are streamed, hence hashed on the way: the corrupt one is refused all the same.
      assert.match(res.stdout, /streamed blobs always are/);
      assert.match(res.stdout, /1 +blob data does not match its digest/);
      return t.skip('blobs are streamed into S3 and always verified');
    }
    assert.match(res.stdout, /blob digests NOT checked/);
    assert.match(res.stdout, /manifests: +1 imported/);
    const fsck = await berth(['fsck', '--data', data]);
    assert.equal(fsck.code, 1);
    assert.match(fsck.stdout, /corrupt/);
  });

  it('--incremental removes tags deleted in the source since the last import', async () => {
    const work2 = mkdtempSync(join(tmpdir(), 'berth-import-inc-'));
    made.push(work2);
    const src = new ReferenceTree(work2);
    const a = src.image('inc/app', 'v1', ['inc one\n']);
    src.tag('inc/app', 'v2', a.digest);
    const data = dataDir();
    assert.equal((await importJson([work2, '--data', data])).tags.imported, 2);
    rmSync(join(src.base, 'repositories/inc/app/_manifests/tags/v2'), { recursive: true });
    const b = src.image('inc/app', 'v1', ['inc two\n']); // v1 moves on
    const plain = await importJson([work2, '--data', data]);
    assert.equal(plain.tags.imported, 1, 'the moved tag');
    assert.equal(plain.tags.removed, 0, 'without --incremental nothing is removed');
    const inc = await importJson([work2, '--data', data, '--incremental']);
    assert.equal(inc.tags.removed, 1);
    const server = await startServer({ dataDir: data, env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const tags = (await (await fetch(`${server.url}/v2/inc/app/tags/list`)).json()) as { tags: string[] };
      assert.deepEqual(tags.tags, ['v1']);
      const v1 = await fetch(`${server.url}/v2/inc/app/manifests/v1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(v1.headers.get('docker-content-digest'), b.digest);
    } finally {
      await server.stop();
    }
  });

  it('an import killed between storing a blob and recording it finishes when run again', async () => {
    const data = dataDir();
    const killed = await berth(['import', tree.root, '--data', data, '--repository', 'good/app', '--concurrency', '1'], {
      BERTH_CRASH_AT: 'import-after-blob-bytes',
    });
    assert.notEqual(killed.code, 0, 'the first run was killed');
    const resumed = await importJson([tree.root, '--data', data, '--repository', 'good/app']);
    assert.equal(resumed.manifests.imported, 1);
    assert.equal(resumed.tags.imported, 1);
    assert.equal(resumed.blobs.imported + resumed.blobs.present, 3);
    const again = await importJson([tree.root, '--data', data, '--repository', 'good/app']);
    assert.equal(again.manifests.imported + again.tags.imported + again.blobs.imported + again.blobs.linked, 0, 'a third run changes nothing');
    await fsckClean(data);
    // The killed run's object was claimed before it was written: fsck knows
    // its key even with no minimum age (it goes when the claim expires, as
    // an abandoned upload's would).
    const strict = await berth(['fsck', '--data', data, '--min-age', '0']);
    assert.equal(strict.code, 0, strict.stdout + strict.stderr);
  });

  it('an import killed with SIGKILL mid-run finishes when run again, and a third run changes nothing', async () => {
    const work3 = mkdtempSync(join(tmpdir(), 'berth-import-kill-'));
    made.push(work3);
    const src = new ReferenceTree(work3);
    const images = 120;
    for (let i = 0; i < images; i++) src.image(`kill/app-${i % 30}`, `v${Math.floor(i / 30)}`, [`kill layer ${i}\n`, 'shared base\n']);
    const data = dataDir();
    const storage = storageArgs(data);
    const child = spawn(process.execPath, [BERTH_BIN, 'import', work3, '--data', data, '--concurrency', '2', ...(await metadataArgs(data)), ...storage.args], {
      env: { ...process.env, ...storage.env },
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    // Killed once it is under way: some blobs stored (on disk) or after a moment (S3).
    const deadline = Date.now() + 20_000;
    const started = () => {
      const dir = join(data, 'blobs', 'sha256');
      return existsSync(dir) && readdirSync(dir).length >= 3;
    };
    while (Date.now() < deadline && (TEST_STORAGE === 's3' ? Date.now() < deadline - 19_000 : !started())) await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGKILL');
    assert.equal(await exited, null, 'the first run was killed before it finished');
    const resumed = await importJson([work3, '--data', data]);
    assert.equal(resumed.manifests.imported + resumed.manifests.present, images);
    assert.equal(resumed.tags.imported + resumed.tags.present, images);
    const again = await importJson([work3, '--data', data]);
    assert.equal(again.manifests.imported + again.tags.imported + again.blobs.imported + again.blobs.linked, 0);
    await fsckClean(data);
  });
});
