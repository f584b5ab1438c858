/**
 * GET /v2/<name>/tags/list and GET /v2/_catalog: lexical (byte) order,
 * pagination with n and last, and the Link header that pages through
 * everything exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { errorCode, makeImage, OCI_MANIFEST, RegistryClient } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

/** The target of a `Link: <...>; rel="next"` header, or undefined. */
function nextLink(res: Response): string | undefined {
  const link = res.headers.get('link');
  if (link === null) return undefined;
  const m = /^<([^>]+)>;\s*rel="next"$/.exec(link);
  assert.ok(m, `malformed Link header: ${link}`);
  return m[1];
}

/** Follows Link headers from `first`, returning every page's items. */
async function allPages(client: RegistryClient, first: string, key: 'tags' | 'repositories'): Promise<string[][]> {
  const pages: string[][] = [];
  let path: string | undefined = first;
  while (path !== undefined) {
    assert.ok(pages.length < 50, 'pagination does not end');
    const res = await client.fetch(path);
    assert.equal(res.status, 200, path);
    const body = (await res.json()) as Record<string, string[]>;
    pages.push(body[key]!);
    path = nextLink(res);
  }
  return pages;
}

describe('tags list', () => {
  let server: TestServer;
  let client: RegistryClient;
  const repo = 'lists/tagged';
  // Byte order: uppercase before '_' before lowercase; '-' < '.' < '_'; "v1.10" < "v1.9".
  const SORTED = ['0', 'A', 'Z9', '_x', 'a', 'a-1', 'a.1', 'a_1', 'b', 'latest', 'v1.10', 'v1.9'];

  before(async () => {
    server = await startServer();
    client = new RegistryClient(server.url);
    const image = makeImage({ layers: 1 });
    const other = makeImage({ layers: 1 });
    await client.pushImage(repo, image);
    await client.pushImage(repo, other);
    // Pushed out of order, and over two manifests.
    const shuffled = ['v1.9', 'a_1', 'latest', 'A', 'b', 'a', 'v1.10', '_x', 'a.1', '0', 'a-1', 'Z9'];
    for (const [i, tag] of shuffled.entries()) {
      const m = i % 2 === 0 ? image : other;
      const res = await client.putManifest(repo, tag, m.manifest, OCI_MANIFEST);
      assert.equal(res.status, 201);
    }
  });
  after(() => server.stop());

  it('lists every tag in lexical (byte) order', async () => {
    const res = await client.fetch(`/v2/${repo}/tags/list`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json(;|$)/);
    assert.equal(res.headers.get('link'), null);
    assert.deepEqual(await res.json(), { name: repo, tags: SORTED });
  });

  it('?n=3 returns the first 3 and a Link to the next page', async () => {
    const res = await client.fetch(`/v2/${repo}/tags/list?n=3`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { name: repo, tags: ['0', 'A', 'Z9'] });
    assert.equal(res.headers.get('link'), `</v2/${repo}/tags/list?n=3&last=Z9>; rel="next"`);
  });

  for (const n of [1, 3, 5, 6, 11, 12]) {
    it(`following Link with n=${n} visits every tag exactly once; the last page has no Link`, async () => {
      const pages = await allPages(client, `/v2/${repo}/tags/list?n=${n}`, 'tags');
      assert.deepEqual(pages.flat(), SORTED);
      assert.equal(pages.length, Math.ceil(SORTED.length / n));
      for (const p of pages.slice(0, -1)) assert.equal(p.length, n);
    });
  }

  it('n larger than the number of tags returns all of them without Link', async () => {
    const res = await client.fetch(`/v2/${repo}/tags/list?n=1000`);
    assert.deepEqual(((await res.json()) as { tags: string[] }).tags, SORTED);
    assert.equal(res.headers.get('link'), null);
  });

  it('last=<tag> returns the tags strictly after it', async () => {
    const after = async (q: string) => ((await (await client.fetch(`/v2/${repo}/tags/list?${q}`)).json()) as { tags: string[] }).tags;
    assert.deepEqual(await after('last=a'), ['a-1', 'a.1', 'a_1', 'b', 'latest', 'v1.10', 'v1.9']);
    assert.deepEqual(await after('last=v1.10'), ['v1.9']);
    assert.deepEqual(await after('last=v1.9'), []);
    // A `last` that is not a tag still positions the listing lexically.
    assert.deepEqual(await after('last=a0'), ['a_1', 'b', 'latest', 'v1.10', 'v1.9']);
    assert.deepEqual(await after('n=2&last=A'), ['Z9', '_x']);
  });

  it('last= with the final page size exactly n has no Link', async () => {
    const res = await client.fetch(`/v2/${repo}/tags/list?n=2&last=latest`);
    assert.deepEqual(((await res.json()) as { tags: string[] }).tags, ['v1.10', 'v1.9']);
    assert.equal(res.headers.get('link'), null);
  });

  it('n=0 returns an empty list and no Link', async () => {
    const res = await client.fetch(`/v2/${repo}/tags/list?n=0`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { name: repo, tags: [] });
    assert.equal(res.headers.get('link'), null);
  });

  it('a malformed n → 400 PAGINATION_NUMBER_INVALID', async () => {
    for (const n of ['-1', 'abc', '1.5']) {
      const res = await client.fetch(`/v2/${repo}/tags/list?n=${n}`);
      assert.equal(res.status, 400, n);
      assert.equal(await errorCode(res), 'PAGINATION_NUMBER_INVALID');
    }
  });

  it('unknown repository → 404 NAME_UNKNOWN', async () => {
    const res = await client.fetch('/v2/lists/nobody/tags/list');
    assert.equal(res.status, 404);
    assert.equal(await errorCode(res), 'NAME_UNKNOWN');
  });

  it('a repository with blobs but no tags lists no tags', async () => {
    const image = makeImage({ layers: 1 });
    await client.pushImage('lists/untagged', image);
    const res = await client.fetch('/v2/lists/untagged/tags/list');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { name: 'lists/untagged', tags: [] });
  });

  it('an invalid repository name → 400 NAME_INVALID', async () => {
    const res = await client.fetch('/v2/Lists/UPPER/tags/list');
    assert.equal(res.status, 400);
    assert.equal(await errorCode(res), 'NAME_INVALID');
  });
});

describe('catalog', () => {
  let server: TestServer;
  let client: RegistryClient;
  // Byte order: '-' < '.' < '/' < '_'.
  const SORTED = ['0repo', 'alpha', 'alpha-b', 'alpha.b', 'alpha/one', 'alpha_b', 'beta/x/y', 'zeta'];

  before(async () => {
    server = await startServer();
    client = new RegistryClient(server.url);
    for (const repo of ['zeta', 'alpha/one', 'beta/x/y', 'alpha_b', '0repo', 'alpha.b', 'alpha', 'alpha-b']) {
      await client.pushImage(repo, makeImage({ layers: 1 }), 'latest');
    }
  });
  after(() => server.stop());

  it('lists every repository, sorted', async () => {
    const res = await client.fetch('/v2/_catalog');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json(;|$)/);
    assert.equal(res.headers.get('link'), null);
    assert.deepEqual(await res.json(), { repositories: SORTED });
  });

  it('?n=4 returns the first 4 and a Link; a `last` with a slash is URL-encoded in it', async () => {
    const res = await client.fetch('/v2/_catalog?n=4');
    assert.deepEqual(await res.json(), { repositories: ['0repo', 'alpha', 'alpha-b', 'alpha.b'] });
    assert.equal(res.headers.get('link'), '</v2/_catalog?n=4&last=alpha.b>; rel="next"');
    const res2 = await client.fetch('/v2/_catalog?n=4&last=alpha.b');
    assert.deepEqual(await res2.json(), { repositories: ['alpha/one', 'alpha_b', 'beta/x/y', 'zeta'] });
    assert.equal(res2.headers.get('link'), null);
    const res3 = await client.fetch('/v2/_catalog?n=1&last=alpha.b');
    assert.deepEqual(await res3.json(), { repositories: ['alpha/one'] });
    assert.equal(res3.headers.get('link'), '</v2/_catalog?n=1&last=alpha%2Fone>; rel="next"');
  });

  for (const n of [1, 3, 8]) {
    it(`following Link with n=${n} visits every repository exactly once`, async () => {
      const pages = await allPages(client, `/v2/_catalog?n=${n}`, 'repositories');
      assert.deepEqual(pages.flat(), SORTED);
      assert.equal(pages.length, Math.ceil(SORTED.length / n));
    });
  }

  it('last=<name> returns the repositories strictly after it', async () => {
    const res = await client.fetch(`/v2/_catalog?last=${encodeURIComponent('alpha/one')}`);
    assert.deepEqual(await res.json(), { repositories: ['alpha_b', 'beta/x/y', 'zeta'] });
    const res2 = await client.fetch('/v2/_catalog?last=zeta');
    assert.deepEqual(await res2.json(), { repositories: [] });
  });

  it('n=0 returns an empty list and no Link', async () => {
    const res = await client.fetch('/v2/_catalog?n=0');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { repositories: [] });
    assert.equal(res.headers.get('link'), null);
  });

  it('a malformed n → 400 PAGINATION_NUMBER_INVALID', async () => {
    const res = await client.fetch('/v2/_catalog?n=x');
    assert.equal(res.status, 400);
    assert.equal(await errorCode(res), 'PAGINATION_NUMBER_INVALID');
  });
});
