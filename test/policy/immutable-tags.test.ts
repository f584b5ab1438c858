/**
 * Immutable tags (policies[].immutableTags): a matching tag, once pushed,
 * cannot be moved to another manifest or deleted (by tag, or with the
 * manifest it names); pushing the same manifest again is accepted; an
 * admin lifts it for one tag with DELETE /admin/tags. The refusal is DENIED
 * (409) with a message naming the tag. Checked inside the store's
 * transaction (SQLite and PostgreSQL: BERTH_TEST_METADATA=postgres).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeImage, OCI_MANIFEST, RegistryClient } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { policyConfig } from '../helpers/policy.js';

async function denied(res: Response): Promise<string> {
  assert.equal(res.status, 409);
  const body = (await res.json()) as { errors: { code: string; message: string }[] };
  assert.equal(body.errors[0]!.code, 'DENIED');
  return body.errors[0]!.message;
}

describe('immutable tags', () => {
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    const config = policyConfig(`
policies:
  - repositories: ["team-a/**"]
    immutableTags: ["v*", "release-*"]
`);
    server = await startServer({ args: ['--config', config] });
    client = new RegistryClient(server.url);
  });
  after(() => server.stop());

  const del = (repo: string, ref: string) => client.fetch(`/v2/${repo}/manifests/${ref}`, { method: 'DELETE' });
  const target = async (repo: string, ref: string) =>
    (await client.fetch(`/v2/${repo}/manifests/${ref}`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } })).headers.get('docker-content-digest');

  it('moving an immutable tag to another manifest is DENIED naming the tag; it still names the first one', async () => {
    const a = makeImage();
    const b = makeImage();
    await client.pushImage('team-a/app', a, 'v1.0');
    await client.pushImage('team-a/app', b);
    const message = await denied(await client.putManifest('team-a/app', 'v1.0', b.manifest, b.mediaType));
    assert.match(message, /team-a\/app:v1\.0 is immutable/);
    assert.equal(await target('team-a/app', 'v1.0'), a.digest);
  });

  it('pushing the same manifest under the immutable tag again is accepted', async () => {
    const a = makeImage();
    await client.pushImage('team-a/same', a, 'release-1');
    const res = await client.putManifest('team-a/same', 'release-1', a.manifest, a.mediaType);
    assert.equal(res.status, 201);
    assert.equal(await target('team-a/same', 'release-1'), a.digest);
  });

  it('deleting an immutable tag, or the manifest it names, is DENIED; both stay', async () => {
    const a = makeImage();
    await client.pushImage('team-a/del', a, 'v2');
    assert.match(await denied(await del('team-a/del', 'v2')), /team-a\/del:v2 is immutable: it cannot be deleted/);
    assert.match(await denied(await del('team-a/del', a.digest)), /team-a\/del:v2 is immutable/);
    assert.equal(await target('team-a/del', 'v2'), a.digest);
  });

  it('tags not matching a pattern, and repositories outside the rule, stay mutable', async () => {
    const a = makeImage();
    const b = makeImage();
    await client.pushImage('team-a/mut', a, 'latest');
    await client.pushImage('team-a/mut', b, 'latest');
    assert.equal(await target('team-a/mut', 'latest'), b.digest);
    await client.pushImage('team-b/app', a, 'v1');
    await client.pushImage('team-b/app', b, 'v1');
    assert.equal(await target('team-b/app', 'v1'), b.digest);
    assert.equal((await del('team-b/app', 'v1')).status, 202);
  });

  it('an admin lifts it for one tag (DELETE /admin/tags); the tag can then be pushed to another manifest', async () => {
    const a = makeImage();
    const b = makeImage();
    await client.pushImage('team-a/lift', a, 'v3');
    await client.pushImage('team-a/lift', b);
    const lifted = await client.fetch(`/admin/tags?repository=team-a/lift&tag=v3`, { method: 'DELETE' });
    assert.equal(lifted.status, 202);
    assert.equal((await client.putManifest('team-a/lift', 'v3', b.manifest, b.mediaType)).status, 201);
    assert.equal(await target('team-a/lift', 'v3'), b.digest);
    // Immutable again from there on.
    await denied(await client.putManifest('team-a/lift', 'v3', a.manifest, a.mediaType));
    assert.equal((await client.fetch(`/admin/tags?repository=team-a/lift&tag=nope`, { method: 'DELETE' })).status, 404);
    assert.equal((await client.fetch(`/admin/tags?repository=team-a/lift`, { method: 'DELETE' })).status, 400);
  });

  it('two pushes racing to create the same immutable tag with different manifests: exactly one wins, the tag names it', async () => {
    for (let i = 0; i < 8; i++) {
      const a = makeImage();
      const b = makeImage();
      await client.pushImage('team-a/race', a);
      await client.pushImage('team-a/race', b);
      const [ra, rb] = await Promise.all([
        client.putManifest('team-a/race', `v-race-${i}`, a.manifest, a.mediaType),
        client.putManifest('team-a/race', `v-race-${i}`, b.manifest, b.mediaType),
      ]);
      assert.deepEqual([ra.status, rb.status].sort(), [201, 409]);
      assert.equal(await target('team-a/race', `v-race-${i}`), ra.status === 201 ? a.digest : b.digest);
    }
  });

  it('GET /admin/policies lists the rules in force', async () => {
    const res = await client.fetch('/admin/policies');
    assert.equal(res.status, 200);
    const body = (await res.json()) as { policies: unknown[] };
    assert.deepEqual(body.policies, [{ repositories: ['team-a/**'], immutableTags: ['v*', 'release-*'] }]);
  });

  it('logs no error', () => {
    assert.deepEqual(server.loggedErrors(), []);
  });
});
