/**
 * GET /v2/<name>/referrers/<digest>: an OCI index of the manifests whose
 * subject is the digest, with each referrer's artifactType and annotations,
 * filtered by ?artifactType=.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { blob, errorCode, makeImage, OCI_INDEX, OCI_MANIFEST, randomBlob, RegistryClient, sha256, type Blob } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
const EMPTY_BLOB = blob('{}');
const SBOM = 'application/vnd.example.sbom.v1+json';
const SIG = 'application/vnd.example.signature.v1+json';

interface Pushable {
  manifest: Buffer;
  digest: string;
  mediaType: string;
}

interface Referrer extends Pushable {
  blobs: Blob[];
  /** The descriptor the referrers API must list for it. */
  descriptor: Record<string, unknown>;
}

function descriptorOf(m: Pushable, artifactType: string | undefined, annotations: Record<string, string> | undefined): Record<string, unknown> {
  const d: Record<string, unknown> = { mediaType: m.mediaType, digest: m.digest, size: m.manifest.length };
  if (artifactType !== undefined) d.artifactType = artifactType;
  if (annotations !== undefined) d.annotations = annotations;
  return d;
}

/** An OCI artifact (empty config) referring to `subject`. */
function artifact(subject: Pushable, artifactType: string, annotations?: Record<string, string>): Referrer {
  const layer = randomBlob(40);
  const doc: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType,
    config: { mediaType: OCI_EMPTY, digest: EMPTY_BLOB.digest, size: EMPTY_BLOB.size },
    layers: [{ mediaType: 'application/octet-stream', digest: layer.digest, size: layer.size }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.manifest.length },
  };
  if (annotations) doc.annotations = annotations;
  const manifest = Buffer.from(JSON.stringify(doc));
  const m = { manifest, digest: sha256(manifest), mediaType: OCI_MANIFEST };
  return { ...m, blobs: [EMPTY_BLOB, layer], descriptor: descriptorOf(m, artifactType, annotations) };
}

/** An image manifest without artifactType: its config's media type is its artifact type. */
function imageReferrer(subject: Pushable, configType: string): Referrer {
  const config = blob(JSON.stringify({ nonce: randomBytes(8).toString('hex') }));
  const doc = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: configType, digest: config.digest, size: config.size },
    layers: [],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.manifest.length },
  };
  const manifest = Buffer.from(JSON.stringify(doc));
  const m = { manifest, digest: sha256(manifest), mediaType: OCI_MANIFEST };
  return { ...m, blobs: [config], descriptor: descriptorOf(m, configType, undefined) };
}

/** An index referrer (e.g. a bundle of signatures) with artifactType. */
function indexReferrer(subject: Pushable, children: Pushable[], artifactType: string, annotations: Record<string, string>): Referrer {
  const doc = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    artifactType,
    manifests: children.map((c) => ({ mediaType: c.mediaType, digest: c.digest, size: c.manifest.length })),
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.manifest.length },
    annotations,
  };
  const manifest = Buffer.from(JSON.stringify(doc));
  const m = { manifest, digest: sha256(manifest), mediaType: OCI_INDEX };
  return { ...m, blobs: [], descriptor: descriptorOf(m, artifactType, annotations) };
}

const byDigest = (a: { digest?: unknown }, b: { digest?: unknown }) => String(a.digest).localeCompare(String(b.digest));

describe('referrers', () => {
  let server: TestServer;
  let client: RegistryClient;
  const repo = 'refs/app';
  let subject: Pushable;
  let sbom: Referrer;
  let sig: Referrer;
  let sig2: Referrer;
  let plain: Referrer;
  let bundle: Referrer;

  async function pushReferrer(r: Referrer, reference = r.digest, into = repo): Promise<void> {
    for (const b of r.blobs) await client.pushBlob(into, b);
    const res = await client.putManifest(into, reference, r.manifest, r.mediaType);
    assert.equal(res.status, 201, await res.clone().text());
  }

  async function referrers(digest: string, query = '', into = repo): Promise<{ res: Response; body: { schemaVersion: number; mediaType: string; manifests: Record<string, unknown>[] } }> {
    const res = await client.fetch(`/v2/${into}/referrers/${digest}${query}`);
    assert.equal(res.status, 200, `referrers ${digest}${query}`);
    return { res, body: (await res.json()) as { schemaVersion: number; mediaType: string; manifests: Record<string, unknown>[] } };
  }

  before(async () => {
    server = await startServer();
    client = new RegistryClient(server.url);
    const image = makeImage({ layers: 1 });
    await client.pushImage(repo, image, 'v1');
    subject = image;
    sbom = artifact(subject, SBOM, { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z', 'org.example.tool': 'syft' });
    sig = artifact(subject, SIG, { 'org.example.signer': 'alice' });
    sig2 = artifact(subject, SIG);
    plain = imageReferrer(subject, 'application/vnd.example.config.v1+json');
    await pushReferrer(sbom);
    await pushReferrer(sig, 'signature'); // by tag: still a referrer
    await pushReferrer(sig2);
    await pushReferrer(plain);
    bundle = indexReferrer(subject, [sig, sig2], 'application/vnd.example.bundle', { 'org.example.kind': 'bundle' });
    await pushReferrer(bundle);
    // Noise: a referrer of another subject, and the same subject digest in another repository.
    const other = makeImage({ layers: 1 });
    await client.pushImage(repo, other, 'other');
    await pushReferrer(artifact(other, SBOM));
    await client.pushImage('refs/elsewhere', image, 'v1');
    await pushReferrer(artifact(subject, SBOM), undefined, 'refs/elsewhere');
  });
  after(() => server.stop());

  it('lists every referrer of the subject as an OCI index', async () => {
    const { res, body } = await referrers(subject.digest);
    assert.equal(res.headers.get('content-type'), OCI_INDEX);
    assert.equal(res.headers.get('oci-filters-applied'), null);
    assert.equal(body.schemaVersion, 2);
    assert.equal(body.mediaType, OCI_INDEX);
    assert.deepEqual(
      [...body.manifests].sort(byDigest),
      [sbom, sig, sig2, plain, bundle].map((r) => r.descriptor).sort(byDigest),
    );
  });

  it('?artifactType= filters and sets OCI-Filters-Applied: artifactType', async () => {
    const { res, body } = await referrers(subject.digest, `?artifactType=${encodeURIComponent(SIG)}`);
    assert.equal(res.headers.get('oci-filters-applied'), 'artifactType');
    assert.equal(res.headers.get('content-type'), OCI_INDEX);
    assert.deepEqual([...body.manifests].sort(byDigest), [sig.descriptor, sig2.descriptor].sort(byDigest));

    const cfg = await referrers(subject.digest, `?artifactType=${encodeURIComponent('application/vnd.example.config.v1+json')}`);
    assert.deepEqual(cfg.body.manifests, [plain.descriptor]);

    const idx = await referrers(subject.digest, '?artifactType=application/vnd.example.bundle');
    assert.deepEqual(idx.body.manifests, [bundle.descriptor]);
  });

  it('a filter matching nothing → 200 with an empty list, filter still reported', async () => {
    const { res, body } = await referrers(subject.digest, '?artifactType=application/vnd.example.none');
    assert.equal(res.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(body, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
  });

  it('a subject without referrers → 200 with an empty index', async () => {
    const lonely = makeImage({ layers: 1 });
    await client.pushImage(repo, lonely, 'lonely');
    const { res, body } = await referrers(lonely.digest);
    assert.equal(res.headers.get('content-type'), OCI_INDEX);
    assert.deepEqual(body, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
  });

  it('an unknown subject → 200 with an empty index', async () => {
    const { body } = await referrers(sha256(randomBytes(32)));
    assert.deepEqual(body, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
  });

  it('a referrer pushed before its subject is listed, before and after the subject arrives', async () => {
    const later = makeImage({ layers: 1 });
    const early = artifact(later, SBOM, { 'org.example.order': 'first' });
    await pushReferrer(early);
    assert.deepEqual((await referrers(later.digest)).body.manifests, [early.descriptor]);
    await client.pushImage(repo, later, 'later');
    assert.deepEqual((await referrers(later.digest)).body.manifests, [early.descriptor]);
  });

  it('a deleted referrer is no longer listed', async () => {
    const target = makeImage({ layers: 1 });
    await client.pushImage(repo, target, 'target');
    const keep = artifact(target, SIG);
    const gone = artifact(target, SIG);
    await pushReferrer(keep);
    await pushReferrer(gone);
    assert.equal((await referrers(target.digest)).body.manifests.length, 2);
    const del = await client.fetch(`/v2/${repo}/manifests/${gone.digest}`, { method: 'DELETE' });
    assert.equal(del.status, 202);
    assert.deepEqual((await referrers(target.digest)).body.manifests, [keep.descriptor]);
  });

  it('referrers that still exist after their subject is deleted are listed', async () => {
    const target = makeImage({ layers: 1 });
    await client.pushImage(repo, target, 'doomed');
    const r = artifact(target, SBOM);
    await pushReferrer(r);
    const del = await client.fetch(`/v2/${repo}/manifests/${target.digest}`, { method: 'DELETE' });
    assert.equal(del.status, 202);
    const still = await client.fetch(`/v2/${repo}/manifests/${r.digest}`, { headers: { Accept: OCI_MANIFEST } });
    assert.equal(still.status, 200);
    assert.deepEqual((await referrers(target.digest)).body.manifests, [r.descriptor]);
  });

  it('an invalid digest → 400 DIGEST_INVALID', async () => {
    for (const d of ['sha256:abc', 'latest', `md5:${'0'.repeat(32)}`, `sha256:${'Z'.repeat(64)}`]) {
      const res = await client.fetch(`/v2/${repo}/referrers/${d}`);
      assert.equal(res.status, 400, d);
      assert.equal(await errorCode(res), 'DIGEST_INVALID');
    }
  });

  it('only GET is allowed → 405 UNSUPPORTED', async () => {
    const res = await client.fetch(`/v2/${repo}/referrers/${subject.digest}`, { method: 'DELETE' });
    assert.equal(res.status, 405);
    assert.equal(await errorCode(res), 'UNSUPPORTED');
  });
});
