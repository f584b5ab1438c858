/**
 * docker push and pull against Berth and against the reference registry
 * (Debian's docker-registry, CNCF distribution 2.8.2), each notifying its own
 * receiver on loopback: Berth's events carry the same fields, with the same
 * values, as the reference's for the same requests.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clientUnavailableReason, dockerRemoveImages, makeDockerArchive, requireClient, run, uniqueName } from '../helpers/clients.js';
import { EventReceiver, type ReceivedEvent } from '../helpers/event-receiver.js';
import { startServer, type TestServer } from '../helpers/server.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startReference(dir: string, receiverUrl: string): Promise<{ host: string; proc: ChildProcess }> {
  const port = await freePort();
  const config = join(dir, 'reference.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log: { level: error }',
      `storage: { filesystem: { rootdirectory: ${join(dir, 'reference-data')} }, delete: { enabled: true } }`,
      `http: { addr: 127.0.0.1:${port} }`,
      'notifications:',
      '  endpoints:',
      `    - { name: test, url: ${receiverUrl}, timeout: 2s, threshold: 3, backoff: 1s }`,
    ].join('\n'),
  );
  const proc = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/v2/`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('the reference registry did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host: `127.0.0.1:${port}`, proc };
}

/** Waits until neither receiver has received anything for a second. */
async function settled(...receivers: EventReceiver[]): Promise<void> {
  let last = -1;
  for (;;) {
    const n = receivers.reduce((sum, r) => sum + r.events.length, 0);
    if (n === last) return;
    last = n;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** What identifies an event across the two registries: action, method, target digest and tag. */
const key = (e: ReceivedEvent) => `${e.action} ${e.request.method} ${e.target.repository} ${e.target.digest ?? ''} ${e.target.tag ?? ''}`;

function assertSameEvent(berth: ReceivedEvent, ref: ReceivedEvent, berthHost: string, refHost: string): void {
  const what = key(ref);
  assert.deepEqual(Object.keys(berth), Object.keys(ref), `${what}: event fields`);
  // Berth adds `references` (the descriptors a manifest references, as later versions of the reference send).
  const berthTarget = Object.keys(berth.target).filter((k) => k !== 'references');
  assert.deepEqual(berthTarget, Object.keys(ref.target), `${what}: target fields`);
  for (const k of ['mediaType', 'size', 'digest', 'length', 'repository', 'tag']) assert.deepEqual(berth.target[k], ref.target[k], `${what}: target.${k}`);
  assert.equal(String(berth.target.url).replace(berthHost, 'HOST'), String(ref.target.url).replace(refHost, 'HOST'), `${what}: target.url`);
  assert.deepEqual(Object.keys(berth.request), Object.keys(ref.request), `${what}: request fields`);
  assert.equal(berth.request.method, ref.request.method);
  assert.equal(berth.request.useragent, ref.request.useragent, `${what}: request.useragent`);
  assert.equal(berth.request.host, berthHost);
  assert.match(berth.request.addr, /^127\.0\.0\.1:\d+$/);
  assert.match(ref.request.addr, /^127\.0\.0\.1:\d+$/);
  assert.match(berth.request.id, /^[0-9a-f-]{36}$/);
  assert.deepEqual(berth.actor, ref.actor, `${what}: actor`);
  assert.deepEqual(Object.keys(berth.source), Object.keys(ref.source), `${what}: source fields`);
  assert.equal(berth.source.addr.split(':')[0], ref.source.addr.split(':')[0], 'source.addr: this host');
  assert.match(berth.id, /^[0-9a-f-]{36}$/);
  assert.ok(!Number.isNaN(Date.parse(berth.timestamp)));
}

describe('notifications: docker push and pull, Berth and the reference registry side by side', () => {
  let work: string;
  let berth: TestServer | undefined;
  let reference: { host: string; proc: ChildProcess } | undefined;
  const berthEvents = new EventReceiver();
  const refEvents = new EventReceiver();
  const images: string[] = [];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-events-'));
    await berthEvents.start();
    await refEvents.start();
  });
  after(async () => {
    await dockerRemoveImages(images).catch(() => {});
    await berth?.stop();
    reference?.proc.kill();
    await berthEvents.stop();
    await refEvents.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('push and pull produce the same events, field by field', async (t) => {
    if (!requireClient(t, 'docker')) return;
    if (clientUnavailableReason('docker') === null && !(await run('sh', ['-c', 'command -v docker-registry'], { allowFailure: true })).stdout.trim()) {
      if (process.env.CI === 'true') throw new Error('docker-registry (the reference registry) is not installed');
      return t.skip('docker-registry (the reference registry) is not installed');
    }
    berth = await startServer({ args: ['--notify', berthEvents.url], env: { BERTH_GC_ENABLED: 'false' } });
    reference = await startReference(work, refEvents.url);
    const repo = `events/${uniqueName('app')}`;
    const local = `berth-e2e/${uniqueName('src')}:loaded`;
    const nonce = uniqueName();
    const archive = await makeDockerArchive(join(work, 'image.tar'), { layers: [`one ${nonce}\n`, `two ${nonce}\n`], repoTags: [local] });
    await run('docker', ['load', '-i', archive.file]);
    images.push(local);
    const hosts = [berth.host, reference.host];
    for (const host of hosts) {
      const ref = `${host}/${repo}:v1`;
      images.push(ref);
      await run('docker', ['tag', local, ref]);
      await run('docker', ['push', ref]);
    }
    const isManifestPush = (e: ReceivedEvent) => e.action === 'push' && e.target.tag === 'v1';
    const refPushed = await refEvents.waitFor('the reference manifest push', (ev) => ev.some(isManifestPush));
    const berthPushed = await berthEvents.waitFor('Berth manifest push', (ev) => ev.some(isManifestPush));
    await settled(berthEvents, refEvents); // late pull events (HEADs) of either
    const compare = (mine: ReceivedEvent[], theirs: ReceivedEvent[]) => {
      assert.deepEqual([...new Set(mine.map(key))].sort(), [...new Set(theirs.map(key))].sort(), 'the same events for the same requests');
      for (const r of theirs) assertSameEvent(mine.find((b) => key(b) === key(r))!, r, berth!.host, reference!.host);
    };
    compare(berthEvents.events, refEvents.events);
    assert.ok(berthPushed.length > 0 && refPushed.length > 0);

    // Pull: drop every local copy, then pull from each with nothing local (the same requests to both).
    const before = [berthEvents.events.length, refEvents.events.length];
    await run('docker', ['rmi', '-f', local, ...hosts.map((h) => `${h}/${repo}:v1`)]);
    for (const host of hosts) {
      await run('docker', ['pull', `${host}/${repo}:v1`]);
      await run('docker', ['rmi', '-f', `${host}/${repo}:v1`]);
    }
    // docker pull: HEAD by tag, then GET of the blobs it lacks (the manifest may come from its own cache).
    const isGet = (e: ReceivedEvent) => e.action === 'pull' && e.request.method === 'GET';
    await refEvents.waitFor('the reference pull', (ev) => ev.slice(before[1]).some(isGet));
    await berthEvents.waitFor('Berth pull', (ev) => ev.slice(before[0]).some(isGet));
    await settled(berthEvents, refEvents);
    // dockerd keeps the manifest it fetched from the first registry: from the second it only
    // HEADs it. So Berth (pulled first) may also report the GET of the manifest by digest.
    const berthPulls = berthEvents.events.slice(before[0]);
    const extra = berthPulls.filter((b) => !refEvents.events.slice(before[1]).some((r) => key(r) === key(b)));
    assert.ok(extra.every((e) => e.action === 'pull' && e.request.method === 'GET' && e.target.mediaType !== 'application/octet-stream' && !e.target.tag), JSON.stringify(extra));
    compare(berthPulls.filter((e) => !extra.includes(e)), refEvents.events.slice(before[1]));

    // The same image to a second repository: docker mounts the blobs from the first.
    const mark = [berthEvents.events.length, refEvents.events.length];
    const repo2 = `${repo}-copy`;
    await run('docker', ['pull', `${hosts[0]}/${repo}:v1`]);
    for (const host of hosts) {
      await run('docker', ['tag', `${hosts[0]}/${repo}:v1`, `${host}/${repo2}:v1`]);
      images.push(`${host}/${repo2}:v1`);
      await run('docker', ['push', `${host}/${repo2}:v1`]);
    }
    const isCopyPush = (e: ReceivedEvent) => e.action === 'push' && e.target.repository === repo2 && e.target.tag === 'v1';
    await refEvents.waitFor('the reference push of the copy', (ev) => ev.slice(mark[1]).some(isCopyPush));
    await berthEvents.waitFor('Berth push of the copy', (ev) => ev.slice(mark[0]).some(isCopyPush));
    await settled(berthEvents, refEvents);
    const mounts = (list: ReceivedEvent[]) => list.filter((e) => e.action === 'mount');
    assert.ok(mounts(refEvents.events.slice(mark[1])).length > 0, 'the reference reports mounts');
    compare(mounts(berthEvents.events.slice(mark[0])), mounts(refEvents.events.slice(mark[1])));
    for (const m of mounts(berthEvents.events.slice(mark[0]))) assert.equal(m.target.fromRepository, repo);

    // Deletes through the API: the manifest by digest, then one of its blobs.
    const mark2 = [berthEvents.events.length, refEvents.events.length];
    const manifestDigest = refPushed.find(isManifestPush)!.target.digest!;
    const blobDigest = refPushed.find((e) => e.action === 'push' && e.target.mediaType === 'application/octet-stream')!.target.digest!;
    for (const host of hosts) {
      assert.equal((await fetch(`http://${host}/v2/${repo}/manifests/${manifestDigest}`, { method: 'DELETE' })).status, 202);
      assert.equal((await fetch(`http://${host}/v2/${repo}/blobs/${blobDigest}`, { method: 'DELETE' })).status, 202);
    }
    const deletes = (list: ReceivedEvent[]) => list.filter((e) => e.action === 'delete');
    // The reference reports a manifest deletion as the deletion of its tags, then of the manifest.
    await refEvents.waitFor('the reference deletes', (ev) => deletes(ev.slice(mark2[1])).length >= 3);
    await berthEvents.waitFor('Berth deletes', (ev) => deletes(ev.slice(mark2[0])).length >= 3);
    await settled(berthEvents, refEvents);
    compare(deletes(berthEvents.events.slice(mark2[0])), deletes(refEvents.events.slice(mark2[1])));
  });
});
