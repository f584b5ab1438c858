/**
 * `berth import` against the real reference registry (Debian's
 * docker-registry, distribution 2.8): images pushed to it with skopeo,
 * docker and plain HTTP (a multi-arch index, an OCI artifact with a subject,
 * a deleted manifest, an untagged revision), the registry stopped, its
 * storage imported, and every image pulled back from Berth with the same
 * clients, digests and bytes compared. Then a second import changes nothing
 * and fsck is clean.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { dockerRemoveImages, makeDockerArchive, makeOciLayout, podmanEnv, requireClient, run, uniqueName, type OciLayout } from '../helpers/clients.js';
import { startReferenceRegistry, type ReferenceRegistry } from '../helpers/reference-registry.js';
import { makeImage, OCI_MANIFEST, type Image } from '../helpers/registry-client.js';
import { makeDataDir, startServer, type TestServer } from '../helpers/server.js';
import { assertSameLayout, getManifest, headStatus } from './support.js';

const PLATFORMS = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64', variant: 'v8' },
];

/** Pushes an image the way every client can: POST, then PUT with the body (the reference answers absolute locations). */
async function pushImage(url: string, repo: string, image: Image, reference: string): Promise<void> {
  for (const b of [image.config, ...image.layers]) {
    const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(start.status, 202);
    const location = new URL(start.headers.get('location')!, url);
    location.searchParams.set('digest', b.digest);
    const put = await fetch(location, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(b.data) });
    assert.equal(put.status, 201, await put.text());
  }
  const res = await fetch(`${url}/v2/${repo}/manifests/${reference}`, { method: 'PUT', headers: { 'Content-Type': image.mediaType }, body: new Uint8Array(image.manifest) });
  assert.equal(res.status, 201, `push ${repo}:${reference}: ${await res.text()}`);
}

describe('berth import from the reference registry', () => {
  let work: string;
  let reference: ReferenceRegistry | undefined;
  let server: TestServer | undefined;
  let dataDir: string;
  const skopeoEnv = () => podmanEnv();
  const nonce = uniqueName();
  let multi: OciLayout;
  let single: OciLayout;
  let moved: OciLayout;
  let untagged: OciLayout;
  let subject: Image;
  let artifact: Image;
  let deleted: Image;
  let docker: { imageId: string; digest: string; local: string } | undefined;
  let missing: string | undefined;
  let pushed = false;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-import-'));
    dataDir = makeDataDir();
  });
  after(async () => {
    await reference?.stop();
    await server?.stop();
    if (docker) await dockerRemoveImages([docker.local]);
    rmSync(work, { recursive: true, force: true });
  });

  it('pushes to the reference registry with skopeo, docker and HTTP', async (t) => {
    if (!requireClient(t, 'docker-registry') || !requireClient(t, 'skopeo')) {
      missing = 'docker-registry or skopeo';
      return;
    }
    reference = await startReferenceRegistry(work, { root: join(work, 'reference') });
    const ref = reference;
    const dest = (repo: string) => `docker://${ref.host}/${repo}`;
    multi = await makeOciLayout(join(work, 'multi'), { layers: [`multi ${nonce}\n`], platforms: PLATFORMS, tag: 'v1' });
    await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', multi.ref, `${dest('lib/multi')}:v1`], { env: skopeoEnv() });
    single = await makeOciLayout(join(work, 'single'), { layers: [`single ${nonce}\n`, `second ${nonce}\n`], tag: 'v1' });
    await run('skopeo', ['copy', '--dest-tls-verify=false', single.ref, `${dest('lib/single')}:v1`], { env: skopeoEnv() });
    await run('skopeo', ['copy', '--dest-tls-verify=false', single.ref, `${dest('lib/single')}:v2`], { env: skopeoEnv() });
    // An untagged revision: the tag moves on to another image, the first stays pullable by digest.
    untagged = await makeOciLayout(join(work, 'untagged'), { layers: [`untagged ${nonce}\n`], tag: 'moving' });
    await run('skopeo', ['copy', '--dest-tls-verify=false', untagged.ref, `${dest('lib/single')}:moving`], { env: skopeoEnv() });
    moved = await makeOciLayout(join(work, 'moved'), { layers: [`moved ${nonce}\n`], tag: 'moving' });
    await run('skopeo', ['copy', '--dest-tls-verify=false', moved.ref, `${dest('lib/single')}:moving`], { env: skopeoEnv() });

    // An OCI artifact with a subject, and a manifest deleted through the API.
    subject = makeImage({ layers: 1 });
    await pushImage(ref.url, 'lib/artifacts', subject, 'v1');
    artifact = makeImage({
      layers: 1,
      artifactType: 'application/vnd.example.sbom.v1',
      subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.manifest.length },
    });
    await pushImage(ref.url, 'lib/artifacts', artifact, artifact.digest);
    deleted = makeImage({ layers: 1 });
    await pushImage(ref.url, 'lib/deleted', deleted, 'gone');
    const del = await fetch(`${ref.url}/v2/lib/deleted/manifests/${deleted.digest}`, { method: 'DELETE' });
    assert.equal(del.status, 202);

    if (requireClient(t, 'docker')) {
      const local = `berth-e2e/${uniqueName('import')}:v1`;
      const archive = await makeDockerArchive(join(work, 'docker.tar'), { layers: [`docker ${nonce}\n`, `docker two ${nonce}\n`], repoTags: [local] });
      await run('docker', ['load', '-i', archive.file]);
      const target = `${ref.host}/lib/docker:v1`;
      await run('docker', ['tag', local, target]);
      const push = await run('docker', ['push', target]);
      const digest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)?.[1];
      assert.ok(digest, push.stdout);
      await dockerRemoveImages([target]);
      docker = { imageId: archive.imageId, digest, local };
    }
    await ref.stop();
    pushed = true;
  });

  it('imports the stopped registry, skipping only the deleted manifest', async (t) => {
    if (missing) return t.skip(`needs ${missing}`);
    assert.ok(pushed, 'the images were pushed to the reference registry');
    const res = await berth(['import', join(work, 'reference'), '--data', dataDir, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const report = JSON.parse(res.stdout);
    assert.equal(report.repositories.skipped, 0);
    assert.equal(report.manifests.skipped, 0, JSON.stringify(report.skipped));
    // multi: index + 2 images; single: 1 + untagged + moved; artifacts: 2; docker: 1 (deleted: none).
    assert.equal(report.manifests.imported, 3 + 3 + 2 + (docker ? 1 : 0));
    assert.equal(report.tags.imported, 1 + 3 + 1 + (docker ? 1 : 0));
    assert.equal(report.blobs.skipped, 0);
    // All that is left out: the deleted manifest's bytes, which the reference keeps until its GC runs.
    assert.deepEqual(report.reasons, { 'blob not linked to any repository': 1 }, JSON.stringify(report.skipped));
    assert.equal(report.skipped[0].item, deleted.digest);

    server = await startServer({ dataDir, env: { BERTH_GC_ENABLED: 'false' } });
    const s = server;
    // skopeo pulls every image back byte-identical.
    const out = (name: string) => join(work, `out-${name}`);
    await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${s.host}/lib/multi:v1`, `oci:${out('multi')}:v1`], { env: skopeoEnv() });
    assertSameLayout(out('multi'), 'v1', multi);
    for (const tag of ['v1', 'v2']) {
      await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${s.host}/lib/single:${tag}`, `oci:${out(`single-${tag}`)}:${tag}`], { env: skopeoEnv() });
      assertSameLayout(out(`single-${tag}`), tag, single);
    }
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${s.host}/lib/single:moving`, `oci:${out('moved')}:moving`], { env: skopeoEnv() });
    assertSameLayout(out('moved'), 'moving', moved);
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${s.host}/lib/single@${untagged.digest}`, `oci:${out('untagged')}:moving`], { env: skopeoEnv() });
    assertSameLayout(out('untagged'), 'moving', untagged);

    // The artifact is stored unchanged and listed as a referrer of its subject.
    const a = await getManifest(s.url, 'lib/artifacts', artifact.digest);
    assert.equal(a.status, 200);
    assert.ok(a.bytes.equals(artifact.manifest));
    const referrers = (await (await fetch(`${s.url}/v2/lib/artifacts/referrers/${subject.digest}`)).json()) as { manifests: { digest: string; artifactType?: string }[] };
    assert.deepEqual(referrers.manifests.map((m) => [m.digest, m.artifactType]), [[artifact.digest, 'application/vnd.example.sbom.v1']]);
    for (const b of [...artifact.layers, artifact.config]) {
      const got = Buffer.from(await (await fetch(`${s.url}/v2/lib/artifacts/blobs/${b.digest}`)).arrayBuffer());
      assert.ok(got.equals(b.data));
    }
    // The deleted manifest stays deleted.
    assert.equal(await headStatus(s.url, 'lib/deleted', 'manifests', deleted.digest), 404);

    if (docker) {
      const target = `${s.host}/lib/docker:v1`;
      const pull = await run('docker', ['pull', target]);
      assert.match(pull.stdout, new RegExp(`Digest: ${docker.digest}`), 'docker pulls the manifest it pushed to the reference registry');
      const id = (await run('docker', ['image', 'inspect', '-f', '{{.Id}}', target])).stdout.trim();
      assert.equal(id, docker.imageId);
      await dockerRemoveImages([target]);
    }

    const fsck = await berth(['fsck', '--data', dataDir]);
    assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    assert.match(fsck.stdout, /^clean/m);
  });

  it('a second import changes nothing', async (t) => {
    if (missing || !server) return t.skip(`needs ${missing ?? 'the first import'}`);
    const res = await berth(['import', join(work, 'reference'), '--data', dataDir, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const report = JSON.parse(res.stdout);
    assert.equal(report.manifests.imported, 0);
    assert.equal(report.tags.imported, 0);
    assert.equal(report.blobs.imported + report.blobs.linked, 0);
    assert.ok(report.manifests.present > 0 && report.blobs.present > 0);
    const tags = (await (await fetch(`${server.url}/v2/lib/single/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual(tags.tags, ['moving', 'v1', 'v2']);
  });
});
