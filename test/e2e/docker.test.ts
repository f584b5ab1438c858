/**
 * docker against Berth: load a multi-layer image, push it, remove it locally,
 * pull it back, and check that what Berth stores is exactly what docker sent.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dockerRemoveImages, makeDockerArchive, requireClient, run, uniqueName } from '../helpers/clients.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { dockerPushedDigest, dockerPushStatuses, getImageManifest, shortId, verifyImageBlobs } from './support.js';

describe('docker push and pull', () => {
  let server: TestServer | undefined;
  let work: string;
  const images: string[] = [];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-docker-'));
    server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
  });
  after(async () => {
    await dockerRemoveImages(images).catch(() => {});
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('round-trips a 4-layer image: same image ID, every layer pullable with its digest', async (t) => {
    if (!requireClient(t, 'docker')) return;
    const s = server!;
    const repo = `e2e/${uniqueName('docker')}`;
    const local = `berth-e2e/${uniqueName('src')}:loaded`;
    const ref = `${s.host}/${repo}:v1`;
    const ref2 = `${s.host}/${repo}:v2`;
    images.push(local, ref, ref2);
    const nonce = uniqueName();
    const archive = await makeDockerArchive(join(work, 'image.tar'), {
      layers: [
        `base ${nonce}\n`,
        { path: 'etc/app.conf', content: `conf ${nonce}\n` },
        Buffer.alloc(64 * 1024, nonce), // compressible, bigger than one read chunk once gunzipped
        { path: 'bin/app', content: `#!/bin/sh\necho ${nonce}\n` },
      ],
      repoTags: [local],
    });

    const load = await run('docker', ['load', '-i', archive.file]);
    assert.match(load.stdout, /Loaded image/);
    await run('docker', ['tag', local, ref]);

    const push = await run('docker', ['push', ref]);
    const statuses = dockerPushStatuses(push.stdout);
    for (const diffId of archive.diffIds) {
      assert.deepEqual(statuses.get(shortId(diffId))?.at(-1), 'Pushed', `layer ${diffId} uploaded:\n${push.stdout}`);
    }
    const pushedDigest = dockerPushedDigest(push.stdout, 'v1');

    // What Berth stores is what docker pushed.
    const { manifest, digest } = await getImageManifest(s.url, repo, 'v1');
    assert.equal(digest, pushedDigest, 'the tag resolves to the manifest docker pushed');
    assert.equal(manifest.config.digest, archive.imageId, 'the config is the image docker loaded');
    assert.equal(manifest.layers.length, archive.diffIds.length);
    await verifyImageBlobs(s.url, repo, manifest, archive.diffIds);
    const byDigest = await getImageManifest(s.url, repo, pushedDigest);
    assert.equal(byDigest.digest, pushedDigest);

    // A second tag of the same image: this time the blobs really exist, so docker may skip them.
    await run('docker', ['tag', local, ref2]);
    const push2 = await run('docker', ['push', ref2]);
    const statuses2 = dockerPushStatuses(push2.stdout);
    for (const diffId of archive.diffIds) {
      assert.equal(statuses2.get(shortId(diffId))?.at(-1), 'Layer already exists', push2.stdout);
    }
    assert.equal(dockerPushedDigest(push2.stdout, 'v2'), pushedDigest);
    const tags = (await (await fetch(`${s.url}/v2/${repo}/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual([...tags.tags].sort(), ['v1', 'v2']);

    // Remove every local copy (layers too), then pull from Berth.
    await run('docker', ['rmi', '-f', local, ref, ref2]);
    const gone = await run('docker', ['image', 'inspect', ref], { allowFailure: true });
    assert.notEqual(gone.code, 0, 'the image is gone locally before the pull');

    const pull = await run('docker', ['pull', ref]);
    assert.match(pull.stdout, new RegExp(`Digest: ${pushedDigest}`));
    for (const layer of manifest.layers) assert.match(pull.stdout, new RegExp(`${shortId(layer.digest)}: Pull complete`), pull.stdout);
    const id = (await run('docker', ['image', 'inspect', '-f', '{{.Id}}', ref])).stdout.trim();
    assert.equal(id, archive.imageId, 'the pulled image is the one loaded');
    const rootfs = JSON.parse((await run('docker', ['image', 'inspect', '-f', '{{json .RootFS.Layers}}', ref])).stdout) as string[];
    assert.deepEqual(rootfs, archive.diffIds, 'every layer came back byte-identical');
  });
});
