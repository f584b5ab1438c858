/**
 * podman against Berth: load, push, remove, pull back with the same image ID;
 * and a pull of a multi-arch index, per platform.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeDockerArchive, makeOciLayout, podmanEnv, requireClient, run, uniqueName, type RunOptions } from '../helpers/clients.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { getImageManifest, getManifest, verifyImageBlobs } from './support.js';

function podman(args: string[], opts: RunOptions = {}) {
  return run('podman', args, { ...opts, env: { ...podmanEnv(), ...opts.env } });
}

/** podman shows image IDs without the algorithm prefix. */
function hex(digest: string): string {
  return digest.replace(/^sha256:/, '');
}

describe('podman push and pull', () => {
  let server: TestServer | undefined;
  let work: string;
  const images: string[] = [];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-podman-'));
    server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
  });
  after(async () => {
    if (images.length) await podman(['rmi', '-f', '--ignore', ...images], { allowFailure: true }).catch(() => {});
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('loads, pushes, removes and pulls back a 3-layer image with the same image ID', async (t) => {
    if (!requireClient(t, 'podman')) return;
    const s = server!;
    const repo = `e2e/${uniqueName('podman')}`;
    const ref = `${s.host}/${repo}:v1`;
    images.push(ref);
    const nonce = uniqueName();
    const archive = await makeDockerArchive(join(work, 'image.tar'), {
      layers: [`one ${nonce}\n`, { path: 'etc/two.conf', content: `two ${nonce}\n` }, Buffer.alloc(32 * 1024, nonce)],
      repoTags: [ref],
    });

    await podman(['load', '-i', archive.file]);
    const loadedId = (await podman(['image', 'inspect', '-f', '{{.Id}}', ref])).stdout.trim();
    assert.equal(loadedId, hex(archive.imageId));

    await podman(['push', '--tls-verify=false', ref]);
    const { manifest, digest } = await getImageManifest(s.url, repo, 'v1');
    assert.equal(manifest.config.digest, archive.imageId, 'Berth holds the config podman loaded');
    await verifyImageBlobs(s.url, repo, manifest, archive.diffIds);

    await podman(['rmi', ref]);
    const gone = await podman(['image', 'exists', ref], { allowFailure: true });
    assert.equal(gone.code, 1, 'the image is gone locally before the pull');

    const pull = await podman(['pull', '--tls-verify=false', ref]);
    assert.equal(pull.stdout.trim(), hex(archive.imageId), 'podman pull prints the image ID');
    const inspect = (await podman(['image', 'inspect', '-f', '{{.Id}} {{.Digest}}', ref])).stdout.trim();
    assert.equal(inspect, `${hex(archive.imageId)} ${digest}`, 'same image ID, pulled by the manifest digest Berth serves');
    const rootfs = JSON.parse((await podman(['image', 'inspect', '-f', '{{json .RootFS.Layers}}', ref])).stdout) as string[];
    assert.deepEqual(rootfs, archive.diffIds, 'every layer came back byte-identical');
  });

  it('pulls each platform of a multi-arch index', async (t) => {
    if (!requireClient(t, 'podman') || !requireClient(t, 'skopeo')) return;
    const s = server!;
    const repo = `e2e/${uniqueName('podman-multi')}`;
    const ref = `${s.host}/${repo}:v1`;
    images.push(ref);
    const layout = await makeOciLayout(join(work, 'multi'), {
      layers: [`multi ${uniqueName()}\n`],
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      tag: 'v1',
    });
    await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', layout.ref, `docker://${ref}`], { env: podmanEnv() });
    assert.equal((await getManifest(s.url, repo, 'v1')).digest, layout.digest);

    for (const img of layout.images) {
      images.push(hex(img.config.digest)); // re-pulling the tag for another platform leaves the previous one untagged
      const { architecture } = img.platform;
      const pull = await podman(['pull', '--tls-verify=false', '--platform', `linux/${architecture}`, ref]);
      assert.equal(pull.stdout.trim(), hex(img.config.digest), `the ${architecture} image`);
      const [id, arch, digest] = (await podman(['image', 'inspect', '-f', '{{.Id}} {{.Architecture}} {{.Digest}}', ref])).stdout.trim().split(' ');
      assert.equal(id, hex(img.config.digest));
      assert.equal(arch, architecture);
      assert.equal(digest, layout.digest, 'podman records the index digest it resolved the tag to');
      const layers = JSON.parse((await podman(['image', 'inspect', '-f', '{{json .RootFS.Layers}}', ref])).stdout) as string[];
      assert.deepEqual(layers, img.layers.map((l) => l.diffId));
    }
  });
});
