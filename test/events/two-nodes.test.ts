/**
 * Two `berth serve` nodes on one metadata store (with
 * BERTH_TEST_METADATA=postgres: one PostgreSQL database, the scale-out
 * shape), both delivering to the same endpoint: every event arrives exactly
 * once (no crash here, so no redelivery), in order per repository.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { EventReceiver } from '../helpers/event-receiver.js';
import { makeImage, RegistryClient } from '../helpers/registry-client.js';
import { makeDataDir, startServer, type TestServer } from '../helpers/server.js';
import { notificationsConfig } from './support.js';

describe('notifications: two nodes', () => {
  const servers: TestServer[] = [];
  let r: EventReceiver | undefined;
  const dataDir = makeDataDir();
  after(async () => {
    for (const s of servers) await s.stop({ keepData: true });
    await r?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('deliver each event once, in order per repository', async () => {
    r = await new EventReceiver().start();
    // Small batches and a short poll make the nodes compete for the endpoint all the time.
    const config = notificationsConfig({ url: r.url, batch: 2, ignore: { actions: ['pull'] } });
    const env = { BERTH_GC_ENABLED: 'false' };
    const a = await startServer({ dataDir, env, args: ['--config', config], name: 'a' });
    servers.push(a);
    const b = await startServer({ dataDir, env, args: ['--config', config], name: 'b' });
    servers.push(b);
    const nodes = [new RegistryClient(a.url), new RegistryClient(b.url)];
    const pushed = new Map<string, string[]>();
    const pushes: Promise<void>[] = [];
    for (const repo of ['two/a', 'two/b', 'two/c', 'two/d']) {
      pushes.push(
        (async () => {
          for (let i = 0; i < 5; i++) {
            const image = makeImage({ layers: 1 });
            await nodes[i % 2]!.pushImage(repo, image, `t${i}`);
            pushed.set(repo, [...(pushed.get(repo) ?? []), image.digest]);
          }
        })(),
      );
    }
    await Promise.all(pushes);
    const expected = 20 * 3; // config, layer, manifest
    const events = await r.waitFor(`${expected} events`, (ev) => ev.length >= expected);
    await new Promise((res) => setTimeout(res, 1500)); // anything sent twice would arrive by now
    const all = r.events;
    const ids = all.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, 'no event delivered twice');
    assert.equal(all.length, expected);
    for (const [repo, digests] of pushed) {
      const got = events.filter((e) => e.target.repository === repo && e.target.tag !== undefined).map((e) => e.target.digest);
      assert.deepEqual(got, digests, `${repo} in push order`);
    }
    const sources = new Set(all.map((e) => e.source.instanceID));
    assert.ok(sources.size >= 1);
  });
});
