/**
 * Storage quotas (policies[].quota): usage counts each blob linked in the
 * namespace's repositories once; an upload commit or mount that would take
 * it over the quota is DENIED (403) naming the namespace, the usage and the
 * quota, and leaves nothing counted; concurrent pushes cannot both squeeze
 * under it; a manifest is refused while the namespace is over; usage is
 * exact after unlinks, visible at /admin/quotas and /metrics, recounted at
 * start for repositories that existed before the quota, and follows a
 * reload. SQLite and PostgreSQL (BERTH_TEST_METADATA=postgres).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { makeImage, randomBlob, RegistryClient } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { policyConfig } from '../helpers/policy.js';

async function quotaDenied(res: Response): Promise<string> {
  assert.equal(res.status, 403);
  const body = (await res.json()) as { errors: { code: string; message: string; detail: { namespace: string } }[] };
  assert.equal(body.errors[0]!.code, 'DENIED');
  return body.errors[0]!.message;
}

function upload(client: RegistryClient, repo: string, b: { digest: string; size: number; data: Buffer }): Promise<Response> {
  return client.fetch(`/v2/${repo}/blobs/uploads/?digest=${b.digest}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
    body: new Uint8Array(b.data),
  });
}

async function usage(client: RegistryClient, namespace: string): Promise<number> {
  const res = await client.fetch('/admin/quotas');
  assert.equal(res.status, 200);
  const body = (await res.json()) as { quotas: { namespace: string; usage: number; quota: number }[] };
  return body.quotas.find((q) => q.namespace === namespace)!.usage;
}

describe('storage quotas', () => {
  let server: TestServer;
  let client: RegistryClient;
  let config: string;
  before(async () => {
    config = policyConfig(`
policies:
  - repositories: ["q/**"]
    quota: 10KiB
  - repositories: ["race/**"]
    quota: 10000
`);
    server = await startServer({ args: ['--config', config], env: { BERTH_GC_ENABLED: 'false' } });
    client = new RegistryClient(server.url);
  });
  after(() => server.stop());

  it('counts a blob once per namespace however many repositories link it; refuses the upload that would exceed, naming quota, usage and namespace', async () => {
    const a = randomBlob(4096);
    const b = randomBlob(5120);
    const c = randomBlob(2048);
    assert.equal((await upload(client, 'q/one', a)).status, 201);
    assert.equal(await usage(client, 'q/**'), 4096);
    assert.equal((await upload(client, 'q/two', a)).status, 201);
    assert.equal((await upload(client, 'q/two/deeper', a)).status, 201);
    assert.equal(await usage(client, 'q/**'), 4096, 'the same blob in three repositories counts once');
    assert.equal((await upload(client, 'q/two', b)).status, 201);
    assert.equal(await usage(client, 'q/**'), 9216);
    const message = await quotaDenied(await upload(client, 'q/two', c));
    assert.equal(message, 'quota exceeded for namespace q/**: usage 9 KiB + 2 KiB would exceed the quota of 10 KiB');
    assert.equal(await usage(client, 'q/**'), 9216, 'nothing of the refused upload is counted');
    assert.equal((await client.fetch(`/v2/q/two/blobs/${c.digest}`, { method: 'HEAD' })).status, 404);
    // A blob already counted in the namespace adds nothing, so it is accepted at the limit.
    assert.equal((await upload(client, 'q/three', b)).status, 201);
    assert.equal(await usage(client, 'q/**'), 9216);
  });

  it('a chunked upload is refused at the chunk that takes it over, and a mount from outside the namespace too', async () => {
    const big = randomBlob(3000);
    await assert.rejects(client.pushBlobChunked('q/chunks', big, 1000), /PATCH: 403 .*quota exceeded for namespace q\/\*\*: usage 9 KiB \+ 1.95 KiB would exceed the quota of 10 KiB/);
    assert.equal((await upload(client, 'elsewhere/x', big)).status, 201);
    const mount = await client.fetch(`/v2/q/mounted/blobs/uploads/?mount=${big.digest}&from=elsewhere/x`, { method: 'POST' });
    assert.match(await quotaDenied(mount), /quota exceeded for namespace q\/\*\*/);
    assert.equal(await usage(client, 'q/**'), 9216);
  });

  it('unlinking a blob from every repository of the namespace gives its bytes back', async () => {
    const d = randomBlob(500);
    assert.equal((await upload(client, 'q/un', d)).status, 201);
    assert.equal((await upload(client, 'q/un2', d)).status, 201);
    assert.equal(await usage(client, 'q/**'), 9716);
    assert.equal((await client.fetch(`/v2/q/un/blobs/${d.digest}`, { method: 'DELETE' })).status, 202);
    assert.equal(await usage(client, 'q/**'), 9716, 'still linked in q/un2');
    assert.equal((await client.fetch(`/v2/q/un2/blobs/${d.digest}`, { method: 'DELETE' })).status, 202);
    assert.equal(await usage(client, 'q/**'), 9216);
  });

  it('concurrent uploads racing for the last bytes: exactly as many as fit are accepted', async () => {
    const blobs = Array.from({ length: 8 }, () => randomBlob(3000));
    const results = await Promise.all(blobs.map((b, i) => upload(client, `race/r${i}`, b)));
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 201).length, 3, `statuses: ${statuses}`);
    assert.equal(statuses.filter((s) => s === 403).length, 5, `statuses: ${statuses}`);
    assert.equal(await usage(client, 'race/**'), 9000);
  });

  it('usage is exported as metrics', async () => {
    const text = await (await client.fetch('/metrics')).text();
    assert.match(text, /berth_quota_usage_bytes\{namespace="q\/\*\*"\} 9216/);
    assert.match(text, /berth_quota_limit_bytes\{namespace="q\/\*\*"\} 10240/);
  });

  it('after a reload lowering the quota below usage, a new manifest is refused; raising it lets the push through', async () => {
    const image = makeImage({ layers: 1 });
    writeFileSync(config, 'policies:\n  - repositories: ["q/**"]\n    quota: 1KiB\n');
    assert.equal((await client.fetch('/admin/policies/reload', { method: 'POST' })).status, 200);
    const blobs = [image.config, ...image.layers];
    assert.equal((await upload(client, 'q/img', blobs[0]!)).status, 403);
    writeFileSync(config, 'policies:\n  - repositories: ["q/**"]\n    quota: 1MiB\n');
    server.process.kill('SIGHUP');
    for (let i = 0; i < 50 && (await (await client.fetch('/admin/quotas')).json() as { quotas: { quota: number }[] }).quotas[0]?.quota !== 1048576; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const b of blobs) assert.equal((await upload(client, 'q/img', b)).status, 201);
    writeFileSync(config, 'policies:\n  - repositories: ["q/**"]\n    quota: 1KiB\n');
    assert.equal((await client.fetch('/admin/policies/reload', { method: 'POST' })).status, 200);
    assert.match(await quotaDenied(await client.putManifest('q/img', 'v1', image.manifest, image.mediaType)), /usage .* is over the quota of 1 KiB/);
    // A reload whose file is wrong keeps the policies in force.
    writeFileSync(config, 'policies:\n  - repositories: ["q/**"]\n    quota: lots\n');
    const bad = await client.fetch('/admin/policies/reload', { method: 'POST' });
    assert.equal(bad.status, 409);
    assert.match(((await bad.json()) as { error: string }).error, /invalid policies\[0\]\.quota "lots"/);
    assert.equal(((await (await client.fetch('/admin/quotas')).json()) as { quotas: { quota: number }[] }).quotas[0]!.quota, 1024);
  });

  it('logs no error', () => {
    assert.deepEqual(server.loggedErrors(), []);
  });
});

describe('storage quotas on repositories that existed before', () => {
  it('a quota configured later counts what its repositories already hold, each blob once', async () => {
    const first = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
    const a = randomBlob(1000);
    const b = randomBlob(2000);
    const c = new RegistryClient(first.url);
    assert.equal((await upload(c, 'old/one', a)).status, 201);
    assert.equal((await upload(c, 'old/two', a)).status, 201);
    assert.equal((await upload(c, 'old/two', b)).status, 201);
    await first.stop({ keepData: true });
    const config = policyConfig('policies:\n  - repositories: ["old/**"]\n    quota: 1MiB\n');
    const second = await startServer({ dataDir: first.dataDir, args: ['--config', config], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      assert.equal(await usage(new RegistryClient(second.url), 'old/**'), 3000);
    } finally {
      await second.stop();
    }
  });
});
