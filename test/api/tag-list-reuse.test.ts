/**
 * Tag pages are reused only while metadata's tags version is unchanged:
 * every change, through the API or by another process, shows at once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { makeImage, RegistryClient } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

describe('tag list reuse never serves a stale list', () => {
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
    client = new RegistryClient(server.url);
  });
  after(() => server.stop());

  const tags = async (repo: string) => ((await (await client.fetch(`/v2/${repo}/tags/list`)).json()) as { tags: string[] }).tags;

  it('shows tags added, moved and deleted right after the change', async () => {
    const a = makeImage();
    const b = makeImage();
    await client.pushImage('reuse/app', a, 'one');
    assert.deepEqual(await tags('reuse/app'), ['one']);
    assert.deepEqual(await tags('reuse/app'), ['one']); // served again
    await client.pushImage('reuse/app', b, 'two');
    assert.deepEqual(await tags('reuse/app'), ['one', 'two']);
    assert.equal((await client.fetch('/v2/reuse/app/manifests/one', { method: 'DELETE' })).status, 202);
    assert.deepEqual(await tags('reuse/app'), ['two']);
    // Deleting a manifest removes its tags by cascade: that is a change too.
    assert.equal((await client.fetch(`/v2/reuse/app/manifests/${b.digest}`, { method: 'DELETE' })).status, 202);
    assert.deepEqual(await tags('reuse/app'), []);
  });

  it('shows a repository removed and recreated by GC in another process as new', async () => {
    const a = makeImage({ layers: 1 });
    await client.pushImage('reuse/gone', a, 'x');
    assert.deepEqual(await tags('reuse/gone'), ['x']);
    await client.fetch(`/v2/reuse/gone/manifests/${a.digest}`, { method: 'DELETE' });
    assert.equal((await berth(['gc', '--data', server.dataDir, '--grace', '0'])).code, 0);
    assert.equal((await client.fetch('/v2/reuse/gone/tags/list')).status, 404, 'GC removed the empty repository');
    await client.pushImage('reuse/gone', a, 'y');
    assert.deepEqual(await tags('reuse/gone'), ['y']);
  });
});
