/**
 * Real clients against policies: what docker and skopeo show when a push
 * moves an immutable tag (the registry's DENIED message reaches the user).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    writeFileSync(config, 'policies:\n  - repositories: ["rel/**"]\n    immutableTags: ["v*"]\n');
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
});
