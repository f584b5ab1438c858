/**
 * Small helpers shared by the end-to-end tests in this folder (not a test
 * file itself: node --test only runs *.test.js). Everything here talks HTTP
 * to Berth directly, with no client library in between, so a test can check
 * what a real client did against what the registry actually stores.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { sha256, type OciLayout } from '../helpers/clients.js';

export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface FetchedManifest {
  status: number;
  bytes: Buffer;
  /** Docker-Content-Digest header. */
  digest: string | null;
  contentType: string | null;
}

export async function getManifest(url: string, repo: string, reference: string): Promise<FetchedManifest> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${reference}`, { headers: { accept: MANIFEST_ACCEPT } });
  return {
    status: res.status,
    bytes: Buffer.from(await res.arrayBuffer()),
    digest: res.headers.get('docker-content-digest'),
    contentType: res.headers.get('content-type'),
  };
}

/** GET of an image manifest that must exist; checks its digest header against its bytes. */
export async function getImageManifest(url: string, repo: string, reference: string): Promise<{ manifest: ImageManifest; digest: string; bytes: Buffer }> {
  const m = await getManifest(url, repo, reference);
  assert.equal(m.status, 200, `GET manifest ${repo}:${reference}: ${m.bytes.toString()}`);
  const digest = sha256(m.bytes);
  assert.equal(m.digest, digest, 'Docker-Content-Digest names the bytes served');
  return { manifest: JSON.parse(m.bytes.toString('utf8')) as ImageManifest, digest, bytes: m.bytes };
}

export async function headStatus(url: string, repo: string, kind: 'blobs' | 'manifests', digest: string): Promise<number> {
  const res = await fetch(`${url}/v2/${repo}/${kind}/${digest}`, { method: 'HEAD', headers: { accept: MANIFEST_ACCEPT } });
  return res.status;
}

/** GET of a blob that must exist, whose bytes must hash to its digest (and match its size). */
export async function fetchVerifiedBlob(url: string, repo: string, d: Descriptor): Promise<Buffer> {
  const res = await fetch(`${url}/v2/${repo}/blobs/${d.digest}`);
  assert.equal(res.status, 200, `GET blob ${d.digest} in ${repo}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(sha256(bytes), d.digest, `the bytes served for ${d.digest} hash to their digest`);
  assert.equal(bytes.length, d.size, `blob ${d.digest} has the size the manifest says`);
  return bytes;
}

/**
 * Checks that every blob of an image manifest is served intact, and that the
 * layers, uncompressed, are the tars whose digests the config lists as
 * diff_ids (so the image a client reassembles is byte-identical).
 */
export async function verifyImageBlobs(url: string, repo: string, manifest: ImageManifest, diffIds?: readonly string[]): Promise<void> {
  const config = JSON.parse((await fetchVerifiedBlob(url, repo, manifest.config)).toString('utf8')) as {
    rootfs: { diff_ids: string[] };
  };
  const expected = diffIds ?? config.rootfs.diff_ids;
  assert.equal(manifest.layers.length, expected.length, 'one layer per diff_id');
  for (const [i, layer] of manifest.layers.entries()) {
    const bytes = await fetchVerifiedBlob(url, repo, layer);
    const tar = layer.mediaType.endsWith('gzip') ? gunzipSync(bytes) : bytes;
    assert.equal(sha256(tar), expected[i], `layer ${i} uncompresses to diff_id ${expected[i]}`);
  }
}

/**
 * The per-layer statuses of `docker push` output ("a346056a2a4b: Pushed"),
 * keyed by short id (the first 12 hex digits of the layer's diff_id).
 */
export function dockerPushStatuses(output: string): Map<string, string[]> {
  const statuses = new Map<string, string[]>();
  for (const line of output.split('\n')) {
    const m = /^([0-9a-f]{12}): (.+)$/.exec(line.trim());
    if (!m) continue;
    const list = statuses.get(m[1]!) ?? [];
    list.push(m[2]!);
    statuses.set(m[1]!, list);
  }
  return statuses;
}

export function shortId(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

/** The digest `docker push` reports for the manifest it pushed ("v1: digest: sha256:… size: 937"). */
export function dockerPushedDigest(output: string, tag: string): string {
  const m = new RegExp(`^${tag}: digest: (sha256:[0-9a-f]{64}) size: \\d+$`, 'm').exec(output);
  assert.ok(m, `docker push reports the manifest digest:\n${output}`);
  return m[1]!;
}

/** Writes a config file that runs the background collector every 300 ms at grace 0; returns its path. */
export function writeBackgroundGcConfig(dir: string): string {
  const file = join(dir, 'berth-gc.yaml');
  writeFileSync(file, 'gc:\n  enabled: true\n  interval: 300ms\n  blobGrace: 0\n  manifestGrace: 0\n');
  return file;
}

/** Polls `check` until it returns true (or throws after timeoutMs). */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every blob of an OCI layout directory, by digest. */
export function readLayoutBlobs(dir: string): Map<string, Buffer> {
  const blobs = new Map<string, Buffer>();
  const blobDir = join(dir, 'blobs', 'sha256');
  for (const hex of readdirSync(blobDir)) blobs.set(`sha256:${hex}`, readFileSync(join(blobDir, hex)));
  return blobs;
}

/** Asserts that `dir` holds exactly the blobs and manifests of `layout`, byte for byte, tagged `tag`. */
export function assertSameLayout(dir: string, tag: string, layout: OciLayout): void {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const top = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  assert.equal(top?.digest, layout.digest, 'the copied-out tag names the same index digest');
  const out = readLayoutBlobs(dir);
  assert.deepEqual([...out.keys()].sort(), [...layout.blobs.keys()].sort(), 'the same set of blobs and manifests');
  for (const [digest, bytes] of layout.blobs) {
    const got = out.get(digest)!;
    assert.equal(sha256(got), digest, `${digest} hashes to its digest`);
    assert.ok(got.equals(bytes), `${digest} is byte-identical`);
  }
}
