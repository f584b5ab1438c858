/**
 * skopeo against Berth: a multi-arch OCI index copied in and back out with
 * every digest preserved, tag listing, raw inspection, and deletion.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeOciLayout, podmanEnv, requireClient, run, uniqueName } from '../helpers/clients.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { assertSameLayout, getManifest, headStatus } from './support.js';

const PLATFORMS = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64', variant: 'v8' },
];

describe('skopeo', () => {
  let server: TestServer | undefined;
  let work: string;
  const env = () => podmanEnv();

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-skopeo-'));
    server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
  });
  after(async () => {
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('copies a multi-arch index in and back out with every blob and manifest byte-identical', async (t) => {
    if (!requireClient(t, 'skopeo')) return;
    const s = server!;
    const repo = `e2e/${uniqueName('skopeo')}`;
    const nonce = uniqueName();
    const layout = await makeOciLayout(join(work, 'src'), {
      layers: [`shared base ${nonce}\n`, { path: 'etc/shared.conf', content: `shared ${nonce}\n` }],
      platforms: PLATFORMS,
      tag: 'v1',
    });

    const copyIn = await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', layout.ref, `docker://${s.host}/${repo}:v1`], { env: env() });
    assert.match(copyIn.stdout, /Copying 2 of 2 images in list/);
    assert.doesNotMatch(copyIn.stdout, /skipped: already exists/, 'nothing was in Berth before');

    // Over HTTP: the tag serves the index byte for byte, each child manifest and blob is there.
    const index = await getManifest(s.url, repo, 'v1');
    assert.equal(index.status, 200);
    assert.equal(index.digest, layout.digest);
    assert.equal(index.contentType, 'application/vnd.oci.image.index.v1+json');
    assert.ok(index.bytes.equals(layout.indexBytes!), 'the index is stored unchanged');
    for (const img of layout.images) {
      const m = await getManifest(s.url, repo, img.manifest.digest);
      assert.equal(m.status, 200);
      assert.ok(m.bytes.equals(img.manifestBytes));
    }
    for (const digest of layout.blobDigests) assert.equal(await headStatus(s.url, repo, 'blobs', digest), 200, digest);

    // And back out, into a fresh layout.
    const outDir = join(work, 'out');
    const copyOut = await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${s.host}/${repo}:v1`, `oci:${outDir}:v1`], { env: env() });
    assert.match(copyOut.stdout, /Writing manifest list to image destination/);
    assertSameLayout(outDir, 'v1', layout);
  });

  it('lists tags, inspects raw manifests, and deletes a manifest', async (t) => {
    if (!requireClient(t, 'skopeo')) return;
    const s = server!;
    const repo = `e2e/${uniqueName('skopeo')}`;
    const layout = await makeOciLayout(join(work, 'tags'), { layers: [`tags ${uniqueName()}\n`], platforms: PLATFORMS, tag: 'v1' });
    const dest = `docker://${s.host}/${repo}`;
    await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', layout.ref, `${dest}:v1`], { env: env() });
    // Registry to registry: a second tag for the same index, and an unrelated single image.
    await run('skopeo', ['copy', '--all', '--src-tls-verify=false', '--dest-tls-verify=false', `${dest}:v1`, `${dest}:v2`], { env: env() });
    const single = await makeOciLayout(join(work, 'single'), { layers: [`single ${uniqueName()}\n`], tag: 'other' });
    await run('skopeo', ['copy', '--dest-tls-verify=false', single.ref, `${dest}:other`], { env: env() });

    const listTags = async () =>
      (JSON.parse((await run('skopeo', ['list-tags', '--tls-verify=false', dest], { env: env() })).stdout) as { Tags: string[] }).Tags;
    assert.deepEqual(await listTags(), ['other', 'v1', 'v2']);

    const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `${dest}:v2`], { env: env() });
    assert.equal(raw.stdout, layout.indexBytes!.toString('utf8'), 'inspect --raw returns the index bytes unchanged');
    const child = layout.images[1]!;
    const rawChild = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `${dest}@${child.manifest.digest}`], { env: env() });
    assert.equal(rawChild.stdout, child.manifestBytes.toString('utf8'));
    const config = await run('skopeo', ['inspect', '--config', '--raw', '--tls-verify=false', `${dest}:other`], { env: env() });
    assert.equal(config.stdout, single.images[0]!.configBytes.toString('utf8'));

    // skopeo delete resolves the tag and deletes the manifest by digest: both tags of the index go.
    await run('skopeo', ['delete', '--tls-verify=false', `${dest}:v2`], { env: env() });
    assert.equal(await headStatus(s.url, repo, 'manifests', layout.digest), 404);
    for (const tag of ['v1', 'v2']) {
      const gone = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `${dest}:${tag}`], { env: env(), allowFailure: true });
      assert.notEqual(gone.code, 0);
      assert.match(gone.stderr, /manifest unknown/i, gone.stderr);
    }
    assert.deepEqual(await listTags(), ['other']);
    const other = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `${dest}:other`], { env: env() });
    assert.equal(other.stdout, single.images[0]!.manifestBytes.toString('utf8'), 'the other tag is untouched');
  });

  it('is refused by a registry with deletes turned off', async (t) => {
    if (!requireClient(t, 'skopeo')) return;
    const readOnly = await startServer({ args: ['--no-deletes'], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const repo = `e2e/${uniqueName('skopeo')}`;
      const layout = await makeOciLayout(join(work, 'nodel'), { layers: [`nodel ${uniqueName()}\n`], tag: 'v1' });
      const dest = `docker://${readOnly.host}/${repo}:v1`;
      await run('skopeo', ['copy', '--dest-tls-verify=false', layout.ref, dest], { env: env() });
      const del = await run('skopeo', ['delete', '--tls-verify=false', dest], { env: env(), allowFailure: true });
      assert.notEqual(del.code, 0, 'the delete is refused');
      assert.match(del.stderr, /UNSUPPORTED.*405/s, del.stderr);
      assert.equal(await headStatus(readOnly.url, repo, 'manifests', layout.digest), 200, 'and the manifest is still there');
    } finally {
      await readOnly.stop();
    }
  });
});
