/**
 * `berth import s3://BUCKET/ROOTDIRECTORY`: the reference registry with its
 * s3 storage driver on the test S3 server, images pushed with skopeo, then
 * imported into Berth twice: onto its data directory (blobs streamed from
 * S3) and into an S3 store in the same bucket (server-side copies, no byte
 * through Berth). Every image is pulled back with skopeo and compared.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { S3BlobStore } from '../../src/storage/s3.js';
import { berth } from '../helpers/berth-cli.js';
import { makeOciLayout, podmanEnv, requireClient, run, uniqueName, type OciLayout } from '../helpers/clients.js';
import { startReferenceRegistry } from '../helpers/reference-registry.js';
import { s3SkipReason, s3TestEnv, uniquePrefix } from '../helpers/s3-env.js';
import { makeDataDir, startServer, TEST_STORAGE } from '../helpers/server.js';
import { assertSameLayout } from './support.js';

const skip = s3SkipReason();

describe('berth import from the reference registry on S3', { skip }, () => {
  let work: string;
  const env = s3TestEnv()!;
  const rootdirectory = uniquePrefix('reference').replace(/\/$/, '');
  const berthPrefix = uniquePrefix('import-target');
  const stores: S3BlobStore[] = [];
  const dirs: string[] = [];
  let multi: OciLayout;
  let single: OciLayout;
  let pushed = false;

  const storeAt = (prefix: string) => {
    for (const [k, v] of Object.entries(env.awsEnv)) process.env[k] ??= v;
    const s = new S3BlobStore({ bucket: env.bucket, prefix, endpoint: env.endpoint, region: env.region });
    stores.push(s);
    return s;
  };

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'berth-e2e-import-s3-'));
  });
  after(async () => {
    for (const s of stores) {
      await s.deleteEverything().catch(() => {});
      s.close();
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it('pushes to the reference registry with its s3 driver', async (t) => {
    if (!requireClient(t, 'docker-registry') || !requireClient(t, 'skopeo')) return;
    const reference = await startReferenceRegistry(work, {
      s3: {
        bucket: env.bucket,
        rootdirectory: `/${rootdirectory}`,
        endpoint: env.endpoint,
        accessKey: env.awsEnv.AWS_ACCESS_KEY_ID!,
        secretKey: env.awsEnv.AWS_SECRET_ACCESS_KEY!,
      },
    });
    storeAt(`${rootdirectory}/`); // removes the reference's objects afterwards
    try {
      const nonce = uniqueName();
      multi = await makeOciLayout(join(work, 'multi'), {
        layers: [`s3 multi ${nonce}\n`],
        platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }],
        tag: 'v1',
      });
      await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', multi.ref, `docker://${reference.host}/s3/multi:v1`], { env: podmanEnv() });
      single = await makeOciLayout(join(work, 'single'), { layers: [`s3 single ${nonce}\n`], tag: 'latest' });
      await run('skopeo', ['copy', '--dest-tls-verify=false', single.ref, `docker://${reference.host}/s3/single:latest`], { env: podmanEnv() });
    } finally {
      await reference.stop();
    }
    pushed = true;
  });

  for (const target of ['data directory', 's3'] as const) {
    it(`imports it into Berth on ${target === 's3' ? 'S3 (server-side copies)' : 'its data directory (streamed)'} and skopeo pulls every image back`, async (t) => {
      if (!pushed) return t.skip('needs the images pushed to the reference registry');
      // With BERTH_TEST_STORAGE=s3 every test data directory is an S3 store already: the first case covers it.
      if (target === 's3' && TEST_STORAGE === 's3') return t.skip('test servers are on S3 in this pass: the first case imported into S3');
      const dataDir = makeDataDir();
      dirs.push(dataDir);
      const storage = target === 's3' ? ['--storage', `s3://${env.bucket}/${berthPrefix}`] : [];
      if (target === 's3') storeAt(berthPrefix);
      const args = ['import', `s3://${env.bucket}/${rootdirectory}`, '--data', dataDir, ...storage, '--json'];
      const res = await berth(args, env.awsEnv);
      assert.equal(res.code, 0, res.stderr);
      const report = JSON.parse(res.stdout);
      assert.equal(report.manifests.imported, 4);
      assert.equal(report.tags.imported, 2);
      assert.equal(report.blobs.skipped, 0);
      assert.deepEqual(report.reasons, {});
      const methods = report.blobs.byMethod;
      if (target === 's3' || TEST_STORAGE === 's3') assert.equal(methods['server-side-copy'], report.blobs.imported, JSON.stringify(methods));
      else assert.equal(methods.stream, report.blobs.imported, JSON.stringify(methods));

      const again = JSON.parse((await berth(args, env.awsEnv)).stdout);
      assert.equal(again.manifests.imported + again.tags.imported + again.blobs.imported, 0, 'a second import changes nothing');

      const server = await startServer({ dataDir, args: storage, env: { ...env.awsEnv, BERTH_GC_ENABLED: 'false' } });
      try {
        const out = join(work, `out-${target.replace(' ', '-')}`);
        await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${server.host}/s3/multi:v1`, `oci:${out}-multi:v1`], { env: podmanEnv() });
        assertSameLayout(`${out}-multi`, 'v1', multi);
        await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${server.host}/s3/single:latest`, `oci:${out}-single:latest`], { env: podmanEnv() });
        assertSameLayout(`${out}-single`, 'latest', single);
      } finally {
        await server.stop({ keepData: true });
      }
      const fsck = await berth(['fsck', '--data', dataDir, ...storage], env.awsEnv);
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
    });
  }
});
