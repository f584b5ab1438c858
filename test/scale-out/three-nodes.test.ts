/**
 * Scale-out: three `berth serve` nodes on loopback share one fresh PostgreSQL
 * database and one S3 prefix, each with its background collector running at
 * grace 0. Clients spread pushes over the nodes, send chunk N of a chunked
 * upload to node N mod 3, pull from other nodes, and delete images, while
 * `berth gc --grace 0` runs as separate processes. One node is killed with
 * SIGKILL in the middle of a chunk; the upload continues and finishes through
 * the other nodes, and the node is restarted. At the end every tagged image
 * pulls with verified digests from every node, and `berth fsck` is clean.
 *
 * Contract points exercised: 1 (existence only from the shared metadata: a
 * blob committed on one node exists on all), 2/3 (GC from four processes at
 * grace 0 never takes a referenced blob; a manifest either commits or gets
 * MANIFEST_BLOB_UNKNOWN), 4 (every GC entry point, on every node), 8 (a
 * crash loses nothing acknowledged: the upload's acknowledged offset and
 * hash state survive in metadata + S3).
 *
 * Needs PostgreSQL (BERTH_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/test)
 * and S3 (S3_ENDPOINT etc., from scripts/s3/start.sh). Skips with a message
 * when either is unreachable; fails instead under CI=true.
 * BERTH_SCALE_SECONDS sets the length of the load phase (default 12).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { HeadBucketCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import pg from 'pg';
import { S3BlobStore } from '../../src/storage/s3.js';
import { berth, type CliResult } from '../helpers/berth-cli.js';
import { PG_ADMIN_URL } from '../helpers/postgres.js';
import { blob, bytes, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, randomBlob, sha256, type Blob } from '../helpers/registry-client.js';
import { s3TestEnv, uniquePrefix, type S3TestEnv } from '../helpers/s3-env.js';
import { startServer, type TestServer } from '../helpers/server.js';

const LOAD_MS = Number(process.env.BERTH_SCALE_SECONDS ?? 12) * 1000;
const NODES = 3;
const WORKERS = 3;
const MiB = 1024 * 1024;
/** S3 multipart part size of the nodes: the smallest S3 allows, so that chunked uploads cross part boundaries. */
const PART_SIZE = 5 * MiB;
const CHUNK = 1.5 * MiB;

// ---------------------------------------------------------------- services

async function postgresUnreachable(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return undefined;
  } catch (e) {
    return `PostgreSQL unreachable at ${PG_ADMIN_URL} (${(e as Error).message})`;
  } finally {
    await c.end().catch(() => {});
  }
}

async function s3Unreachable(): Promise<string | undefined> {
  const env = s3TestEnv();
  if (!env) return 'no S3 endpoint: set S3_ENDPOINT (eval "$(bash scripts/s3/start.sh)")';
  const store = s3Store(env, '');
  try {
    await store.client.send(new HeadBucketCommand({ Bucket: env.bucket }), { abortSignal: AbortSignal.timeout(5000) });
    return undefined;
  } catch (e) {
    return `S3 unreachable at ${env.endpoint}, bucket ${env.bucket} (${(e as Error).name}: ${(e as Error).message})`;
  } finally {
    store.close();
  }
}

function s3Store(env: S3TestEnv, prefix: string): S3BlobStore {
  for (const [k, v] of Object.entries(env.awsEnv)) process.env[k] ??= v;
  return new S3BlobStore({ bucket: env.bucket, prefix, endpoint: env.endpoint, region: env.region });
}

/** When a blob object was written (ms), from S3's LastModified (whole seconds). */
async function objectTime(store: S3BlobStore, key: string): Promise<number | undefined> {
  try {
    const head = await store.client.send(new HeadObjectCommand({ Bucket: store.bucket, Key: `${store.prefix}blobs/${key}` }));
    return head.LastModified?.getTime();
  } catch {
    return undefined;
  }
}

async function adminQuery(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** A fresh database on the test server: returns its URL and a drop function. */
async function freshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `berth_int_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

// ---------------------------------------------------------------- images

interface Image {
  repo: string;
  tag: string;
  manifest: Buffer;
  digest: string;
  blobs: Blob[];
}

function makeImage(repo: string, tag: string, layers: Blob[]): Image {
  const config = blob(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.size })),
    }),
  );
  return { repo, tag, manifest, digest: sha256(manifest), blobs: [config, ...layers] };
}

// ---------------------------------------------------------------- the test

const skipReason = (await postgresUnreachable()) ?? (await s3Unreachable());

describe('scale-out: three nodes, one PostgreSQL database, one S3 prefix', () => {
  if (skipReason) {
    if (process.env.CI === 'true') {
      it('needs PostgreSQL and S3 (CI=true: must run)', () => assert.fail(`${skipReason} (CI=true: the scale-out test must run)`));
    } else {
      it(`skipped: ${skipReason}`, { skip: skipReason }, () => {});
    }
    return;
  }

  it(`keeps every acknowledged image whole across nodes, GC processes and a kill -9 (${WORKERS} clients, ${LOAD_MS / 1000} s)`, { timeout: LOAD_MS + 150_000 }, async () => {
    const started = Date.now();
    const s3 = s3TestEnv()!;
    const prefix = uniquePrefix('three-nodes');
    const db = await freshDatabase();
    const tmp = mkdtempSync(join(tmpdir(), 'berth-scale-'));
    const configFile = join(tmp, 'berth.yaml');
    // Background collector on every node each second with grace 0 (the lifecycle
    // tests' settings); abandoned uploads are kept (the crashed one must survive).
    writeFileSync(configFile, ['gc:', '  enabled: true', '  interval: 1s', '  blobGrace: 0', '  manifestGrace: 0', 'storage:', `  partSize: ${PART_SIZE}`, ''].join('\n'));
    const storageUrl = `s3://${s3.bucket}/${prefix.replace(/\/$/, '')}`;
    const backendArgs = ['--metadata', db.url, '--storage', storageUrl, '--s3-endpoint', s3.endpoint];
    const env = s3.awsEnv;

    const nodes: TestServer[] = [];
    const alive: boolean[] = [];
    const startNode = async (i: number, addr?: string) => {
      nodes[i] = await startServer({ name: `node-${i}`, args: ['--config', configFile, ...backendArgs], env, addr, startTimeoutMs: 30_000 });
      alive[i] = true;
    };
    const cli = (args: string[]): Promise<CliResult> => berth([...args, ...backendArgs, '--config', configFile], env);

    const stats = {
      requests: 0,
      byStatus: {} as Record<string, number>,
      imagesPushed: 0,
      blobsMonolithic: 0,
      blobsChunked: 0,
      chunksPerNode: [0, 0, 0],
      manifestBlobUnknownRetries: 0,
      reroutedAfterKill: 0,
      uploadsResumed: 0,
      deletes: 0,
      pullsDuringLoad: 0,
      gcProcesses: 0,
      adminGcRuns: 0,
      kills: 0,
      restarts: 0,
      finalVerifiedGets: 0,
      crashOrphans: 0,
    };
    let killedAt = 0;
    const count = (status: number | string) => {
      stats.requests++;
      stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
    };

    /** The node that serves request number `i`: i mod 3, or the next live one. */
    const pick = (i: number): number => {
      for (let k = 0; k < NODES; k++) if (alive[(i + k) % NODES]) return (i + k) % NODES;
      throw new Error('no node alive');
    };

    /**
     * One HTTP request to node `i` (mod 3). A network error from a node that
     * was killed meanwhile is retried on the next node, as a load balancer
     * would (callers only send requests that are safe to repeat); any other
     * network error fails the test.
     */
    async function call(i: number, path: string, init: RequestInit = {}): Promise<Response> {
      for (let attempt = 0; ; attempt++) {
        const n = pick(i + attempt);
        try {
          const res = await fetch(nodes[n]!.url + path, { redirect: 'manual', ...init });
          count(res.status);
          return res;
        } catch (e) {
          count('network-error');
          if (alive[n] || attempt >= NODES) throw new Error(`${init.method ?? 'GET'} ${path} on node-${n}: ${(e as Error).message}`, { cause: e });
          stats.reroutedAfterKill++;
        }
      }
    }

    async function expectStatus(res: Response, status: number, what: string): Promise<Response> {
      if (res.status !== status) assert.fail(`${what}: expected ${status}, got ${res.status} ${await res.text()}`);
      return res;
    }

    async function pushMonolithic(i: number, repo: string, b: Blob): Promise<void> {
      const res = await call(i, `/v2/${repo}/blobs/uploads/?digest=${b.digest}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
        body: bytes(b.data),
      });
      await expectStatus(res, 201, `monolithic upload of ${b.digest} to ${repo}`);
      await res.arrayBuffer();
      stats.blobsMonolithic++;
    }

    /** Where an upload stands, asked of any live node: the next offset. */
    async function uploadOffset(i: number, location: string): Promise<number> {
      const res = await expectStatus(await call(i, location), 204, `upload status ${location}`);
      await res.arrayBuffer();
      const range = res.headers.get('range') ?? '0-0';
      const end = Number(range.split('-')[1]);
      return end === 0 && range === '0-0' ? 0 : end + 1;
    }

    /** PATCH one chunk to node `n` (no rerouting: the caller resumes on failure). */
    async function patch(n: number, location: string, data: Buffer, start: number): Promise<string> {
      const res = await fetch(nodes[n]!.url + location, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${start + data.length - 1}`, 'Content-Length': String(data.length) },
        body: bytes(data),
      });
      count(res.status);
      await expectStatus(res, 202, `PATCH ${start}-${start + data.length - 1} on node-${n}`);
      await res.arrayBuffer();
      stats.chunksPerNode[n]!++;
      const next = new URL(res.headers.get('location')!, nodes[n]!.url); // a path; made relative to whichever node is next
      return next.pathname + next.search;
    }

    /**
     * A chunked upload, chunk N to node N mod 3. `beforeChunk` may interfere
     * (the crash scenario). A chunk that fails because its node died is
     * resumed from the offset any other node reports.
     */
    async function pushChunked(repo: string, b: Blob, hooks: { beforeChunk?: (index: number, location: string, start: number) => Promise<boolean> } = {}): Promise<void> {
      const startRes = await expectStatus(await call(0, `/v2/${repo}/blobs/uploads/`, { method: 'POST' }), 202, `start upload in ${repo}`);
      await startRes.arrayBuffer();
      let location = startRes.headers.get('location')!;
      let offset = 0;
      while (offset < b.size) {
        const index = Math.floor(offset / CHUNK);
        const end = Math.min(offset + CHUNK, b.size);
        if (hooks.beforeChunk && (await hooks.beforeChunk(index, location, offset))) {
          // The hook sent (part of) this chunk somewhere that died: ask another node.
          offset = await uploadOffset(index + 1, location);
          stats.uploadsResumed++;
          continue;
        }
        const n = pick(index);
        try {
          location = await patch(n, location, b.data.subarray(offset, end), offset);
          offset = end;
        } catch (e) {
          if (alive[n]) throw e;
          count('network-error');
          offset = await uploadOffset(index + 1, location);
          stats.uploadsResumed++;
        }
      }
      const sep = location.includes('?') ? '&' : '?';
      const res = await call(Math.floor(b.size / CHUNK) + 1, `${location}${sep}digest=${b.digest}`, { method: 'PUT', headers: { 'Content-Length': '0' } });
      await expectStatus(res, 201, `finishing chunked upload of ${b.digest}`);
      await res.arrayBuffer();
      assert.equal(res.headers.get('docker-content-digest'), b.digest);
      stats.blobsChunked++;
    }

    /**
     * A client as docker behaves, spread over nodes: HEAD each blob on one
     * node, upload the missing ones (big ones chunked over all nodes), PUT
     * the manifest on another node; on MANIFEST_BLOB_UNKNOWN (grace 0 lets
     * GC take a blob between its upload and the manifest) upload again.
     */
    async function pushImage(i: number, image: Image, big?: Blob): Promise<void> {
      for (let attempt = 0; ; attempt++) {
        // The big blob first, then the small ones in parallel (as docker pushes
        // layers), so that at grace 0 no blob waits long for its manifest.
        const ensure = async (b: Blob, k: number) => {
          const head = await call(i + k, `/v2/${image.repo}/blobs/${b.digest}`, { method: 'HEAD' });
          if (head.status === 200) return;
          assert.equal(head.status, 404, `HEAD blob: ${head.status}`);
          if (b === big) await pushChunked(image.repo, b);
          else await pushMonolithic(i + k, image.repo, b);
        };
        if (big) await ensure(big, 0);
        await Promise.all(image.blobs.map((b, k) => (b === big ? undefined : ensure(b, k))));
        const res = await call(i + 1, `/v2/${image.repo}/manifests/${image.tag}`, { method: 'PUT', headers: { 'Content-Type': OCI_MANIFEST }, body: bytes(image.manifest) });
        const text = await res.text();
        if (res.status === 201) {
          stats.imagesPushed++;
          return;
        }
        const code = (JSON.parse(text) as { errors?: { code: string }[] }).errors?.[0]?.code;
        assert.equal(code, 'MANIFEST_BLOB_UNKNOWN', `manifest PUT ${image.repo}:${image.tag}: ${res.status} ${text}`);
        stats.manifestBlobUnknownRetries++;
        assert.ok(attempt < 30, 'too many MANIFEST_BLOB_UNKNOWN retries');
      }
    }

    /** Pulls an image from node `n` (exactly that node) and checks every byte by digest. */
    async function verifyPull(n: number, image: Image): Promise<number> {
      const base = nodes[n]!.url;
      const m = await fetch(`${base}/v2/${image.repo}/manifests/${image.tag}`, { headers: { Accept: OCI_MANIFEST } });
      count(m.status);
      assert.equal(m.status, 200, `node-${n}: ${image.repo}:${image.tag} must pull (${m.status})`);
      assert.deepEqual(Buffer.from(await m.arrayBuffer()), image.manifest, `node-${n}: manifest bytes of ${image.repo}:${image.tag}`);
      for (const b of image.blobs) {
        const res = await fetch(`${base}/v2/${image.repo}/blobs/${b.digest}`);
        count(res.status);
        assert.equal(res.status, 200, `node-${n}: ${image.repo}:${image.tag} blob ${b.digest} (${res.status})`);
        const got = Buffer.from(await res.arrayBuffer());
        assert.equal(sha256(got), b.digest, `node-${n}: bytes of ${b.digest}`);
      }
      return 1 + image.blobs.length;
    }

    const tagged = new Map<string, Image>();
    const shared = Array.from({ length: 5 }, () => randomBlob(2048));
    const deadline = Date.now() + LOAD_MS;

    async function worker(w: number): Promise<void> {
      const repo = `scale/client-${w}`;
      for (let n = 0; Date.now() < deadline; n++) {
        const tag = `t${n % 3}`; // re-pointing a tag leaves the old manifest to GC
        const big = n % 4 === 1 ? randomBlob(PART_SIZE + 512 * 1024 + Math.floor(Math.random() * 4096)) : undefined;
        const layers = [shared[(w + n) % shared.length]!, randomBlob(1024), ...(big ? [big] : [])];
        const image = makeImage(repo, tag, layers);
        await pushImage(w + n, image, big);
        tagged.set(`${repo}:${tag}`, image);
        // Pull it back at once through the node that took neither the blobs nor the manifest.
        await verifyPullAny(w + n + 2, image);
        stats.pullsDuringLoad++;
        if (n % 2 === 1) {
          // Delete another of this client's images by digest: GC takes what only it used.
          const victim = tagged.get(`${repo}:t${(n + 2) % 3}`); // the previous image
          if (victim) {
            tagged.delete(`${repo}:${victim.tag}`);
            const res = await call(w + n + 1, `/v2/${repo}/manifests/${victim.digest}`, { method: 'DELETE' });
            // 404 only if a retry after a killed node repeats a DELETE that had succeeded.
            assert.ok(res.status === 202 || (res.status === 404 && stats.reroutedAfterKill > 0), `DELETE ${victim.digest}: ${res.status}`);
            await res.arrayBuffer();
            stats.deletes++;
          }
        }
      }
    }

    /** verifyPull on node i mod 3, or the next live one if it died meanwhile. */
    async function verifyPullAny(i: number, image: Image): Promise<void> {
      for (let attempt = 0; ; attempt++) {
        const n = pick(i + attempt);
        try {
          await verifyPull(n, image);
          return;
        } catch (e) {
          if (alive[n] || attempt >= NODES) throw e;
          stats.reroutedAfterKill++;
        }
      }
    }

    async function collectors(): Promise<void> {
      for (let i = 0; Date.now() < deadline; i++) {
        if (i % 2 === 0) {
          const r = await cli(['gc', '--grace', '0', '--json']);
          assert.equal(r.code, 0, `berth gc: ${r.stderr}`);
          stats.gcProcesses++;
        } else {
          const res = await call(i, '/admin/gc?grace=0', { method: 'POST' });
          assert.equal(res.status, 200, `POST /admin/gc: ${res.status}`);
          await res.arrayBuffer();
          stats.adminGcRuns++;
        }
        await new Promise((r) => setTimeout(r, 700));
      }
    }

    /**
     * The crash: a 9 MiB chunked upload, chunk N to node N mod 3; chunk 2 goes
     * to node 2, which is killed with SIGKILL while half of the chunk is on
     * the wire. Another node must report the offset acknowledged before the
     * crash; the rest goes to the live nodes, the upload finishes there, and
     * node 2 comes back on the same address.
     */
    let crashImage: Image | undefined;
    async function crash(): Promise<void> {
      await new Promise((r) => setTimeout(r, LOAD_MS * 0.3));
      const victim = 2;
      const repo = 'scale/crash';
      const layer = randomBlob(6 * CHUNK);
      let acknowledged = -1;
      await pushChunked(repo, layer, {
        beforeChunk: async (index, location, start) => {
          if (index !== 2 || acknowledged >= 0) return false;
          acknowledged = start;
          await sendHalfAndKill(victim, location, layer.data.subarray(start, start + CHUNK), start);
          return true;
        },
      });
      assert.equal(acknowledged, 2 * CHUNK, 'the crash happened at chunk 2');
      crashImage = makeImage(repo, 'survivor', [layer]);
      await pushImage(0, crashImage, layer);
      tagged.set(`${repo}:survivor`, crashImage);
      const addr = nodes[victim]!.host;
      await nodes[victim]!.stop(); // the process is gone; this removes its data directory
      await startNode(victim, addr);
      stats.restarts++;
    }

    async function sendHalfAndKill(n: number, location: string, data: Buffer, start: number): Promise<void> {
      const url = new URL(location, nodes[n]!.url);
      const req = http.request(url, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${start + data.length - 1}`, 'Content-Length': String(data.length) },
      });
      const outcome = new Promise<string>((resolve) => {
        req.on('response', (res) => resolve(`unexpected response ${res.statusCode}`));
        req.on('error', (e) => resolve(`error ${e.message}`));
      });
      req.write(data.subarray(0, data.length / 2));
      await new Promise((r) => setTimeout(r, 300)); // the node is now streaming the chunk into S3
      alive[n] = false;
      await nodes[n]!.kill();
      stats.kills++;
      killedAt = Date.now();
      const result = await outcome;
      count('network-error');
      assert.match(result, /^error /, `the cut-off PATCH must fail (${result})`);
      // The acknowledged offset survives the crash, as any other node reports it.
      const offset = await uploadOffset(n + 1, location);
      assert.equal(offset, start, 'a crashed chunk must not move the acknowledged offset');
    }

    let phase = 'starting nodes';
    try {
      // Three nodes starting together race for the schema migration (an advisory lock).
      await Promise.all(Array.from({ length: NODES }, (_, i) => startNode(i)));
      const startedIn = Date.now() - started;

      phase = 'load';
      await Promise.all([...Array.from({ length: WORKERS }, (_, w) => worker(w)), collectors(), crash()]);
      assert.ok(crashImage, 'the crash scenario ran');
      assert.ok(alive.every(Boolean), 'all nodes are up again');

      phase = 'after the restart';
      // The restarted node takes its chunk of an upload again (chunk 2 of 4).
      const after = randomBlob(PART_SIZE + 512 * 1024);
      const afterImage = makeImage('scale/after-restart', 'latest', [after]);
      const chunksOnRestarted = stats.chunksPerNode[2]!;
      await pushImage(0, afterImage, after);
      assert.ok(stats.chunksPerNode[2]! > chunksOnRestarted, 'the restarted node took a chunk');
      tagged.set('scale/after-restart:latest', afterImage);

      phase = 'final gc';
      const last = await cli(['gc', '--grace', '0', '--json']);
      assert.equal(last.code, 0, `berth gc: ${last.stderr}`);
      stats.gcProcesses++;

      phase = 'final verification';
      for (const image of tagged.values()) {
        for (let n = 0; n < NODES; n++) stats.finalVerifiedGets += await verifyPull(n, image);
      }

      phase = 'stopping nodes';
      for (let n = 0; n < NODES; n++) {
        assert.deepEqual(nodes[n]!.loggedErrors(), [], `node-${n} logged errors`);
        await nodes[n]!.stop();
        alive[n] = false;
      }

      phase = 'fsck';
      // The only drift allowed is the kill's own residue (invariant 8: a crash
      // leaves state that fsck reports clean, or repairs): bytes a node had
      // written to S3 but not yet committed to metadata when it was killed —
      // never acknowledged, so not a lost image. Anything else fails here.
      let fsck = await cli(['fsck', '--min-age', '0', '--json']);
      if (fsck.code !== 0) {
        assert.equal(fsck.code, 1, `fsck failed to run: ${fsck.stdout}${fsck.stderr}`);
        const report = JSON.parse(fsck.stdout) as { problems: { kind: string; key?: string }[] };
        const store = s3Store(s3, prefix);
        try {
          for (const p of report.problems) {
            const when = p.key && p.kind === 'orphan-blob' ? await objectTime(store, p.key) : undefined;
            const crashResidue = when !== undefined && Math.abs(when - killedAt) <= 2500;
            assert.ok(crashResidue, `fsck problem not explained by the kill -9 at ${new Date(killedAt).toISOString()}: ${JSON.stringify(p)} (object written ${when ? new Date(when).toISOString() : 'n/a'})\n${fsck.stdout}`);
            stats.crashOrphans++;
          }
        } finally {
          store.close();
        }
        const repair = await cli(['fsck', '--min-age', '0', '--repair', '--json']);
        assert.equal(repair.code, 1, `fsck --repair: ${repair.stdout}${repair.stderr}`);
        fsck = await cli(['fsck', '--min-age', '0', '--json']);
      }
      assert.equal(fsck.code, 0, `fsck must be clean: ${fsck.stdout}${fsck.stderr}`);

      const seconds = (Date.now() - started) / 1000;
      const ok = Object.entries(stats.byStatus).filter(([s]) => /^2/.test(s)).reduce((a, [, v]) => a + v, 0);
      console.log(
        `three-nodes: ${stats.requests} HTTP requests (${ok} 2xx; by status ${JSON.stringify(stats.byStatus)}), ` +
          `${stats.imagesPushed} images pushed (${stats.blobsMonolithic} monolithic + ${stats.blobsChunked} chunked blob uploads, ` +
          `chunks per node ${stats.chunksPerNode.join('/')}), ${stats.deletes} deletes, ${stats.pullsDuringLoad} pulls during load, ` +
          `${stats.gcProcesses} berth gc processes + ${stats.adminGcRuns} admin GC runs + 3 background collectors, ` +
          `${stats.manifestBlobUnknownRetries} MANIFEST_BLOB_UNKNOWN retries, ${stats.kills} kill -9, ${stats.uploadsResumed} upload(s) resumed on another node, ` +
          `${stats.reroutedAfterKill} request(s) rerouted after the kill, ${stats.restarts} restart; ` +
          `final: ${tagged.size} tagged images × ${NODES} nodes = ${stats.finalVerifiedGets} verified GETs; ` +
          `fsck clean${stats.crashOrphans ? ` after repairing ${stats.crashOrphans} orphan object(s) written by the killed node` : ''}; ` +
          `nodes up in ${(startedIn / 1000).toFixed(1)} s, total ${seconds.toFixed(1)} s`,
      );
      console.log(`three-nodes-json: ${JSON.stringify({ ...stats, tagged: tagged.size, seconds })}`);
      assert.ok(stats.imagesPushed > WORKERS && stats.deletes > 0 && stats.blobsChunked > 1 && stats.gcProcesses >= 2, 'the load must actually have run');
      assert.ok(stats.chunksPerNode.every((c) => c > 0), 'every node took chunks');
    } catch (e) {
      (e as Error).message = `[phase: ${phase}] ${(e as Error).message}`;
      throw e;
    } finally {
      await Promise.all(nodes.map((n) => n?.stop().catch(() => {})));
      const store = s3Store(s3, prefix);
      await store.deleteEverything().catch((e) => console.error(`three-nodes: could not clean s3 prefix ${prefix}: ${e}`));
      store.close();
      await db.drop().catch((e) => console.error(`three-nodes: could not drop database: ${e}`));
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
