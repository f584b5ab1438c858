/**
 * The scenario Berth exists for, replayed with real clients (DESIGN.md, "The
 * problem Berth exists to solve"):
 *
 *   1. docker push an image; 2. delete its manifest through the API;
 *   3. run the garbage collector while the registry keeps running;
 *   4. docker push the same image again; 5. docker pull it.
 *
 * In the reference registry step 4 answers "Layer already exists" for every
 * layer although GC deleted the files (its process-local blob-descriptor
 * cache still says so), and step 5 fails with "manifest unknown". In Berth,
 * wherever GC deleted a layer, HEAD says 404 (invariant 1: metadata is the
 * only source of truth for existence), step 4 uploads it for real, and step 5
 * pulls the image with every byte intact — whichever way GC runs
 * (invariant 4: `berth gc` in another process, the admin trigger, the
 * background collector). All runs use grace 0.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import {
  dockerRemoveImages,
  makeDockerArchive,
  makeOciLayout,
  podmanEnv,
  requireClient,
  run,
  uniqueName,
} from '../helpers/clients.js';
import { makeDataDir, removeStorage, startServer, type TestServer } from '../helpers/server.js';
import {
  assertSameLayout,
  dockerPushedDigest,
  dockerPushStatuses,
  getImageManifest,
  headStatus,
  shortId,
  verifyImageBlobs,
  waitFor,
  writeBackgroundGcConfig,
  type ImageManifest,
} from './support.js';

interface GcRunReport {
  manifestsDeleted: number;
  blobsDeleted: number;
  manifests?: string[];
  blobs?: string[];
}

type GcWay = 'berth gc process' | 'admin trigger' | 'background collector';

/** Every blob digest of an image manifest: config first, then the layers. */
function blobDigests(m: ImageManifest): string[] {
  return [m.config.digest, ...m.layers.map((l) => l.digest)];
}

async function assertAllGone(url: string, repo: string, manifestDigest: string, blobs: readonly string[]): Promise<void> {
  assert.equal(await headStatus(url, repo, 'manifests', manifestDigest), 404, 'the deleted manifest is unknown');
  for (const digest of blobs) assert.equal(await headStatus(url, repo, 'blobs', digest), 404, `GC deleted ${digest}: HEAD must say so`);
}

describe('the reference registry bug, replayed with docker: push, delete, GC, push again, pull', () => {
  // One server for the ways GC runs beside a live registry. Its own collector
  // is off so that only the GC under test deletes anything.
  let server: TestServer | undefined;
  let work: string;
  const images: string[] = [];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-gc-'));
    server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
  });
  after(async () => {
    await dockerRemoveImages(images).catch(() => {});
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  for (const way of ['berth gc process', 'admin trigger', 'background collector'] as const satisfies readonly GcWay[]) {
    it(`GC via ${way}: every deleted layer is uploaded again for real and the image pulls intact`, async (t) => {
      if (!requireClient(t, 'docker')) return;
      await scenario(way);
    });
  }

  async function scenario(way: GcWay): Promise<void> {
    // (c) runs its own servers over one data directory, on one port (image
    // references name the port, so it must stay the same across restarts).
    const dataDir = way === 'background collector' ? makeDataDir() : undefined;
    let s = dataDir ? await startServer({ dataDir, env: { BERTH_GC_ENABLED: 'false' } }) : server!;
    const host = s.host;
    try {
      const repo = `e2e/${uniqueName('gc')}`;
      const ref = `${host}/${repo}:v1`;
      images.push(ref);
      const nonce = uniqueName();
      const archive = await makeDockerArchive(join(work, `${nonce}.tar`), {
        layers: [`base ${nonce}\n`, { path: 'etc/app.conf', content: `conf ${nonce}\n` }, Buffer.alloc(48 * 1024, nonce)],
        repoTags: [ref],
      });
      await run('docker', ['load', '-i', archive.file]);

      // 1. push
      const push = await run('docker', ['push', ref]);
      const firstDigest = dockerPushedDigest(push.stdout, 'v1');
      const first = await getImageManifest(s.url, repo, firstDigest);
      assert.equal(first.manifest.config.digest, archive.imageId);
      const blobs = blobDigests(first.manifest);

      // 2. delete the manifest through the API
      const del = await fetch(`${s.url}/v2/${repo}/manifests/${firstDigest}`, { method: 'DELETE' });
      assert.equal(del.status, 202);
      for (const digest of blobs) assert.equal(await headStatus(s.url, repo, 'blobs', digest), 200, 'nothing is collected before GC runs');

      // 3. GC, with grace 0, while the registry keeps serving
      if (way === 'berth gc process') {
        const gc = await berth(['gc', '--data', s.dataDir, '--grace', '0', '--verbose', '--json']);
        assert.equal(gc.code, 0, gc.stderr);
        const report = JSON.parse(gc.stdout) as GcRunReport;
        for (const digest of blobs) assert.ok(report.blobs?.includes(digest), `the report names ${digest}`);
      } else if (way === 'admin trigger') {
        const res = await fetch(`${s.url}/admin/gc?grace=0&verbose=1`, { method: 'POST' });
        assert.equal(res.status, 200);
        const report = (await res.json()) as GcRunReport;
        for (const digest of blobs) assert.ok(report.blobs?.includes(digest), `the report names ${digest}`);
      } else {
        // The same data directory, served by a process whose background
        // collector runs every 300 ms at grace 0. The manifest was deleted
        // while no collector ran, so what deletes the blobs now is this
        // process's own collector, and its HEAD answers must follow at once.
        await s.stop();
        s = await startServer({ dataDir, addr: host, args: ['--config', writeBackgroundGcConfig(dataDir!)] });
        await waitFor('the background collector to delete every blob', async () => {
          for (const digest of blobs) if ((await headStatus(s.url, repo, 'blobs', digest)) !== 404) return false;
          return true;
        });
        // With the collector still running at grace 0, a push races it: a blob
        // uploaded but not yet referenced is garbage at once, so docker's
        // post-upload HEAD or its manifest PUT can legitimately fail with
        // BLOB_UNKNOWN / MANIFEST_BLOB_UNKNOWN (invariant 2: fail, never lie),
        // and docker would have to push again. To keep this test
        // deterministic, the re-push goes to a restart of the same data
        // directory and port without the background collector; what the
        // collector left behind is what the re-push finds.
        await s.stop();
        s = await startServer({ dataDir, addr: host, env: { BERTH_GC_ENABLED: 'false' } });
      }
      await assertAllGone(s.url, repo, firstDigest, blobs);

      // 4. push again: each deleted layer must be uploaded, not "already exist"
      const repush = await run('docker', ['push', ref]);
      const statuses = dockerPushStatuses(repush.stdout);
      for (const diffId of archive.diffIds) {
        const layer = statuses.get(shortId(diffId)) ?? [];
        assert.ok(!layer.includes('Layer already exists'), `GC deleted layer ${diffId}; docker must not be told it exists:\n${repush.stdout}`);
        assert.equal(layer.at(-1), 'Pushed', `layer ${diffId} is uploaded again:\n${repush.stdout}`);
      }
      assert.doesNotMatch(repush.stdout, /Layer already exists/);
      const second = await getImageManifest(s.url, repo, 'v1');
      assert.equal(second.digest, dockerPushedDigest(repush.stdout, 'v1'));
      assert.equal(second.manifest.config.digest, archive.imageId);

      // 5. pull, from nothing local
      await run('docker', ['rmi', '-f', ref]);
      assert.notEqual((await run('docker', ['image', 'inspect', ref], { allowFailure: true })).code, 0);
      const pull = await run('docker', ['pull', ref]);
      assert.doesNotMatch(pull.stdout + pull.stderr, /manifest unknown/i);
      const id = (await run('docker', ['image', 'inspect', '-f', '{{.Id}}', ref])).stdout.trim();
      assert.equal(id, archive.imageId, 'the pulled image is the one pushed');
      const rootfs = JSON.parse((await run('docker', ['image', 'inspect', '-f', '{{json .RootFS.Layers}}', ref])).stdout) as string[];
      assert.deepEqual(rootfs, archive.diffIds);
      // and every byte Berth serves hashes to its digest
      await verifyImageBlobs(s.url, repo, second.manifest, archive.diffIds);
    } finally {
      if (dataDir) {
        await s.stop();
        rmSync(dataDir, { recursive: true, force: true });
        await removeStorage(dataDir);
      }
    }
  }
});

describe('the same scenario with skopeo and a multi-arch index', () => {
  it('copy in, delete, berth gc, copy in again, copy out: every byte intact', async (t) => {
    if (!requireClient(t, 'skopeo')) return;
    const work = mkdtempSync(join(tmpdir(), 'berth-e2e-gc-skopeo-'));
    const s = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const env = podmanEnv();
      const repo = `e2e/${uniqueName('gc-skopeo')}`;
      const dest = `docker://${s.host}/${repo}:v1`;
      const nonce = uniqueName();
      const layout = await makeOciLayout(join(work, 'src'), {
        layers: [`base ${nonce}\n`, Buffer.alloc(40 * 1024, nonce)],
        platforms: [
          { os: 'linux', architecture: 'amd64' },
          { os: 'linux', architecture: 'arm64' },
        ],
        tag: 'v1',
      });
      const copyIn = ['copy', '--all', '--dest-tls-verify=false', layout.ref, dest];
      await run('skopeo', copyIn, { env });

      await run('skopeo', ['delete', '--tls-verify=false', dest], { env });
      const gc = await berth(['gc', '--data', s.dataDir, '--grace', '0', '--verbose', '--json']);
      assert.equal(gc.code, 0, gc.stderr);
      const report = JSON.parse(gc.stdout) as GcRunReport;
      // The DELETE removed the index itself; GC collects what it released: both
      // platform manifests, then every config and layer.
      assert.deepEqual([...report.manifests!].sort(), layout.manifestDigests.map((d) => `${repo}@${d}`).sort());
      assert.deepEqual([...report.blobs!].sort(), [...layout.blobDigests].sort(), 'every config and layer');
      for (const digest of [layout.digest, ...layout.manifestDigests]) assert.equal(await headStatus(s.url, repo, 'manifests', digest), 404);
      for (const digest of layout.blobDigests) assert.equal(await headStatus(s.url, repo, 'blobs', digest), 404, digest);

      const again = await run('skopeo', copyIn, { env });
      assert.doesNotMatch(again.stdout, /skipped: already exists/, `nothing may be skipped:\n${again.stdout}`);
      for (const digest of layout.blobDigests) assert.match(again.stdout, new RegExp(`Copying (blob|config) ${digest}`));

      const outDir = join(work, 'out');
      await run('skopeo', ['copy', '--all', '--src-tls-verify=false', dest, `oci:${outDir}:v1`], { env });
      assertSameLayout(outDir, 'v1', layout);
    } finally {
      await s.stop();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
