/**
 * Notifications from a durable outbox, against a real receiver on loopback:
 * what arrives, in which order, after failures, crashes and dead-lettering.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { EventReceiver, type ReceivedEvent } from '../helpers/event-receiver.js';
import { pauseControl } from '../helpers/pause.js';
import { berth } from '../helpers/berth-cli.js';
import { authDir, basic, writeHtpasswd } from '../helpers/auth.js';
import { ReferenceTree } from '../helpers/reference-tree.js';
import { blobFiles, overwriteBlob } from '../helpers/data-dir.js';
import { makeImage, RegistryClient } from '../helpers/registry-client.js';
import { makeDataDir, startServer, TEST_METADATA, testStore, type TestServer } from '../helpers/server.js';
import { verify } from '../../src/events/signing.js';
import { digestOfKey } from '../../src/storage/blob-store.js';
import { eventsReport, notificationsConfig, until } from './support.js';

const servers: TestServer[] = [];
const receivers: EventReceiver[] = [];
after(async () => {
  for (const s of servers) await s.stop();
  for (const r of receivers) await r.stop();
});

async function receiver(): Promise<EventReceiver> {
  const r = await new EventReceiver().start();
  receivers.push(r);
  return r;
}

async function serve(args: string[], extra: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  const s = await startServer({ ...extra, args: [...args, ...(extra.args ?? [])], env: { BERTH_GC_ENABLED: 'false', ...extra.env } });
  servers.push(s);
  return s;
}

const manifestEvents = (events: ReceivedEvent[]) => events.filter((e) => e.target.mediaType !== 'application/octet-stream' && e.action !== 'pull');

describe('notifications: delivery', () => {
  it('without an endpoint, a push writes no outbox rows at all', async (t) => {
    if (TEST_METADATA !== 'sqlite') return t.skip('reads the SQLite file directly');
    const s = await serve([]);
    await new RegistryClient(s.url).pushImage('quiet/app', makeImage({ layers: 2 }), 'v1');
    const db = new Database(join(s.dataDir, 'metadata.db'), { readonly: true });
    try {
      assert.equal((db.prepare('SELECT count(*) AS n FROM event_outbox').get() as { n: number }).n, 0);
      assert.equal((db.prepare('SELECT count(*) AS n FROM event_endpoints').get() as { n: number }).n, 0);
    } finally {
      db.close();
    }
  });

  it('push, tag move, pull and deletes arrive in order, as the reference envelope, signed', async () => {
    const r = await receiver();
    const s = await serve(['--config', notificationsConfig({ url: r.url, secret: 'k3y' })]);
    const client = new RegistryClient(s.url);
    const a = makeImage({ layers: 2 });
    const b = makeImage({ layers: 1 });
    await client.pushImage('ev/app', a, 'v1');
    await client.pushImage('ev/app', b, 'v1'); // the tag moves
    assert.equal((await client.fetch(`/v2/ev/app/manifests/v1`, { headers: { Accept: b.mediaType } })).status, 200);
    assert.equal((await client.fetch(`/v2/ev/app/manifests/v1`, { method: 'DELETE' })).status, 202);
    assert.equal((await client.fetch(`/v2/ev/app/manifests/${a.digest}`, { method: 'DELETE' })).status, 202);
    const events = await r.waitFor('5 manifest events', (ev) => manifestEvents(ev).length >= 4 && ev.some((e) => e.action === 'pull'));
    const m = manifestEvents(events).map((e) => [e.action, e.target.digest, e.target.tag]);
    assert.deepEqual(m, [
      ['push', a.digest, 'v1'],
      ['push', b.digest, 'v1'],
      ['delete', undefined, 'v1'],
      ['delete', a.digest, undefined],
    ]);
    const blobPushes = events.filter((e) => e.action === 'push' && e.target.mediaType === 'application/octet-stream');
    assert.equal(blobPushes.length, 5, 'one push per blob');
    const pull = events.find((e) => e.action === 'pull' && e.target.tag === 'v1')!;
    assert.equal(pull.target.digest, b.digest);
    assert.equal(pull.request.method, 'GET');
    const push = events[events.findIndex((e) => e.action === 'push' && e.target.digest === a.digest)]!;
    assert.deepEqual(Object.keys(push), ['id', 'timestamp', 'action', 'target', 'request', 'actor', 'source']);
    assert.equal(push.target.url, `${s.url}/v2/ev/app/manifests/${a.digest}`);
    assert.equal(push.target.size, a.manifest.length);
    assert.equal(push.target.length, a.manifest.length);
    assert.equal(push.request.method, 'PUT');
    assert.equal(push.request.host, s.host);
    assert.match(push.request.addr, /^127\.0\.0\.1:\d+$/);
    assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'ids are unique');
    for (const env of r.envelopes) {
      assert.equal(env.headers['content-type'], 'application/vnd.docker.distribution.events.v1+json');
      assert.ok(verify('k3y', env.body, String(env.headers['berth-signature'])), 'signature verifies');
      assert.ok(!verify('other', env.body, String(env.headers['berth-signature'])));
    }
  });

  it('a receiver answering 500 for a while then recovering gets every event, in order per repository', async () => {
    const r = await receiver();
    r.failWith = 500;
    const s = await serve(['--config', notificationsConfig({ url: r.url, backoff: '100ms', maxbackoff: '400ms', threshold: 1, batch: 3, ignore: { actions: ['pull'] } })]);
    const client = new RegistryClient(s.url);
    const pushed = new Map<string, string[]>();
    for (let i = 0; i < 4; i++) {
      for (const repo of ['order/a', 'order/b', 'order/c']) {
        const image = makeImage({ layers: 1 });
        await client.pushImage(repo, image, `t${i}`);
        pushed.set(repo, [...(pushed.get(repo) ?? []), image.digest]);
      }
    }
    await until('three refusals', () => r.refused >= 3);
    const during = (await eventsReport(s.url)).find((e) => e.name === 'test')!;
    assert.ok(during.pending > 0 && during.failed > 0, JSON.stringify(during));
    assert.match(during.lastError ?? '', /500/);
    r.failWith = undefined;
    const events = await r.waitFor('12 manifest pushes', (ev) => manifestEvents(ev).length >= 12);
    for (const [repo, digests] of pushed) {
      const got = manifestEvents(events).filter((e) => e.target.repository === repo).map((e) => e.target.digest);
      assert.deepEqual(got, digests, `${repo} in push order`);
    }
    await until('nothing pending', async () => (await eventsReport(s.url)).find((e) => e.name === 'test')!.pending === 0);
  });

  it('kill -9 between a manifest commit and its delivery: delivered after restart', async () => {
    const r = await receiver();
    const config = notificationsConfig({ url: r.url, timeout: '1s', ignore: { mediatypes: ['application/octet-stream'], actions: ['pull'] } });
    const pause = pauseControl('events-before-send');
    const dataDir = makeDataDir();
    const first = await serve(['--config', config], { dataDir, env: pause.env });
    const image = makeImage({ layers: 1 });
    await new RegistryClient(first.url).pushImage('crash/app', image, 'v1');
    await pause.reached('events-before-send'); // committed and claimed, not yet sent
    await first.kill();
    pause.cleanup();
    assert.equal(r.events.length, 0);
    const second = await serve(['--config', config], { dataDir, addr: first.host });
    const events = await r.waitFor('the manifest push', (ev) => ev.length >= 1);
    assert.deepEqual(events.map((e) => [e.action, e.target.repository, e.target.digest, e.target.tag]), [['push', 'crash/app', image.digest, 'v1']]);
    assert.equal((await new RegistryClient(second.url).fetch('/v2/crash/app/manifests/v1', { headers: { Accept: image.mediaType } })).status, 200);
  });

  it('a receiver down longer than the maximum age: events are dead-lettered, and a replay delivers them', async () => {
    const r = await receiver();
    const port = r.port;
    await r.stop();
    const s = await serve(['--config', notificationsConfig({ url: r.url, maxage: '1s', backoff: '100ms', maxbackoff: '200ms', threshold: 1, ignore: { actions: ['pull'] } })]);
    const image = makeImage({ layers: 1 });
    await new RegistryClient(s.url).pushImage('dead/app', image, 'v1');
    await until('dead letters', async () => {
      const e = (await eventsReport(s.url)).find((x) => x.name === 'test')!;
      return e.deadLettered === 3 && e.pending === 0;
    });
    await r.start(port);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(r.events.length, 0, 'dead letters are not sent by themselves');
    const bad = await fetch(`${s.url}/admin/events/replay?endpoint=nope`, { method: 'POST' });
    assert.equal(bad.status, 404);
    const res = await fetch(`${s.url}/admin/events/replay?endpoint=test`, { method: 'POST' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { endpoint: 'test', replayed: 3 });
    const events = await r.waitFor('the replayed events', (ev) => ev.length >= 3);
    assert.deepEqual(manifestEvents(events).map((e) => e.target.digest), [image.digest]);
    const after = (await eventsReport(s.url)).find((x) => x.name === 'test')!;
    assert.equal(after.deadLettered, 0);
  });

  it('with auth on, actor is the authenticated user', async () => {
    const r = await receiver();
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'a-pw' });
    const s = await serve(['--notify', r.url, '--htpasswd', join(dir, 'htpasswd')]);
    const auth = { Authorization: basic('alice', 'a-pw') };
    const image = makeImage({ layers: 1 });
    for (const b of [image.config, ...image.layers]) {
      const res = await fetch(`${s.url}/v2/auth/app/blobs/uploads/?digest=${b.digest}`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(b.data) });
      assert.equal(res.status, 201);
    }
    const res = await fetch(`${s.url}/v2/auth/app/manifests/v1`, { method: 'PUT', headers: { ...auth, 'Content-Type': image.mediaType }, body: new Uint8Array(image.manifest) });
    assert.equal(res.status, 201);
    const events = await r.waitFor('the manifest push', (ev) => ev.some((e) => e.target.tag === 'v1'));
    for (const e of events) assert.deepEqual(e.actor, { name: 'alice' }, `${e.action} ${e.target.digest}`);
  });

  it('berth gc run as its own process writes gc.delete events, which serve delivers', async () => {
    const r = await receiver();
    const config = notificationsConfig({ url: r.url, ignore: { actions: ['pull'] } });
    const s = await serve(['--config', config]);
    const client = new RegistryClient(s.url);
    const image = makeImage({ layers: 1 });
    await client.pushImage('gc/app', image, 'v1');
    assert.equal((await client.fetch('/v2/gc/app/manifests/v1', { method: 'DELETE' })).status, 202);
    const gc = await berth(['gc', '--config', config, '--data', s.dataDir, '--grace', '0']);
    assert.equal(gc.code, 0, gc.stderr);
    const events = await r.waitFor('gc.delete of the manifest and its two blobs', (ev) => ev.filter((e) => e.action === 'gc.delete').length >= 3);
    const gcEvents = events.filter((e) => e.action === 'gc.delete');
    assert.deepEqual(gcEvents.find((e) => e.target.repository === 'gc/app')?.target.digest, image.digest);
    assert.deepEqual(new Set(gcEvents.filter((e) => !e.target.repository).map((e) => e.target.digest)), new Set([image.config.digest, image.layers[0]!.digest]));
  });

  it('berth fsck as its own process writes one fsck.drift per problem it does not repair (missing, size mismatch, orphan), and fsck.forget when it repairs', async () => {
    const r = await receiver();
    const config = notificationsConfig({ url: r.url, ignore: { actions: ['pull'] } });
    const s = await serve(['--config', config]);
    const image = makeImage({ layers: 2 });
    await new RegistryClient(s.url).pushImage('fsck/app', image, 'v1');
    // Drift behind Berth's back: a layer's bytes gone, the config's bytes cut short, an object no metadata names.
    const missing = image.layers[0]!.digest;
    const [layerKey] = await blobFiles(s, missing);
    await testStore(s.dataDir).deleteBlob(layerKey!);
    const [configKey] = await blobFiles(s, image.config.digest);
    await overwriteBlob(s.dataDir, configKey!, Buffer.from('short'));
    const orphanKey = `${layerKey!}-orphan0`; // beside the layer's (on disk: a key naming the layer's digest; on S3 none)
    await overwriteBlob(s.dataDir, orphanKey, Buffer.from('nobody names me'));

    const check = await berth(['fsck', '--config', config, '--data', s.dataDir, '--min-age', '0', '--quick', '--json']);
    assert.equal(check.code, 1, check.stderr);
    const drift = (await r.waitFor('three fsck.drift events', (ev) => ev.filter((e) => e.action === 'fsck.drift').length >= 3)).filter((e) => e.action === 'fsck.drift');
    assert.deepEqual(
      drift.map((e) => [e.target.problem, e.target.digest, e.target.repository]).sort(),
      [
        ['missing', missing, undefined],
        ['orphan-blob', digestOfKey(orphanKey), undefined],
        ['size-mismatch', image.config.digest, undefined],
      ].sort(),
    );
    assert.equal(new Set(drift.map((e) => e.id)).size, 3, 'one event per problem');

    // Repairing: the two blobs are forgotten (fsck.forget), the orphan removed on this second look; no new drift.
    const repair = await berth(['fsck', '--config', config, '--data', s.dataDir, '--min-age', '0', '--quick', '--repair', '--json']);
    assert.equal(repair.code, 1, repair.stderr);
    const after = await r.waitFor('two fsck.forget events', (ev) => ev.filter((e) => e.action === 'fsck.forget').length >= 2);
    assert.deepEqual(new Set(after.filter((e) => e.action === 'fsck.forget').map((e) => e.target.digest)), new Set([missing, image.config.digest]));
    assert.equal(after.filter((e) => e.action === 'fsck.drift').length, 3, 'what was repaired is no drift');
  });

  it('berth import writes no events: it copies history, it pushes nothing new', async () => {
    const r = await receiver();
    const config = notificationsConfig({ url: r.url });
    const work = mkdtempSync(join(tmpdir(), 'berth-events-import-'));
    try {
      const tree = new ReferenceTree(join(work, 'source'));
      tree.image('old/app', 'v1', ['a layer\n']);
      const dataDir = makeDataDir();
      const imported = await berth(['import', tree.root, '--config', config, '--data', dataDir]);
      assert.equal(imported.code, 0, imported.stderr);
      const s = await serve(['--config', config], { dataDir });
      const client = new RegistryClient(s.url);
      assert.equal((await client.fetch('/v2/old/app/tags/list')).status, 200, 'imported');
      const image = makeImage({ layers: 1 });
      await client.pushImage('new/app', image, 'v1');
      const events = await r.waitFor('the new push', (ev) => ev.some((e) => e.target.tag === 'v1'));
      await new Promise((res) => setTimeout(res, 300));
      assert.deepEqual([...new Set(r.events.map((e) => e.target.repository))], ['new/app'], JSON.stringify(events.map((e) => [e.action, e.target.repository])));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('metrics report pending, sent, failed and latency per endpoint', async () => {
    const r = await receiver();
    const s = await serve(['--notify', r.url]);
    await new RegistryClient(s.url).pushImage('metrics/app', makeImage({ layers: 1 }), 'v1');
    await (await fetch(`${s.url}/metrics`)).text(); // the first scrape starts the latency histogram
    await new RegistryClient(s.url).pushImage('metrics/app', makeImage({ layers: 1 }), 'v2');
    await r.waitFor('6 events', (ev) => ev.filter((e) => e.action === 'push').length >= 6);
    await until('sent counted', async () => /berth_events_sent_total\{endpoint="[^"]+"\} ([6-9]|\d\d)/.test(await (await fetch(`${s.url}/metrics`)).text()));
    const text = await (await fetch(`${s.url}/metrics`)).text();
    const label = `endpoint="${r.url}"`;
    for (const name of ['berth_events_pending', 'berth_events_dead_lettered', 'berth_events_sent_total', 'berth_events_failed_total', 'berth_events_delivery_seconds_count']) {
      assert.ok(text.includes(`${name}{${label}}`), `${name} in:\n${text.split('\n').filter((l) => l.includes('events')).join('\n')}`);
    }
    assert.ok(existsSync(s.dataDir));
  });
});
