/**
 * Concurrency torture: clients push, delete and re-push images that share
 * layers while two collectors (the admin trigger and `berth gc` processes)
 * run in a loop with grace 0. At the end every tagged image pulls with
 * verified digests, every blob that answers HEAD 200 serves its bytes, and
 * fsck is clean. BERTH_SOAK=<seconds> turns it into a long soak.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { blob, randomBlob, RegistryClient, type Blob, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, errorCode } from '../helpers/registry-client.js';
import { startServer } from '../helpers/server.js';

const SOAK_SECONDS = Number(process.env.BERTH_SOAK ?? 0);
const CLIENTS = SOAK_SECONDS ? 8 : 4;
const DURATION_MS = SOAK_SECONDS ? SOAK_SECONDS * 1000 : 6000;

interface Stats {
  pushes: number;
  retries: number;
  deletes: number;
  gcRuns: number;
  pulls: number;
}

function manifestFor(config: Blob, layers: Blob[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.size })),
    }),
  );
}

describe('concurrency torture: pushes, deletes and GC at grace 0', () => {
  it(`keeps every acknowledged image whole (${CLIENTS} clients, ${DURATION_MS / 1000} s)`, { timeout: DURATION_MS + 120_000 }, async () => {
    const server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
    const client = new RegistryClient(server.url);
    const shared = Array.from({ length: 6 }, () => randomBlob(2048));
    const stats: Stats = { pushes: 0, retries: 0, deletes: 0, gcRuns: 0, pulls: 0 };
    const deadline = Date.now() + DURATION_MS;
    /** tag → manifest bytes, for what is currently tagged (per client, so no cross-client races on a tag). */
    const tagged = new Map<string, { repo: string; tag: string; manifest: Buffer; blobs: Blob[] }>();

    // A client as docker behaves: HEAD each blob, upload the missing ones, PUT
    // the manifest; on MANIFEST_BLOB_UNKNOWN (GC took a blob between HEAD and
    // PUT, which grace 0 allows) upload again and retry.
    async function pushImage(repo: string, tag: string, blobs: Blob[], manifest: Buffer): Promise<void> {
      for (let attempt = 0; ; attempt++) {
        for (const b of blobs) {
          const head = await client.fetch(`/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' });
          if (head.status !== 200) await client.pushBlob(repo, b);
        }
        const res = await client.putManifest(repo, tag, manifest, OCI_MANIFEST);
        if (res.status === 201) return;
        const code = await errorCode(res);
        assert.equal(code, 'MANIFEST_BLOB_UNKNOWN', `unexpected manifest PUT failure ${res.status}`);
        stats.retries++;
        assert.ok(attempt < 50, 'too many retries');
      }
    }

    async function worker(id: number): Promise<void> {
      const repo = `torture/client-${id % 2}`; // two clients per repository
      let n = 0;
      while (Date.now() < deadline) {
        const tag = `c${id}-${n % 3}`;
        const layers = [shared[(id + n) % shared.length]!, shared[(id + n + 1) % shared.length]!, randomBlob(512)];
        const config = blob(JSON.stringify({ id, n, nonce: Math.random() }));
        const all = [config, ...layers];
        const manifest = manifestFor(config, layers);
        await pushImage(repo, tag, all, manifest);
        tagged.set(`${repo}:${tag}`, { repo, tag, manifest, blobs: all });
        stats.pushes++;
        if (n % 2 === 1) {
          // Delete an earlier image by digest (untags it); GC will take what only it used.
          const victim = tagged.get(`${repo}:c${id}-${(n + 1) % 3}`);
          if (victim) {
            const digest = `sha256:${createHash('sha256').update(victim.manifest).digest('hex')}`;
            const res = await client.fetch(`/v2/${repo}/manifests/${digest}`, { method: 'DELETE' });
            assert.equal(res.status, 202);
            tagged.delete(`${repo}:${victim.tag}`);
            stats.deletes++;
          }
        }
        n++;
      }
    }

    async function collectors(): Promise<void> {
      let i = 0;
      while (Date.now() < deadline) {
        if (i++ % 4 === 3) {
          // A separate process, concurrently with the server's own collector.
          const [cli, admin] = await Promise.all([
            berth(['gc', '--data', server.dataDir, '--grace', '0', '--json']),
            client.fetch('/admin/gc?grace=0', { method: 'POST' }),
          ]);
          assert.equal(cli.code, 0, cli.stderr);
          assert.equal(admin.status, 200);
          stats.gcRuns += 2;
        } else {
          const res = await client.fetch('/admin/gc?grace=0', { method: 'POST' });
          assert.equal(res.status, 200);
          stats.gcRuns++;
        }
      }
    }

    try {
      await Promise.all([...Array.from({ length: CLIENTS }, (_, i) => worker(i)), collectors()]);
      // One more collection with nothing running, then verify everything.
      assert.equal((await client.fetch('/admin/gc?grace=0', { method: 'POST' })).status, 200);

      for (const { repo, tag, manifest, blobs } of tagged.values()) {
        const res = await client.fetch(`/v2/${repo}/manifests/${tag}`);
        assert.equal(res.status, 200, `${repo}:${tag} must pull`);
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), manifest);
        for (const b of blobs) {
          const got = await client.getBlob(repo, b.digest);
          assert.equal(got.status, 200, `${repo}:${tag} blob ${b.digest}`);
          const bytes = Buffer.from(await got.arrayBuffer());
          assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, b.digest);
          stats.pulls++;
        }
      }
      // Every blob that says it exists has its bytes.
      for (const repo of ['torture/client-0', 'torture/client-1']) {
        for (const b of shared) {
          const head = await client.fetch(`/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' });
          if (head.status !== 200) continue;
          const got = await client.getBlob(repo, b.digest);
          assert.deepEqual(Buffer.from(await got.arrayBuffer()), b.data);
        }
      }
      const fsck = await berth(['fsck', '--data', server.dataDir, '--min-age', '0', '--json']);
      assert.equal(fsck.code, 0, `fsck must be clean: ${fsck.stdout}`);
      const totalOps = stats.pushes + stats.deletes + stats.gcRuns + stats.pulls;
      console.log(`torture: ${JSON.stringify({ ...stats, totalOps, tagged: tagged.size })}`);
      assert.ok(stats.pushes > CLIENTS && stats.gcRuns > 2, 'the torture must actually have run');
    } finally {
      await server.stop();
    }
  });
});
