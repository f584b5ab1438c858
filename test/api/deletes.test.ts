/**
 * DELETE of manifests (by digest), tags (a manifest reference that is a
 * tag) and blobs; and a server started with --no-deletes, which refuses
 * every one of them and changes nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { errorCode, makeImage, makeIndex, OCI_INDEX, OCI_MANIFEST, RegistryClient, sha256, type Image } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

function helpers(client: () => RegistryClient) {
  return {
    del: (repo: string, ref: string) => client().fetch(`/v2/${repo}/manifests/${ref}`, { method: 'DELETE' }),
    get: (repo: string, ref: string) => client().fetch(`/v2/${repo}/manifests/${ref}`, { headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } }),
    head: (repo: string, ref: string) => client().fetch(`/v2/${repo}/manifests/${ref}`, { method: 'HEAD', headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } }),
    tags: async (repo: string): Promise<string[]> => {
      const res = await client().fetch(`/v2/${repo}/tags/list`);
      assert.equal(res.status, 200);
      return ((await res.json()) as { tags: string[] }).tags;
    },
  };
}

async function assertManifest(res: Response, m: { digest: string; manifest: Buffer }): Promise<void> {
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('docker-content-digest'), m.digest);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), m.manifest);
}

async function assertUnknown(res: Response, code = 'MANIFEST_UNKNOWN', status = 404): Promise<void> {
  assert.equal(res.status, status);
  assert.equal(await errorCode(res), code);
}

describe('deletes', () => {
  let server: TestServer;
  let client: RegistryClient;
  const { del, get, head, tags } = helpers(() => client);
  before(async () => {
    server = await startServer();
    client = new RegistryClient(server.url);
  });
  after(() => server.stop());

  it('DELETE of a manifest by digest → 202; it and every tag that named it are gone', async () => {
    const repo = 'del/by-digest';
    const a = makeImage({ layers: 1 });
    const b = makeImage({ layers: 1 });
    await client.pushImage(repo, a, 't1');
    await client.pushImage(repo, a, 't2');
    await client.pushImage(repo, b, 't3');
    assert.deepEqual(await tags(repo), ['t1', 't2', 't3']);

    const res = await del(repo, a.digest);
    assert.equal(res.status, 202);
    assert.equal(await res.text(), '');

    for (const ref of [a.digest, 't1', 't2']) {
      await assertUnknown(await get(repo, ref));
      const h = await head(repo, ref);
      assert.equal(h.status, 404);
    }
    assert.deepEqual(await tags(repo), ['t3']);
    await assertManifest(await get(repo, 't3'), b);
    await assertManifest(await get(repo, b.digest), b);
  });

  it('DELETE of a manifest twice → the second is 404 MANIFEST_UNKNOWN', async () => {
    const repo = 'del/twice';
    const a = makeImage({ layers: 1 });
    await client.pushImage(repo, a, 'x');
    assert.equal((await del(repo, a.digest)).status, 202);
    await assertUnknown(await del(repo, a.digest));
  });

  it('a deleted manifest can be pushed again and is served again', async () => {
    const repo = 'del/repush';
    const a = makeImage({ layers: 1 });
    await client.pushImage(repo, a, 'v1');
    assert.equal((await del(repo, a.digest)).status, 202);
    await assertUnknown(await get(repo, 'v1'));
    // Its blobs are still held (grace period): the manifest alone can be re-pushed.
    const res = await client.putManifest(repo, 'v1', a.manifest, OCI_MANIFEST);
    assert.equal(res.status, 201);
    await assertManifest(await get(repo, 'v1'), a);
    await assertManifest(await get(repo, a.digest), a);
  });

  it('DELETE of a tag → 202; the tag list is one shorter and the manifest is still reachable by digest', async () => {
    const repo = 'del/tag';
    const a = makeImage({ layers: 1 });
    await client.pushImage(repo, a, 'x');
    await client.pushImage(repo, a, 'y');
    await client.pushImage(repo, a, 'z');
    const res = await del(repo, 'y');
    assert.equal(res.status, 202);
    assert.equal(await res.text(), '');
    assert.deepEqual(await tags(repo), ['x', 'z']);
    await assertUnknown(await get(repo, 'y'));
    await assertManifest(await get(repo, 'x'), a);
    await assertManifest(await get(repo, a.digest), a);
    // The same tag again is unknown now.
    await assertUnknown(await del(repo, 'y'));
  });

  it('DELETE of the last tag leaves the manifest reachable by digest', async () => {
    const repo = 'del/last-tag';
    const a = makeImage({ layers: 1 });
    await client.pushImage(repo, a, 'only');
    assert.equal((await del(repo, 'only')).status, 202);
    assert.deepEqual(await tags(repo), []);
    await assertManifest(await get(repo, a.digest), a);
  });

  it('DELETE of an index by digest leaves its children; DELETE of its tag leaves the index', async () => {
    const repo = 'del/index';
    const a = makeImage({ layers: 1 });
    const b = makeImage({ layers: 1 });
    await client.pushImage(repo, a);
    await client.pushImage(repo, b);
    const index = makeIndex([a, b]);
    assert.equal((await client.putManifest(repo, 'multi', index.manifest, OCI_INDEX)).status, 201);
    assert.equal((await client.putManifest(repo, 'multi2', index.manifest, OCI_INDEX)).status, 201);
    assert.equal((await del(repo, 'multi2')).status, 202);
    await assertManifest(await get(repo, 'multi'), index);
    assert.equal((await del(repo, index.digest)).status, 202);
    await assertUnknown(await get(repo, 'multi'));
    await assertManifest(await get(repo, a.digest), a);
    await assertManifest(await get(repo, b.digest), b);
  });

  it('DELETE of an unknown manifest or tag → 404 MANIFEST_UNKNOWN', async () => {
    const repo = 'del/unknown';
    await client.pushImage(repo, makeImage({ layers: 1 }), 'present');
    await assertUnknown(await del(repo, sha256(randomBytes(8))));
    await assertUnknown(await del(repo, 'absent'));
    // A reference that is neither a tag nor a digest names nothing.
    await assertUnknown(await del(repo, 'x'.repeat(129)));
    assert.deepEqual(await tags(repo), ['present']);
  });

  it('DELETE in an unknown repository → 404', async () => {
    for (const ref of ['latest', sha256(randomBytes(8))]) {
      const res = await del('del/nobody', ref);
      assert.equal(res.status, 404);
      assert.ok(['MANIFEST_UNKNOWN', 'NAME_UNKNOWN'].includes((await errorCode(res))!));
    }
  });

  it('DELETE with a malformed digest → 400 DIGEST_INVALID', async () => {
    const res = await del('del/unknown', 'sha256:0123');
    assert.equal(res.status, 400);
    assert.equal(await errorCode(res), 'DIGEST_INVALID');
  });

  it('a manifest deleted in one repository stays in another', async () => {
    const a = makeImage({ layers: 1 });
    await client.pushImage('del/one', a, 'v');
    await client.pushImage('del/two', a, 'v');
    assert.equal((await del('del/one', a.digest)).status, 202);
    await assertUnknown(await get('del/one', a.digest));
    await assertManifest(await get('del/two', a.digest), a);
    await assertManifest(await get('del/two', 'v'), a);
  });

  it('DELETE of a blob → 202; then it is unknown in that repository only', async () => {
    const a = makeImage({ layers: 1 });
    await client.pushBlob('del/blob', a.layers[0]!);
    await client.pushBlob('del/blob2', a.layers[0]!);
    const res = await client.fetch(`/v2/del/blob/blobs/${a.layers[0]!.digest}`, { method: 'DELETE' });
    assert.equal(res.status, 202);
    await assertUnknown(await client.getBlob('del/blob', a.layers[0]!.digest), 'BLOB_UNKNOWN');
    assert.equal((await client.getBlob('del/blob2', a.layers[0]!.digest)).status, 200);
    await assertUnknown(await client.fetch(`/v2/del/blob/blobs/${a.layers[0]!.digest}`, { method: 'DELETE' }), 'BLOB_UNKNOWN');
  });

  it('a manifest referencing a deleted blob is refused with 400 MANIFEST_BLOB_UNKNOWN', async () => {
    const repo = 'del/blob-then-manifest';
    const a = makeImage({ layers: 1 });
    for (const b of [a.config, ...a.layers]) await client.pushBlob(repo, b);
    const res = await client.fetch(`/v2/${repo}/blobs/${a.layers[0]!.digest}`, { method: 'DELETE' });
    assert.equal(res.status, 202);
    await assertUnknown(await client.putManifest(repo, 'v1', a.manifest, OCI_MANIFEST), 'MANIFEST_BLOB_UNKNOWN', 400);
    await assertUnknown(await get(repo, 'v1'));
  });

  /** What a manifest references stays whole: the refusal is 409 DENIED, with a message, and changes nothing. */
  async function assertStillReferenced(res: Response): Promise<void> {
    assert.equal(res.status, 409);
    const body = (await res.json()) as { errors: { code: string; message: string }[] };
    assert.equal(body.errors[0]!.code, 'DENIED');
    assert.match(body.errors[0]!.message, /referenced by 1 (index|manifest) of the repository/);
  }

  it('DELETE of a child manifest an index of the repository references → 409 DENIED, nothing changes (references stay whole)', async () => {
    const repo = 'del/child';
    const a = makeImage({ layers: 1 });
    const b = makeImage({ layers: 1 });
    await client.pushImage(repo, a, 'a');
    await client.pushImage(repo, b);
    const index = makeIndex([a, b]);
    assert.equal((await client.putManifest(repo, 'multi', index.manifest, OCI_INDEX)).status, 201);
    await assertStillReferenced(await del(repo, a.digest));
    await assertManifest(await get(repo, a.digest), a);
    await assertManifest(await get(repo, 'a'), a);
    await assertManifest(await get(repo, 'multi'), index);
    // By tag it only becomes untagged: the index still holds it.
    assert.equal((await del(repo, 'a')).status, 202);
    await assertManifest(await get(repo, a.digest), a);
    // In another repository the same digest is not held by this index.
    await client.pushImage('del/child-elsewhere', a);
    assert.equal((await del('del/child-elsewhere', a.digest)).status, 202);
    // Once the index is gone, its children can go.
    assert.equal((await del(repo, index.digest)).status, 202);
    assert.equal((await del(repo, a.digest)).status, 202);
  });

  it('DELETE of a blob a manifest of the repository references → 409 DENIED, the image stays pullable (references stay whole)', async () => {
    const repo = 'del/referenced-blob';
    const a = makeImage({ layers: 1 });
    await client.pushImage(repo, a, 'v1');
    for (const b of [a.config, a.layers[0]!]) {
      await assertStillReferenced(await client.fetch(`/v2/${repo}/blobs/${b.digest}`, { method: 'DELETE' }));
      const res = await client.getBlob(repo, b.digest);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), b.data);
    }
    // Once the manifest is gone, its blobs can be unlinked.
    assert.equal((await del(repo, a.digest)).status, 202);
    assert.equal((await client.fetch(`/v2/${repo}/blobs/${a.layers[0]!.digest}`, { method: 'DELETE' })).status, 202);
  });
});

describe('deletes disabled (--no-deletes)', () => {
  let server: TestServer;
  let client: RegistryClient;
  const { get, tags } = helpers(() => client);
  const repo = 'nodel/app';
  let image: Image;
  before(async () => {
    server = await startServer({ args: ['--no-deletes'] });
    client = new RegistryClient(server.url);
    image = makeImage({ layers: 1 });
    await client.pushImage(repo, image, 'a');
    await client.pushImage(repo, image, 'b');
  });
  after(() => server.stop());

  it('every DELETE → 405 UNSUPPORTED and nothing changes', async () => {
    const attempts = [
      `/v2/${repo}/manifests/${image.digest}`,
      `/v2/${repo}/manifests/a`,
      `/v2/${repo}/manifests/no-such-tag`,
      `/v2/${repo}/manifests/${sha256('nothing')}`,
      `/v2/${repo}/blobs/${image.layers[0]!.digest}`,
      `/v2/${repo}/blobs/${image.config.digest}`,
    ];
    for (const path of attempts) {
      const res = await client.fetch(path, { method: 'DELETE' });
      assert.equal(res.status, 405, path);
      assert.equal(await errorCode(res), 'UNSUPPORTED');
    }
    assert.deepEqual(await tags(repo), ['a', 'b']);
    await assertManifest(await get(repo, 'a'), image);
    await assertManifest(await get(repo, 'b'), image);
    await assertManifest(await get(repo, image.digest), image);
    for (const b of [image.config, ...image.layers]) {
      const res = await client.getBlob(repo, b.digest);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), b.data);
    }
  });

  it('pushes still work', async () => {
    const other = makeImage({ layers: 1 });
    await client.pushImage(repo, other, 'c');
    assert.deepEqual(await tags(repo), ['a', 'b', 'c']);
  });
});
