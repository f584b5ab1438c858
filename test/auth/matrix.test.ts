/**
 * The authorization matrix: users, groups and anonymous callers, by Basic
 * credentials and by tokens from Berth's endpoint, against every endpoint and
 * action. Each cell must succeed or be refused with the right code: 401
 * UNAUTHORIZED with a challenge when credentials are missing or wrong, 403
 * DENIED when a known caller is not allowed. Refused pushes leave no trace.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { accessOf, authDir, basic, getToken, writeHtpasswd } from '../helpers/auth.js';
import { blobFiles, listFiles } from '../helpers/data-dir.js';
import { bytes, makeImage, randomBlob, RegistryClient, withQuery, type Image } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

const PASSWORDS = { root: 'root-pw', alice: 'alice-pw', reader: 'reader-pw', carol: 'carol-pw', dave: 'dave-pw' };
const REPOS = ['team-a/app', 'public/app', 'other/app'] as const;
type Action = 'pull' | 'push' | 'delete';

/** The rules of the config below, restated: who may do what where. */
function oracle(user: string | null, repo: string, action: Action): boolean {
  if (user === 'root') return true;
  if (repo === 'public/app' && action === 'pull') return true; // anonymous rule: everyone
  if (user === 'alice' && repo === 'team-a/app') return true;
  if (user === 'reader' && repo === 'team-a/app' && action === 'pull') return true;
  if (user === 'dave' && repo === 'other/app' && action !== 'delete') return true;
  return false;
}

export const MATRIX_CONFIG = (htpasswd: string) => `
auth:
  htpasswd: ${htpasswd}
  failedLogins: 100000
  failedLoginsPerAddress: 100000
  groups:
    team-a: [alice]
    ops: [root]
  rules:
    - repositories: ["team-a/**"]
      groups: [team-a]
      actions: [pull, push, delete]
    - repositories: ["team-a/*", "public/*"]
      users: [reader]
      actions: [pull]
    - repositories: ["public/**"]
      anonymous: true
      actions: [pull]
    - repositories: ["**"]
      groups: [ops]
      actions: ["*"]
    - repositories: ["other/**"]
      users: [dave]
      actions: [pull, push]
  admins:
    groups: [ops]
`;

function tagOf(principal: string): string {
  return `by-${principal.replace(/[^a-z]+/g, '-')}`;
}

interface Principal {
  name: string;
  /** The user the rules see; null for anonymous. */
  user: string | null;
  /** Wrong credentials: always 401. */
  bad?: boolean;
  header(repo: string): Promise<string | undefined>;
}

describe('authorization matrix', () => {
  let server: TestServer;
  let root: RegistryClient;
  const images = new Map<string, Image>();
  let cells = 0;
  let fallbacks = 0;
  let hiddenFallbacks = 0;
  /** Repositories pushed by the catalog test (deleting a manifest does not remove its repository before GC). */
  const extraRepos: string[] = [];
  const refusedDigests: string[] = [];

  function principals(): Principal[] {
    const list: Principal[] = [
      { name: 'anonymous', user: null, header: async () => undefined },
      { name: 'wrong password', user: 'alice', bad: true, header: async () => basic('alice', 'not-her-password') },
      { name: 'unknown user', user: 'mallory', bad: true, header: async () => basic('mallory', 'x') },
      { name: 'garbage bearer', user: null, bad: true, header: async () => 'Bearer not.a.token' },
    ];
    for (const [u, p] of Object.entries(PASSWORDS)) {
      list.push({ name: `${u} (basic)`, user: u, header: async () => basic(u, p) });
      list.push({
        name: `${u} (token)`,
        user: u,
        header: async (repo) => `Bearer ${await getToken(server.url, basic(u, p), [`repository:${repo}:pull,push,delete`, 'repository:team-a/app:pull', 'registry:catalog:*'])}`,
      });
    }
    list.push({
      name: 'anonymous (token)',
      user: null,
      header: async (repo) => `Bearer ${await getToken(server.url, undefined, [`repository:${repo}:pull,push,delete`, 'registry:catalog:*'])}`,
    });
    return list;
  }

  before(async () => {
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), PASSWORDS);
    writeFileSync(join(dir, 'berth.yaml'), MATRIX_CONFIG(join(dir, 'htpasswd')));
    server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    root = new AuthedClient(server.url, basic('root', PASSWORDS.root));
    for (const repo of REPOS) {
      const image = makeImage();
      await root.pushImage(repo, image, 'v1');
      images.set(repo, image);
    }
  });
  after(async () => {
    assert.deepEqual(server.loggedErrors(), []);
    await server.stop();
  });

  /** Asserts a refusal: 401 + challenge for bad or missing credentials, 403 for a known user. */
  async function assertRefused(p: Principal, res: Response, what: string): Promise<void> {
    const text = await res.text();
    const expected = p.bad || p.user === null ? 401 : 403;
    assert.equal(res.status, expected, `${p.name}: ${what}: ${res.status} ${text}`);
    // HEAD answers carry no body.
    if (text) assert.equal((JSON.parse(text) as { errors: { code: string }[] }).errors[0]!.code, expected === 401 ? 'UNAUTHORIZED' : 'DENIED', `${p.name}: ${what}`);
    if (expected === 401) assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/auth\/token",service="berth"/, what);
  }

  async function cell(p: Principal, allowed: boolean, res: Response, okStatus: number, what: string): Promise<void> {
    cells++;
    if (allowed) {
      const text = await res.text();
      assert.equal(res.status, okStatus, `${p.name}: ${what} should succeed: ${res.status} ${text}`);
    } else {
      await assertRefused(p, res, what);
    }
  }

  it('every principal × repository × endpoint gets the outcome the rules say', async (t) => {
    for (const p of principals()) {
      for (const repo of REPOS) {
        const auth = await p.header(repo);
        const h = (extra: Record<string, string> = {}): Record<string, string> => (auth ? { authorization: auth, ...extra } : extra);
        const f = (path: string, init: RequestInit = {}) => fetch(server.url + path, { redirect: 'manual', ...init, headers: h((init.headers as Record<string, string>) ?? {}) });
        const can = (a: Action) => !p.bad && oracle(p.user, repo, a);
        const image = images.get(repo)!;
        const what = (s: string) => `${s} ${repo}`;

        // pull
        await cell(p, can('pull'), await f(`/v2/${repo}/tags/list`), 200, what('GET tags'));
        await cell(p, can('pull'), await f(`/v2/${repo}/manifests/v1`, { headers: { accept: image.mediaType } }), 200, what('GET manifest'));
        await cell(p, can('pull'), await f(`/v2/${repo}/manifests/v1`, { method: 'HEAD', headers: { accept: image.mediaType } }), 200, what('HEAD manifest'));
        await cell(p, can('pull'), await f(`/v2/${repo}/blobs/${image.config.digest}`), 200, what('GET blob'));
        await cell(p, can('pull'), await f(`/v2/${repo}/blobs/${image.layers[0]!.digest}`, { method: 'HEAD' }), 200, what('HEAD blob'));
        await cell(p, can('pull'), await f(`/v2/${repo}/referrers/${image.digest}`), 200, what('GET referrers'));

        // push
        const b = randomBlob(64);
        if (!can('push')) refusedDigests.push(b.digest);
        await cell(p, can('push'), await f(`/v2/${repo}/blobs/uploads/?digest=${b.digest}`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: bytes(b.data) }), 201, what('POST monolithic'));
        const start = await f(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const location = start.headers.get('location');
        await cell(p, can('push'), start, 202, what('POST upload'));
        // An upload session root opened: others may not write to it.
        const session = can('push') ? location! : await root.startUpload(repo);
        const chunk = randomBlob(32);
        if (!can('push')) refusedDigests.push(chunk.digest);
        const patch = await f(session, { method: 'PATCH', headers: { 'content-type': 'application/octet-stream', 'content-range': `0-31` }, body: bytes(chunk.data) });
        const next = patch.headers.get('location');
        await cell(p, can('push'), patch, 202, what('PATCH upload'));
        await cell(p, can('push'), await f(withQuery(can('push') ? next! : session, `digest=${chunk.digest}`), { method: 'PUT' }), 201, what('PUT upload'));
        if (!can('push')) {
          const status = await root.fetch(session);
          assert.equal(status.headers.get('range'), '0-0', `${p.name}: refused PATCH left the upload at offset 0`);
        }
        await cell(p, can('push'), await f(`/v2/${repo}/manifests/${tagOf(p.name)}`, { method: 'PUT', headers: { 'content-type': image.mediaType }, body: bytes(image.manifest) }), 201, what('PUT manifest'));
        // Mount from team-a/app: allowed pushers get 201 when they may pull the source, else the upload fallback (202).
        const source = images.get('team-a/app')!.layers[1]!.digest;
        // (dave pushes to other/app but may not pull team-a/app: his mount falls back to an upload.)
        const mountOk = can('push') ? (oracle(p.user, 'team-a/app', 'pull') ? 201 : 202) : 0;
        if (can('push') && !oracle(p.user, 'team-a/app', 'pull')) fallbacks++;
        await cell(p, can('push'), await f(`/v2/${repo}/blobs/uploads/?mount=${source}&from=team-a/app`, { method: 'POST' }), mountOk, what('POST mount'));
        // A blob only other/app holds (pullable by root and dave alone): mounted
        // without `from`, or with `from` naming it, only by those who may pull it;
        // everyone else gets the upload fallback, and the blob stays unreadable
        // through their repository (no 201-vs-202 oracle, no read-through).
        for (const query of ['', '&from=other/app']) {
          const hidden = randomBlob(48);
          assert.equal((await root.pushBlob('other/app', hidden)).status, 201);
          // A token is the capability: it must grant pull on the source itself (its scopes name `repo` and team-a/app).
          const mayPullSource = oracle(p.user, 'other/app', 'pull') && (!p.name.endsWith('(token)') || repo === 'other/app');
          const expected = can('push') ? (mayPullSource ? 201 : 202) : 0;
          if (expected === 202) hiddenFallbacks++;
          await cell(p, can('push'), await f(`/v2/${repo}/blobs/uploads/?mount=${hidden.digest}${query}`, { method: 'POST' }), expected, what(`POST mount${query || ' without from'} of a blob only other/app holds`));
          if (repo !== 'other/app') {
            const through = await root.fetch(`/v2/${repo}/blobs/${hidden.digest}`, { method: 'HEAD' });
            assert.equal(through.status, expected === 201 ? 200 : 404, `${p.name}: ${what('the hidden blob is readable through the mount target only after a 201')}`);
          }
        }

        // delete
        if (can('delete')) {
          await root.putManifest(repo, 'doomed', image.manifest, image.mediaType);
          await cell(p, true, await f(`/v2/${repo}/manifests/doomed`, { method: 'DELETE' }), 202, what('DELETE tag'));
        } else {
          await cell(p, false, await f(`/v2/${repo}/manifests/v1`, { method: 'DELETE' }), 0, what('DELETE tag'));
          await cell(p, false, await f(`/v2/${repo}/manifests/${image.digest}`, { method: 'DELETE' }), 0, what('DELETE manifest'));
        }
        await cell(p, can('delete'), await f(`/v2/${repo}/blobs/${can('delete') ? randomBlob(8).digest : image.config.digest}`, { method: 'DELETE' }), 404, what('DELETE blob'));
      }

      // Registry-wide endpoints.
      const auth = await p.header('public/app');
      const h: Record<string, string> = auth ? { authorization: auth } : {};
      const base = await fetch(`${server.url}/v2/`, { headers: h });
      cells++;
      if (p.bad || p.name === 'anonymous') await assertRefused(p, base, 'GET /v2/');
      else assert.equal(base.status, 200, `${p.name}: GET /v2/`);
      const catalog = await fetch(`${server.url}/v2/_catalog`, { headers: h });
      cells++;
      if (p.bad) await assertRefused(p, catalog, 'catalog');
      else {
        assert.equal(catalog.status, 200, `${p.name}: catalog`);
        const repos = ((await catalog.json()) as { repositories: string[] }).repositories;
        assert.deepEqual(repos, REPOS.filter((r) => oracle(p.user, r, 'pull')).sort(), `${p.name}: the catalog lists exactly what the caller may pull`);
      }
      for (const [method, path] of [['POST', '/admin/gc?dryRun=1'], ['GET', '/metrics']] as const) {
        const res = await fetch(server.url + path, { method, headers: h });
        cells++;
        if (p.user === 'root' && !p.bad) assert.equal(res.status, 200, `${p.name}: ${path}`);
        else {
          const expected = p.bad || p.name === 'anonymous' ? 401 : 403;
          assert.equal(res.status, expected, `${p.name}: ${method} ${path}: ${res.status}`);
        }
      }
    }
    assert.ok(cells > 400, `${cells} cells`);
    assert.equal(fallbacks, 2, 'the mount fallback was exercised (dave, by Basic and by token)');
    assert.ok(hiddenFallbacks >= 8, `mounts of a blob the caller may not pull fell back to uploads (${hiddenFallbacks})`);
    t.diagnostic(`${cells} matrix cells`);
  });

  it('tokens carry only the granted access', async () => {
    const t = await getToken(server.url, basic('reader', PASSWORDS.reader), ['repository:team-a/app:pull,push,delete', 'repository:other/app:*', 'repository:public/app:*']);
    assert.deepEqual(accessOf(t), [
      { type: 'repository', name: 'team-a/app', actions: ['pull'] },
      { type: 'repository', name: 'public/app', actions: ['pull'] },
    ]);
    const r = await getToken(server.url, basic('root', PASSWORDS.root), ['repository:x/y:*']);
    assert.deepEqual(accessOf(r), [{ type: 'repository', name: 'x/y', actions: ['*'] }]);
    // The OAuth2 password grant (POST) grants the same.
    const form = new URLSearchParams({ grant_type: 'password', username: 'reader', password: PASSWORDS.reader, service: 'berth', client_id: 'test', scope: 'repository:team-a/app:pull,push repository:other/app:pull' });
    const post = await fetch(`${server.url}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form });
    assert.equal(post.status, 200);
    const oauth = (await post.json()) as { access_token: string; scope: string };
    assert.deepEqual(accessOf(oauth.access_token), [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }]);
    assert.equal(oauth.scope, 'repository:team-a/app:pull', 'the answer names the granted scope, not the requested one');
    // A form too large is refused cleanly.
    const huge = await fetch(`${server.url}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=password&scope=${'x'.repeat(20_000)}` });
    assert.ok(huge.status >= 400 && huge.status < 500, `oversized form: ${huge.status}`);
    const pulled = await fetch(`${server.url}/v2/team-a/app/tags/list`, { headers: { authorization: `Bearer ${oauth.access_token}` } });
    assert.equal(pulled.status, 200);
    form.set('password', 'wrong');
    assert.equal((await fetch(`${server.url}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form })).status, 401);
    form.set('grant_type', 'refresh_token');
    assert.equal((await fetch(`${server.url}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form })).status, 400);
    const bad = await fetch(`${server.url}/auth/token?service=berth&scope=repository:team-a/app:pull`, { headers: { authorization: basic('alice', 'wrong') } });
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get('www-authenticate') ?? '', /^Basic /);
    assert.equal(bad.headers.get('cache-control'), 'no-store');
  });

  it('the catalog paginates over only what the caller may pull', async () => {
    const image = makeImage({ layers: 1 });
    const extra = ['aaa/hidden', 'public/b', 'team-a/c', 'team-a/d/e', 'zzz/hidden', 'other/f', 'team-a/g'];
    for (const repo of extra) await root.pushImage(repo, image, 'v1');
    const all = ((await (await root.fetch('/v2/_catalog')).json()) as { repositories: string[] }).repositories;
    for (const [user, pw] of [['alice', PASSWORDS.alice], ['reader', PASSWORDS.reader], ['carol', PASSWORDS.carol]] as const) {
      const seen: string[] = [];
      let next: string | undefined = '/v2/_catalog?n=2';
      while (next) {
        const res: Response = await fetch(server.url + next, { headers: { authorization: basic(user, pw) } });
        assert.equal(res.status, 200);
        const page = ((await res.json()) as { repositories: string[] }).repositories;
        assert.ok(page.length <= 2);
        seen.push(...page);
        next = /^<([^>]+)>; rel="next"$/.exec(res.headers.get('link') ?? '')?.[1];
      }
      assert.deepEqual(seen, all.filter((r) => (user === 'alice' ? r.startsWith('team-a/') : user === 'reader' ? /^(team-a|public)\/[^/]+$/.test(r) : false) || r.startsWith('public/')), user);
    }
    await fetch(`${server.url}/v2/_catalog`); // anonymous: public only
    const anon = ((await (await fetch(`${server.url}/v2/_catalog`)).json()) as { repositories: string[] }).repositories;
    assert.deepEqual(anon, all.filter((r) => r.startsWith('public/')));
    // Leave the repository set as the next test expects it.
    for (const repo of extra) {
      await root.fetch(`/v2/${repo}/manifests/${image.digest}`, { method: 'DELETE' });
    }
    extraRepos.push(...extra);
  });

  it('refused pushes left no trace: no repository, no blob, no tag', async () => {
    // Pushes into a repository that does not exist, by everyone but root.
    for (const p of principals()) {
      if (p.user === 'root' && !p.bad) continue;
      const repo = `fresh/${p.name.replace(/[^a-z]+/g, '-').replace(/-$/, '')}`;
      const auth = await p.header(repo);
      const image = makeImage({ layers: 1 });
      const h: Record<string, string> = auth ? { authorization: auth } : {};
      for (const b of [image.config, image.layers[0]!]) {
        refusedDigests.push(b.digest);
        const res = await fetch(`${server.url}/v2/${repo}/blobs/uploads/?digest=${b.digest}`, { method: 'POST', headers: h, body: bytes(b.data) });
        await assertRefused(p, res, `push blob to ${repo}`);
      }
      const res = await fetch(`${server.url}/v2/${repo}/manifests/v1`, { method: 'PUT', headers: { ...h, 'content-type': image.mediaType }, body: bytes(image.manifest) });
      await assertRefused(p, res, `push manifest to ${repo}`);
    }
    const catalog = (await (await root.fetch('/v2/_catalog')).json()) as { repositories: string[] };
    assert.deepEqual(catalog.repositories, [...REPOS, ...extraRepos].sort(), 'no repository appeared');
    for (const d of refusedDigests) assert.deepEqual(await blobFiles(server, d), [], `no bytes stored for refused ${d}`);
    for (const repo of REPOS) {
      const tags = ((await (await root.fetch(`/v2/${repo}/tags/list`)).json()) as { tags: string[] }).tags;
      const pushers = principals().filter((p) => !p.bad && oracle(p.user, repo, 'push'));
      assert.deepEqual(tags, ['v1', ...pushers.map((p) => tagOf(p.name))].sort(), `${repo}: only the tags of those allowed to push`);
    }
    // Refused requests opened no upload sessions (root opened one per repository and principal).
    assert.ok(listFiles(join(server.dataDir, 'uploads')).length <= principals().length * REPOS.length * 2);
  });
});

/** A RegistryClient that sends one Authorization header with every request. */
class AuthedClient extends RegistryClient {
  constructor(
    url: string,
    private readonly auth: string,
  ) {
    super(url);
  }
  override fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(this.url + path, { redirect: 'manual', ...init, headers: { authorization: this.auth, ...((init.headers as Record<string, string>) ?? {}) } });
  }
}
