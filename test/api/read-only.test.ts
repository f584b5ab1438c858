/**
 * Read-only mode (`serve --read-only`, `readOnly`, or the reference's
 * `storage.maintenance.readonly.enabled`): pulls work; every write answers as
 * the reference registry does in that mode (405, Allow: GET, HEAD), with the
 * spec's UNSUPPORTED error; GC does not run in the background nor by the
 * admin trigger, nor through `berth gc` with the same configuration.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { requireClient } from '../helpers/clients.js';
import { startReferenceRegistry } from '../helpers/reference-registry.js';
import { makeImage, RegistryClient, type Image } from '../helpers/registry-client.js';
import { makeDataDir, startServer, type TestServer } from '../helpers/server.js';

async function assertReadOnlyRefusal(res: Response, what: string): Promise<void> {
  assert.equal(res.status, 405, what);
  assert.equal(res.headers.get('allow'), 'GET, HEAD', what);
  const body = (await res.json()) as { errors: { code: string; message: string }[] };
  assert.equal(body.errors[0]!.code, 'UNSUPPORTED', what);
  assert.match(body.errors[0]!.message, /read-only/, what);
}

describe('read-only mode', () => {
  let dataDir: string;
  let tagged: Image;
  let untagged: Image;
  let server: TestServer | undefined;
  const gcFast = (readOnly: boolean) => {
    const file = join(dataDir, `gc-${readOnly}.yml`);
    writeFileSync(
      file,
      `gc:\n  interval: 1s\n  blobGrace: 0s\n  manifestGrace: 0s\nstorage:\n  maintenance:\n    readonly:\n      enabled: ${readOnly}\n`,
    );
    return file;
  };

  before(async () => {
    dataDir = makeDataDir();
    const writer = await startServer({ dataDir, env: { BERTH_GC_ENABLED: 'false' } });
    const client = new RegistryClient(writer.url);
    tagged = makeImage();
    untagged = makeImage();
    await client.pushImage('ro/app', tagged, 'v1');
    await client.pushImage('ro/app', untagged); // by digest: garbage as soon as GC runs with no grace
    await writer.stop({ keepData: true });
  });
  after(async () => {
    await server?.stop({ keepData: true });
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves pulls and refuses every write with 405 UNSUPPORTED, Allow: GET, HEAD', async () => {
    server = await startServer({ dataDir, args: ['--read-only'] });
    const c = new RegistryClient(server.url);
    const m = await c.fetch('/v2/ro/app/manifests/v1', { headers: { accept: tagged.mediaType } });
    assert.equal(m.status, 200);
    assert.ok(Buffer.from(await m.arrayBuffer()).equals(tagged.manifest));
    assert.equal((await c.fetch(`/v2/ro/app/blobs/${tagged.layers[0]!.digest}`, { method: 'HEAD' })).status, 200);
    assert.ok(Buffer.from(await (await c.getBlob('ro/app', tagged.config.digest)).arrayBuffer()).equals(tagged.config.data));
    assert.deepEqual(((await (await c.fetch('/v2/ro/app/tags/list')).json()) as { tags: string[] }).tags, ['v1']);
    assert.equal((await c.fetch('/v2/_catalog')).status, 200);

    await assertReadOnlyRefusal(await c.fetch('/v2/ro/app/blobs/uploads/', { method: 'POST' }), 'start upload');
    await assertReadOnlyRefusal(
      await c.fetch(`/v2/ro/app/blobs/uploads/?digest=${tagged.config.digest}`, { method: 'POST', body: new Uint8Array(tagged.config.data) }),
      'monolithic upload',
    );
    await assertReadOnlyRefusal(await c.fetch('/v2/ro/app/blobs/uploads/some-id', { method: 'PATCH', body: 'x' }), 'PATCH');
    await assertReadOnlyRefusal(await c.fetch('/v2/ro/app/blobs/uploads/some-id?digest=sha256:' + 'a'.repeat(64), { method: 'PUT' }), 'PUT upload');
    await assertReadOnlyRefusal(await c.putManifest('ro/app', 'v2', tagged.manifest, tagged.mediaType), 'PUT manifest');
    await assertReadOnlyRefusal(await c.fetch(`/v2/ro/app/manifests/${tagged.digest}`, { method: 'DELETE' }), 'DELETE manifest');
    await assertReadOnlyRefusal(await c.fetch(`/v2/ro/app/blobs/${tagged.config.digest}`, { method: 'DELETE' }), 'DELETE blob');
    const gc = await c.fetch('/admin/gc', { method: 'POST' });
    assert.equal(gc.status, 405, 'the admin GC trigger is refused');
    assert.equal((await c.fetch('/admin/gc?dryRun=1', { method: 'POST' })).status, 200, 'a dry run is allowed');
    // Nothing changed.
    assert.equal((await c.fetch('/v2/ro/app/manifests/v2', { method: 'HEAD', headers: { accept: tagged.mediaType } })).status, 404);
    await server.stop({ keepData: true });
    server = undefined;
  });

  it('storage.maintenance.readonly keeps the background GC from running (and berth gc refuses); without it GC collects', async () => {
    const head = (s: TestServer) => fetch(`${s.url}/v2/ro/app/manifests/${untagged.digest}`, { method: 'HEAD', headers: { accept: untagged.mediaType } });
    server = await startServer({ dataDir, args: ['--config', gcFast(true)] });
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal((await head(server)).status, 200, 'the untagged manifest is still there after two intervals');
    assert.match(server.output(), /"readOnly":true/);
    const cli = await berth(['gc', '--data', dataDir, '--config', gcFast(true), '--grace', '0']);
    assert.equal(cli.code, 2);
    assert.match(cli.stderr, /read-only/);
    await server.stop({ keepData: true });

    // The control: the same configuration without read-only collects it.
    server = await startServer({ dataDir, args: ['--config', gcFast(false)] });
    const deadline = Date.now() + 10_000;
    while ((await head(server)).status === 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal((await head(server)).status, 404, 'GC collected the untagged manifest');
    await server.stop({ keepData: true });
    server = undefined;
  });

  it('answers each write with the status and Allow header of the reference registry in read-only mode', async (t) => {
    if (!requireClient(t, 'docker-registry')) return;
    const work = mkdtempSync(join(tmpdir(), 'berth-ro-reference-'));
    const reference = await startReferenceRegistry(work, { root: join(work, 'storage'), readOnly: true });
    server = await startServer({ dataDir, args: ['--read-only'] });
    try {
      // (The reference answers a write to an upload URL without its signed
      // _state 404 BLOB_UPLOAD_INVALID before it looks at the mode; no upload
      // can start in read-only mode, and Berth answers those 405 too.)
      const writes: [string, string][] = [
        ['POST', '/v2/ro/app/blobs/uploads/'],
        ['POST', `/v2/ro/app/blobs/uploads/?digest=${tagged.config.digest}`],
        ['PUT', '/v2/ro/app/manifests/v2'],
        ['PUT', `/v2/ro/app/manifests/${tagged.digest}`],
        ['DELETE', `/v2/ro/app/manifests/${tagged.digest}`],
        ['DELETE', `/v2/ro/app/blobs/${tagged.config.digest}`],
      ];
      for (const [method, path] of writes) {
        const init = { method, body: method === 'PUT' || method === 'PATCH' ? '{}' : undefined };
        const [ref, ours]: Response[] = await Promise.all([fetch(reference.url + path, init), fetch(server.url + path, init)]);
        await ref.arrayBuffer();
        await ours.arrayBuffer();
        assert.equal(ours.status, ref.status, `${method} ${path}: status`);
        assert.equal(ours.headers.get('allow'), ref.headers.get('allow'), `${method} ${path}: Allow`);
      }
    } finally {
      await reference.stop();
      await server.stop({ keepData: true });
      server = undefined;
      rmSync(work, { recursive: true, force: true });
    }
  });
});
