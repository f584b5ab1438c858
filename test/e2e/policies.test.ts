/**
 * Real clients against policies: what docker and skopeo show when a push
 * moves an immutable tag (the registry's DENIED message reaches the user).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { dockerRemoveImages, makeDockerArchive, makeOciLayout, podmanEnv, requireClient, run, uniqueName } from '../helpers/clients.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { getManifest } from './support.js';

describe('policies with real clients', () => {
  let server: TestServer | undefined;
  let work: string;
  const images: string[] = [];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-policies-'));
    const config = join(work, 'berth.yaml');
    writeFileSync(config, 'policies:\n  - repositories: ["rel/**"]\n    immutableTags: ["v*"]\n  - repositories: ["small/**"]\n    quota: 2KiB\n');
    server = await startServer({ args: ['--config', config], env: { BERTH_GC_ENABLED: 'false' } });
  });
  after(async () => {
    await dockerRemoveImages(images).catch(() => {});
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('skopeo: copying another image onto an immutable tag fails with the registry message; the same image again succeeds', async (t) => {
    if (!requireClient(t, 'skopeo')) return;
    const s = server!;
    const repo = `rel/${uniqueName('skopeo')}`;
    const first = await makeOciLayout(join(work, 'a'), { layers: [`a ${uniqueName()}\n`], tag: 'v1' });
    const second = await makeOciLayout(join(work, 'b'), { layers: [`b ${uniqueName()}\n`], tag: 'v1' });
    const dest = `docker://${s.host}/${repo}:v1`;
    await run('skopeo', ['copy', '--dest-tls-verify=false', first.ref, dest], { env: podmanEnv() });
    const moved = await run('skopeo', ['copy', '--dest-tls-verify=false', second.ref, dest], { env: podmanEnv(), allowFailure: true });
    assert.notEqual(moved.code, 0);
    assert.match(moved.stderr, new RegExp(`denied: tag ${repo}:v1 is immutable`), moved.stderr);
    t.diagnostic(`skopeo says: ${moved.stderr.trim().split('\n').at(-1)}`);
    assert.equal((await getManifest(s.url, repo, 'v1')).digest, first.digest);
    await run('skopeo', ['copy', '--dest-tls-verify=false', first.ref, dest], { env: podmanEnv() });
    const del = await run('skopeo', ['delete', '--tls-verify=false', dest], { env: podmanEnv(), allowFailure: true });
    assert.notEqual(del.code, 0);
    assert.match(del.stderr, /is immutable/, del.stderr);
  });

  it('docker: pushing another image under an immutable tag fails with "denied: tag … is immutable"', async (t) => {
    if (!requireClient(t, 'docker')) return;
    const s = server!;
    const repo = `rel/${uniqueName('docker')}`;
    const ref = `${s.host}/${repo}:v1`;
    for (const [i, name] of ['one', 'two'].entries()) {
      const local = `berth-e2e/${uniqueName(name)}:loaded`;
      images.push(local);
      const archive = await makeDockerArchive(join(work, `${name}.tar`), { layers: [`${name} ${uniqueName()}\n`], repoTags: [local] });
      await run('docker', ['load', '-i', archive.file]);
      await run('docker', ['tag', local, ref]);
      images.push(ref);
      const push = await run('docker', ['push', ref], { allowFailure: i === 1 });
      if (i === 0) continue;
      assert.notEqual(push.code, 0);
      const said = push.stdout + push.stderr;
      assert.match(said, new RegExp(`denied: tag ${repo}:v1 is immutable`), said);
      t.diagnostic(`docker says: ${said.trim().split('\n').at(-1)}`);
    }
  });

  /** A layer that stays over the 2 KiB quota once compressed. */
  const bigLayer = () => randomBytes(8192).toString('base64') + '\n';
  const QUOTA_MESSAGE = /denied: quota exceeded for namespace small\/\*\*: usage [\d.]+ (B|KiB) \+ [\d.]+ KiB would exceed the quota of 2 KiB/;

  it('skopeo: a copy over quota fails with the quota, usage and namespace', async (t) => {
    if (!requireClient(t, 'skopeo')) return;
    const layout = await makeOciLayout(join(work, 'big'), { layers: [bigLayer()], tag: 'v1' });
    const copy = await run('skopeo', ['copy', '--dest-tls-verify=false', layout.ref, `docker://${server!.host}/small/${uniqueName('skopeo')}:v1`], { env: podmanEnv(), allowFailure: true });
    assert.notEqual(copy.code, 0);
    assert.match(copy.stderr, QUOTA_MESSAGE, copy.stderr);
    t.diagnostic(`skopeo says: ${copy.stderr.trim().split('\n').at(-1)}`);
  });

  it('docker: a push over quota fails with the quota, usage and namespace', async (t) => {
    if (!requireClient(t, 'docker')) return;
    const local = `berth-e2e/${uniqueName('big')}:loaded`;
    const ref = `${server!.host}/small/${uniqueName('docker')}:v1`;
    images.push(local, ref);
    const archive = await makeDockerArchive(join(work, 'big.tar'), { layers: [bigLayer()], repoTags: [local] });
    await run('docker', ['load', '-i', archive.file]);
    await run('docker', ['tag', local, ref]);
    const push = await run('docker', ['push', ref], { allowFailure: true });
    assert.notEqual(push.code, 0);
    const said = push.stdout + push.stderr;
    assert.match(said, QUOTA_MESSAGE, said);
    t.diagnostic(`docker says: ${said.trim().split('\n').at(-1)}`);
  });

  it('podman: a push over quota fails with the quota, usage and namespace', async (t) => {
    if (!requireClient(t, 'podman')) return;
    const ref = `${server!.host}/small/${uniqueName('podman')}:v1`;
    const archive = await makeDockerArchive(join(work, 'bigp.tar'), { layers: [bigLayer()], repoTags: [ref] });
    await run('podman', ['load', '-i', archive.file], { env: podmanEnv() });
    try {
      const push = await run('podman', ['push', '--tls-verify=false', ref], { env: podmanEnv(), allowFailure: true });
      assert.notEqual(push.code, 0);
      assert.match(push.stderr, QUOTA_MESSAGE, push.stderr);
      t.diagnostic(`podman says: ${push.stderr.trim().split('\n').at(-1)}`);
    } finally {
      await run('podman', ['rmi', '-f', '--ignore', ref], { env: podmanEnv(), allowFailure: true });
    }
  });
});
