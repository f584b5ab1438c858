/**
 * The console's JSON API and assets over HTTP, without a browser: what it
 * answers, that bad input gets a 4xx (never a 500), that deletes follow the
 * registry's rules, and that `ui: false` turns the whole console off.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authDir } from '../helpers/auth.js';
import { makeImage, makeIndex, RegistryClient } from '../helpers/registry-client.js';
import { makeDataDir, removeStorage, startServer, type TestServer } from '../helpers/server.js';

async function json(url: string, init?: RequestInit): Promise<{ status: number; body: any }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

describe('console API', () => {
  let server: TestServer;
  const a = makeImage();
  const b = makeImage();
  const index = makeIndex([a, b]);

  before(async () => {
    server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
    const client = new RegistryClient(server.url);
    await client.pushImage('team/app', a);
    await client.pushImage('team/app', b);
    const res = await client.putManifest('team/app', 'multi', index.manifest, index.mediaType);
    assert.equal(res.status, 201);
    await client.pushImage('team/app', makeImage(), 'single');
    await client.pushImage('other/tool', makeImage(), 'latest');
  });
  after(() => server?.stop());

  it('lists repositories with counts and sizes, searches and sorts them', async () => {
    const all = await json(`${server.url}/ui/api/repositories`);
    assert.equal(all.status, 200);
    assert.deepEqual(all.body.repositories.map((r: { name: string }) => r.name), ['other/tool', 'team/app']);
    const team = all.body.repositories[1];
    assert.equal(team.tags, 2);
    assert.equal(team.manifests, 4);
    assert.ok(team.bytes > 0 && team.uniqueBytes === team.bytes);
    const found = await json(`${server.url}/ui/api/repositories?q=TOOL`);
    assert.deepEqual(found.body.repositories.map((r: { name: string }) => r.name), ['other/tool']);
    const bySize = await json(`${server.url}/ui/api/repositories?sort=size`);
    assert.equal(bySize.body.repositories[0].name, 'team/app');
    const paged = await json(`${server.url}/ui/api/repositories?limit=1&offset=1`);
    assert.deepEqual([paged.body.total, paged.body.repositories.map((r: { name: string }) => r.name)], [2, ['team/app']]);
  });

  it('lists tags with one platform row per child of an index, and pages them', async () => {
    const { status, body } = await json(`${server.url}/ui/api/tags?repository=team/app`);
    assert.equal(status, 200);
    assert.deepEqual(body.tags.map((t: { tag: string }) => t.tag), ['multi', 'single']);
    const multi = body.tags[0];
    assert.equal(multi.kind, 'index');
    assert.deepEqual(multi.platforms.map((p: { platform: string; digest: string }) => [p.platform, p.digest]), [['linux/amd64', a.digest], ['linux/arm64', b.digest]]);
    const sizeOf = (im: typeof a) => im.config.size + im.layers.reduce((s, l) => s + l.size, 0);
    assert.equal(multi.platforms[0].size, sizeOf(a));
    assert.equal(multi.size, sizeOf(a) + sizeOf(b));
    assert.equal(body.canDelete, true);
    const first = await json(`${server.url}/ui/api/tags?repository=team/app&limit=1`);
    assert.deepEqual([first.body.tags.map((t: { tag: string }) => t.tag), first.body.more], [['multi'], true]);
    const next = await json(`${server.url}/ui/api/tags?repository=team/app&limit=1&last=multi`);
    assert.deepEqual([next.body.tags.map((t: { tag: string }) => t.tag), next.body.more], [['single'], false]);
  });

  it('shows a manifest with its layers, the indexes holding it, and its tags', async () => {
    const image = await json(`${server.url}/ui/api/manifest?repository=team/app&reference=${a.digest}`);
    assert.equal(image.status, 200);
    assert.equal(image.body.kind, 'image');
    assert.deepEqual(image.body.layers.map((l: { digest: string }) => l.digest), a.layers.map((l) => l.digest));
    assert.equal(image.body.config.image.platform, 'linux/amd64');
    assert.deepEqual(image.body.parents, [index.digest]);
    const byTag = await json(`${server.url}/ui/api/manifest?repository=team/app&reference=multi`);
    assert.equal(byTag.body.digest, index.digest);
    assert.deepEqual(byTag.body.tags, ['multi']);
    assert.equal(byTag.body.manifests.length, 2);
  });

  it('counts pulls (manifest GETs, not HEADs) per manifest, shown on tags and manifests', async () => {
    const client = new RegistryClient(server.url);
    const accept = { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' };
    for (let i = 0; i < 3; i++) assert.equal((await client.fetch('/v2/other/tool/manifests/latest', { headers: accept })).status, 200);
    assert.equal((await client.fetch('/v2/other/tool/manifests/latest', { method: 'HEAD', headers: accept })).status, 200);
    const tags = await json(`${server.url}/ui/api/tags?repository=other/tool`);
    assert.equal(tags.body.tags[0].pulls, 3);
    assert.ok(tags.body.tags[0].lastPulled > Date.now() - 60_000);
    const m = await json(`${server.url}/ui/api/manifest?repository=other/tool&reference=latest`);
    assert.equal(m.body.pulls, 3);
    const never = await json(`${server.url}/ui/api/tags?repository=team/app`);
    assert.equal(never.body.tags[1].pulls, 0);
  });

  it('refuses changes a page on another site makes a browser send (CSRF), and still takes them from its own page and from scripts', async () => {
    const client = new RegistryClient(server.url);
    await client.pushImage('team/app', makeImage(), 'csrf');
    const from = (headers: Record<string, string>) => fetch(`${server.url}/ui/api/tag?repository=team/app&tag=csrf`, { method: 'DELETE', headers });
    const foreign: Record<string, string>[] = [{ origin: 'https://evil.example' }, { origin: 'null' }, { 'sec-fetch-site': 'cross-site' }];
    for (const headers of foreign) {
      const res = await from(headers);
      assert.equal(res.status, 403, JSON.stringify(headers));
    }
    const gc = await fetch(`${server.url}/ui/api/gc?dryRun=0`, { method: 'POST', headers: { origin: 'https://evil.example', 'content-type': 'text/plain' } });
    assert.equal(gc.status, 403, 'a simple cross-site POST does not run GC');
    assert.equal((await client.fetch('/v2/team/app/manifests/csrf', { method: 'HEAD' })).status, 200, 'nothing was deleted');
    assert.equal((await from({ origin: server.url, 'sec-fetch-site': 'same-origin' })).status, 200);
  });

  it('answers bad input with a 4xx, never a 500', async () => {
    const bad = [
      '/ui/api/tags',
      '/ui/api/tags?repository=',
      '/ui/api/tags?repository=../etc',
      '/ui/api/tags?repository=UPPER/case',
      '/ui/api/tags?repository=nobody/here',
      '/ui/api/tags?repository=team/app&limit=-1',
      '/ui/api/tags?repository=team/app&limit=abc',
      '/ui/api/tags?repository=team/app&repository=other/tool',
      '/ui/api/repositories?sort=evil',
      '/ui/api/repositories?offset=1e9',
      '/ui/api/manifest?repository=team/app',
      '/ui/api/manifest?repository=team/app&reference=sha256:nothex',
      '/ui/api/manifest?repository=team/app&reference=md5:00',
      `/ui/api/manifest?repository=team/app&reference=sha256:${'0'.repeat(64)}`,
      '/ui/api/manifest?repository=team/app&reference=%00',
      '/ui/api/nothing',
    ];
    for (const path of bad) {
      const res = await fetch(server.url + path);
      assert.ok(res.status >= 400 && res.status < 500, `${path}: ${res.status}`);
      const body = (await res.json()) as { errors: { code: string }[] };
      assert.ok(body.errors[0]!.code, path);
    }
    for (const [method, path] of [
      ['DELETE', '/ui/api/tag?repository=team/app&tag=no/such'],
      ['DELETE', '/ui/api/tag?repository=team/app'],
      ['DELETE', '/ui/api/manifest?repository=team/app&digest=xyz'],
      ['POST', '/ui/api/gc?dryRun=maybe'],
      ['PUT', '/ui/api/tags'],
    ] as const) {
      const res = await fetch(server.url + path, { method });
      assert.ok(res.status >= 400 && res.status < 500, `${method} ${path}: ${res.status}`);
    }
    assert.deepEqual(server.loggedErrors(), []);
  });

  it('deletes a tag and a manifest through the registry; the registry then no longer has them', async () => {
    const client = new RegistryClient(server.url);
    const gone = makeImage();
    await client.pushImage('team/app', gone, 'doomed');
    const del = await json(`${server.url}/ui/api/tag?repository=team/app&tag=doomed`, { method: 'DELETE' });
    assert.deepEqual([del.status, del.body], [200, { deleted: { repository: 'team/app', tag: 'doomed' } }]);
    assert.equal((await client.fetch('/v2/team/app/manifests/doomed', { method: 'HEAD' })).status, 404);
    assert.equal((await json(`${server.url}/ui/api/tag?repository=team/app&tag=doomed`, { method: 'DELETE' })).status, 404);
    const byDigest = await json(`${server.url}/ui/api/manifest?repository=team/app&digest=${gone.digest}`, { method: 'DELETE' });
    assert.equal(byDigest.status, 200);
    assert.equal((await client.fetch(`/v2/team/app/manifests/${gone.digest}`, { method: 'HEAD' })).status, 404);
  });

  it('serves the page: hashed, compressed bundles under a content security policy, the index for any view', async () => {
    const page = await fetch(`${server.url}/ui/repository?name=team%2Fapp`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /text\/html/);
    assert.match(page.headers.get('content-security-policy')!, /script-src 'self'/);
    const html = await page.text();
    const js = /src="\/ui\/(app-[A-Z0-9]+\.js)"/.exec(html)?.[1];
    const css = /href="\/ui\/(style-[A-Z0-9]+\.css)"/.exec(html)?.[1];
    assert.ok(js && css, html);
    const bundle = await fetch(`${server.url}/ui/${js}`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(bundle.status, 200);
    assert.equal(bundle.headers.get('content-encoding'), 'gzip');
    assert.match(bundle.headers.get('cache-control')!, /immutable/);
    assert.ok((await bundle.text()).length > 1000);
    assert.equal((await fetch(`${server.url}/ui`)).status, 200);
  });

  it('session: without auth, anyone may look and delete; the GC button is for loopback clients, like the admin API', async () => {
    const { body } = await json(`${server.url}/ui/api/session`);
    assert.deepEqual(body, { auth: false, tokenLogin: false, user: null, admin: true, deletes: true });
    const dry = await json(`${server.url}/ui/api/gc?dryRun=1`, { method: 'POST' });
    assert.equal(dry.status, 200);
    assert.equal(dry.body.dryRun, true);
  });
});

describe('console switched off or limited by the registry settings', () => {
  it('ui: false serves no console; deletes: false makes its deletes refused', async () => {
    const dir = authDir();
    writeFileSync(join(dir, 'berth.yaml'), 'ui: false\n');
    const off = await startServer({ args: ['--config', join(dir, 'berth.yaml')] });
    try {
      assert.equal((await fetch(`${off.url}/ui/`)).status, 404);
      assert.equal((await fetch(`${off.url}/ui/api/session`)).status, 404);
    } finally {
      await off.stop();
    }
    const noDeletes = await startServer({ args: ['--no-deletes'], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      await new RegistryClient(noDeletes.url).pushImage('x/app', makeImage(), 'v1');
      const tags = await json(`${noDeletes.url}/ui/api/tags?repository=x/app`);
      assert.equal(tags.body.canDelete, false);
      const res = await fetch(`${noDeletes.url}/ui/api/tag?repository=x/app&tag=v1`, { method: 'DELETE' });
      assert.equal(res.status, 405);
      assert.equal((await fetch(`${noDeletes.url}/v2/x/app/manifests/v1`, { method: 'HEAD' })).status, 200);
    } finally {
      await noDeletes.stop();
    }
  });

  it('read-only mode: the console offers no delete, refuses one, and runs GC only as a dry run', async () => {
    const dataDir = makeDataDir();
    const writable = await startServer({ dataDir, env: { BERTH_GC_ENABLED: 'false' } });
    await new RegistryClient(writable.url).pushImage('x/app', makeImage(), 'v1');
    await writable.stop({ keepData: true });
    const ro = await startServer({ dataDir, args: ['--read-only'] });
    try {
      const tags = await json(`${ro.url}/ui/api/tags?repository=x/app`);
      assert.equal(tags.body.canDelete, false);
      assert.equal((await fetch(`${ro.url}/ui/api/tag?repository=x/app&tag=v1`, { method: 'DELETE' })).status, 405);
      assert.equal((await fetch(`${ro.url}/ui/api/gc`, { method: 'POST' })).status, 405);
      assert.equal((await fetch(`${ro.url}/ui/api/gc?dryRun=1`, { method: 'POST' })).status, 200);
      assert.equal((await fetch(`${ro.url}/v2/x/app/manifests/v1`, { method: 'HEAD' })).status, 200);
    } finally {
      await ro.stop();
      rmSync(dataDir, { recursive: true, force: true });
      await removeStorage(dataDir);
    }
  });
});
