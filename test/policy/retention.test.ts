/**
 * Retention rules, applied by GC at every entry point (admin trigger,
 * `berth gc` as another process): keepLast, keepTags, pulledWithin; a tag
 * kept by any rule stays; immutable tags stay; referrers follow their
 * subject (an OCI subject, and cosign's sha256-<hex>.sig tags); untagged
 * manifests after untaggedAfter; the dry run lists per rule what a run then
 * deletes, exactly; a tag pushed again while retention runs is not deleted
 * by the decision taken before. SQLite and PostgreSQL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeImage, OCI_MANIFEST, RegistryClient, type Image } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { policyConfig } from '../helpers/policy.js';
import { berth } from '../helpers/berth-cli.js';
import { pauseControl } from '../helpers/pause.js';

interface Report {
  manifestsDeleted: number;
  retention: { rule: number; repositories: string[]; tags: { repository: string; tag: string; digest: string; reason: string }[]; untagged: { repository: string; digest: string }[] }[];
}

const CONFIG = `
policies:
  - repositories: ["ci/**"]
    retention: { keepLast: 2, keepTags: ["v*"], pulledWithin: 1h }
  - repositories: ["ci/locked"]
    immutableTags: ["rel-*"]
  - repositories: ["scratch/**"]
    retention: { untaggedAfter: 1s }
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function tags(client: RegistryClient, repo: string): Promise<string[]> {
  const res = await client.fetch(`/v2/${repo}/tags/list`);
  return res.status === 200 ? (((await res.json()) as { tags: string[] }).tags ?? []) : [];
}

async function status(client: RegistryClient, repo: string, ref: string): Promise<number> {
  return (await client.fetch(`/v2/${repo}/manifests/${ref}`, { method: 'HEAD', headers: { Accept: OCI_MANIFEST } })).status;
}

function deletedTags(report: Report): string[] {
  return report.retention.flatMap((r) => r.tags.map((t) => `${t.repository}:${t.tag}`)).sort();
}

/** Pushes an image under each tag, oldest first, a few ms apart (push times order keepLast). */
async function pushTagged(client: RegistryClient, repo: string, names: string[]): Promise<Map<string, Image>> {
  const out = new Map<string, Image>();
  for (const name of names) {
    const image = makeImage({ layers: 1 });
    await client.pushImage(repo, image, name);
    out.set(name, image);
    await sleep(5);
  }
  return out;
}

function signatureOf(image: Image): Image {
  return makeImage({ layers: 1, subject: { digest: image.digest, size: image.manifest.length, mediaType: image.mediaType }, artifactType: 'application/vnd.dev.cosign.simplesigning.v1+json' });
}

describe('retention', () => {
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    server = await startServer({ args: ['--config', policyConfig(CONFIG)], env: { BERTH_GC_ENABLED: 'false' } });
    client = new RegistryClient(server.url);
  });
  after(async () => {
    await server.stop();
  });

  it('the dry run lists per rule what goes and why; the run then deletes exactly that, and referrers follow their subject', async () => {
    const repo = 'ci/app';
    const images = await pushTagged(client, repo, ['v1', 't1', 't2', 't3', 't4', 't5']);
    // Signatures: one tagged cosign-style for t1 (goes with it) and one for t4 (stays), one untagged OCI referrer of t1.
    const sigT1 = signatureOf(images.get('t1')!);
    const sigT4 = signatureOf(images.get('t4')!);
    const refT1 = signatureOf(images.get('t1')!);
    const cosignTag = (i: Image) => i.digest.replace(':', '-') + '.sig';
    await client.pushImage(repo, sigT1, cosignTag(images.get('t1')!));
    await client.pushImage(repo, sigT4, cosignTag(images.get('t4')!));
    await client.pushImage(repo, refT1);
    // t2 is pulled: the "pulled within 1h" rule keeps it.
    assert.equal((await client.fetch(`/v2/${repo}/manifests/t2`, { headers: { Accept: OCI_MANIFEST } })).status, 200);

    const dry = await client.fetch('/admin/gc?dryRun=1&grace=0', { method: 'POST' });
    assert.equal(dry.status, 200);
    const dryReport = (await dry.json()) as Report;
    const expected = [`${repo}:t1`, `${repo}:t3`, `${repo}:${cosignTag(images.get('t1')!)}`].sort();
    assert.deepEqual(deletedTags(dryReport), expected);
    assert.equal(dryReport.retention[0]!.rule, 0);
    assert.deepEqual(dryReport.retention[0]!.repositories, ['ci/**']);
    const t3 = dryReport.retention[0]!.tags.find((t) => t.tag === 't3')!;
    assert.equal(t3.digest, images.get('t3')!.digest);
    assert.match(t3.reason, /not among the 2 most recently pushed; never pulled \(keeps pulled within 1h\); matches none of v\*/);
    assert.match(dryReport.retention[0]!.tags.find((t) => t.tag.endsWith('.sig'))!.reason, /follows its subject/);
    assert.equal((await tags(client, repo)).length, 8, 'the dry run deleted nothing');

    const run = (await (await client.fetch('/admin/gc?grace=0', { method: 'POST' })).json()) as Report;
    assert.deepEqual(deletedTags(run), expected, 'the run deletes exactly what the dry run listed');
    assert.deepEqual(run.retention, dryReport.retention);
    assert.deepEqual(await tags(client, repo), [cosignTag(images.get('t4')!), 't2', 't4', 't5', 'v1'].sort());
    // The manifests released go in the same pass (grace 0); the referrers of t1 with them.
    for (const gone of [images.get('t1')!, images.get('t3')!, sigT1, refT1]) assert.equal(await status(client, repo, gone.digest), 404);
    for (const kept of [images.get('t2')!, images.get('t4')!, sigT4, images.get('v1')!]) assert.equal(await status(client, repo, kept.digest), 200);
  });

  it('immutable tags are never deleted by retention', async () => {
    const repo = 'ci/locked';
    await pushTagged(client, repo, ['rel-1', 'a', 'b', 'c']);
    const report = (await (await client.fetch('/admin/gc?grace=0', { method: 'POST' })).json()) as Report;
    assert.deepEqual(deletedTags(report), [`${repo}:a`]);
    assert.deepEqual(await tags(client, repo), ['b', 'c', 'rel-1']);
  });

  it('untaggedAfter deletes untagged manifests of its repositories after that long', async () => {
    const image = makeImage({ layers: 1 });
    await client.pushImage('scratch/x', image);
    const early = (await (await client.fetch('/admin/gc', { method: 'POST' })).json()) as Report;
    assert.equal(early.retention.find((r) => r.rule === 2)!.untagged.length, 0);
    await sleep(1100);
    const report = (await (await client.fetch('/admin/gc', { method: 'POST' })).json()) as Report;
    assert.deepEqual(report.retention.find((r) => r.rule === 2)!.untagged.map((u) => u.digest), [image.digest]);
    assert.equal(await status(client, 'scratch/x', image.digest), 404);
  });

  it('a tag pushed again while retention runs is not deleted by the decision taken before', async (t) => {
    const pause = pauseControl('retention-after-decision');
    const paused = await startServer({ args: ['--config', policyConfig(CONFIG)], env: { BERTH_GC_ENABLED: 'false', ...pause.env } });
    const client = new RegistryClient(paused.url);
    t.after(async () => {
      await paused.stop();
      pause.cleanup();
    });
    const repo = 'ci/race';
    const images = await pushTagged(client, repo, ['old', 'new1', 'new2']);
    const run = client.fetch('/admin/gc?grace=0', { method: 'POST' });
    await pause.reached('retention-after-decision');
    // "old" was decided against; it is pushed again (now the newest push) before the deletion.
    assert.equal((await client.putManifest(repo, 'old', images.get('old')!.manifest, OCI_MANIFEST)).status, 201);
    pause.resume('retention-after-decision');
    const report = (await (await run).json()) as Report;
    assert.deepEqual(deletedTags(report), []);
    assert.deepEqual(await tags(client, repo), ['new1', 'new2', 'old']);
  });

  it('berth gc --dry-run, as another process, lists per rule what would go and why', async () => {
    const repo = 'ci/cli';
    await pushTagged(client, repo, ['a', 'b', 'c']);
    const gc = await berth(['gc', '--data', server.dataDir, '--config', policyConfig(CONFIG), '--dry-run', '--grace', '0']);
    assert.equal(gc.code, 0, gc.stderr);
    assert.match(gc.stdout, /retention rule 0 \(ci\/\*\*\): would delete 1 tags/);
    assert.match(gc.stdout, /tag ci\/cli:a \(sha256:[0-9a-f]{64}\): not among the 2 most recently pushed/);
    const real = await berth(['gc', '--data', server.dataDir, '--config', policyConfig(CONFIG), '--grace', '0', '--json']);
    assert.equal(real.code, 0, real.stderr);
    assert.deepEqual(deletedTags(JSON.parse(real.stdout) as Report), [`${repo}:a`]);
  });

  it('logs no error', () => {
    assert.deepEqual(server.loggedErrors(), []);
  });
});
