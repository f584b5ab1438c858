/**
 * PUT, GET and HEAD of manifests over HTTP, as the OCI conformance suite
 * checks them: every manifest type by tag and by digest, validation of what
 * is pushed (nothing is stored when a push is refused), the size limit, the
 * OCI-Subject header and content negotiation.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import {
  blob,
  bytes,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  errorCode,
  makeImage,
  OCI_INDEX,
  OCI_MANIFEST,
  randomBlob,
  RegistryClient,
  sha256,
  type Blob,
  type Image,
} from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
const EMPTY_BLOB = blob('{}');
const MAX_MANIFEST = 4 * 1024 * 1024;

interface Pushable {
  manifest: Buffer;
  digest: string;
  mediaType: string;
}

/** An OCI artifact: artifactType, the empty config, one layer, optionally a subject. */
function makeArtifact(opts: { artifactType?: string; subject?: Pushable; annotations?: Record<string, string> } = {}): Pushable & { blobs: Blob[] } {
  const layer = randomBlob(64);
  const doc: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: opts.artifactType ?? 'application/vnd.example.sbom.v1+json',
    config: { mediaType: OCI_EMPTY, digest: EMPTY_BLOB.digest, size: EMPTY_BLOB.size },
    layers: [{ mediaType: 'application/vnd.example.sbom.layer+json', digest: layer.digest, size: layer.size }],
  };
  if (opts.subject) doc.subject = { mediaType: opts.subject.mediaType, digest: opts.subject.digest, size: opts.subject.manifest.length };
  if (opts.annotations) doc.annotations = opts.annotations;
  const manifest = Buffer.from(JSON.stringify(doc));
  return { manifest, digest: sha256(manifest), mediaType: OCI_MANIFEST, blobs: [EMPTY_BLOB, layer] };
}

/** An index over images with explicit platforms (so the default one need not come first). */
function makePlatformIndex(entries: { image: Pushable; arch: string; os?: string }[], mediaType = OCI_INDEX): Pushable {
  const doc = {
    schemaVersion: 2,
    mediaType,
    manifests: entries.map(({ image, arch, os }) => ({
      mediaType: image.mediaType,
      digest: image.digest,
      size: image.manifest.length,
      platform: { os: os ?? 'linux', architecture: arch },
    })),
  };
  const manifest = Buffer.from(JSON.stringify(doc));
  return { manifest, digest: sha256(manifest), mediaType };
}

/** A GET or HEAD with exactly the headers given (fetch always adds `Accept: *\/*`). */
function rawRequest(url: string, method: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('manifests', () => {
  let server: TestServer;
  let client: RegistryClient;
  before(async () => {
    server = await startServer();
    client = new RegistryClient(server.url);
  });
  after(() => server.stop());

  const get = (repo: string, ref: string, accept?: string) =>
    client.fetch(`/v2/${repo}/manifests/${ref}`, accept === undefined ? {} : { headers: { Accept: accept } });
  const head = (repo: string, ref: string, accept?: string) =>
    client.fetch(`/v2/${repo}/manifests/${ref}`, { method: 'HEAD', ...(accept === undefined ? {} : { headers: { Accept: accept } }) });
  const pushBlobs = async (repo: string, blobs: Blob[]) => {
    for (const b of blobs) await client.pushBlob(repo, b);
  };
  const tagsOf = async (repo: string): Promise<string[] | number> => {
    const res = await client.fetch(`/v2/${repo}/tags/list`);
    if (res.status !== 200) return res.status;
    return ((await res.json()) as { tags: string[] }).tags;
  };

  /** Asserts a 201 answer to a manifest PUT: Location by digest, Docker-Content-Digest, empty body. */
  async function assertCreated(res: Response, repo: string, digest: string): Promise<void> {
    assert.equal(res.status, 201, await res.clone().text());
    assert.equal(res.headers.get('location'), `/v2/${repo}/manifests/${digest}`);
    assert.equal(res.headers.get('docker-content-digest'), digest);
    assert.equal(await res.text(), '');
  }

  /** Asserts GET and HEAD by every reference give the stored bytes and headers. */
  async function assertServed(repo: string, refs: string[], m: Pushable): Promise<void> {
    for (const ref of refs) {
      const g = await get(repo, ref, m.mediaType);
      assert.equal(g.status, 200, `GET ${ref}`);
      assert.equal(g.headers.get('content-type'), m.mediaType);
      assert.equal(g.headers.get('content-length'), String(m.manifest.length));
      assert.equal(g.headers.get('docker-content-digest'), m.digest);
      assert.deepEqual(Buffer.from(await g.arrayBuffer()), m.manifest);

      const h = await head(repo, ref, m.mediaType);
      assert.equal(h.status, 200, `HEAD ${ref}`);
      assert.equal(h.headers.get('content-type'), m.mediaType);
      assert.equal(h.headers.get('content-length'), String(m.manifest.length));
      assert.equal(h.headers.get('docker-content-digest'), m.digest);
      assert.equal((await h.arrayBuffer()).byteLength, 0, 'HEAD has no body');
    }
  }

  describe('PUT of each manifest type, by digest and by tag', () => {
    /** Pushes by digest, then the same bytes by tag; both 201 with the same digest. */
    async function pushBoth(repo: string, m: Pushable, tag: string): Promise<void> {
      await assertCreated(await client.putManifest(repo, m.digest, m.manifest, m.mediaType), repo, m.digest);
      await assertCreated(await client.putManifest(repo, tag, m.manifest, m.mediaType), repo, m.digest);
      await assertServed(repo, [tag, m.digest], m);
    }

    it('OCI image manifest', async () => {
      const image = makeImage({ layers: 2 });
      await pushBlobs('types/oci-image', [image.config, ...image.layers]);
      await pushBoth('types/oci-image', image, 'v1');
    });

    it('OCI image manifest by tag only (no digest PUT first)', async () => {
      const image = makeImage({ layers: 1 });
      await pushBlobs('types/oci-image-tag', [image.config, ...image.layers]);
      await assertCreated(await client.putManifest('types/oci-image-tag', 'only-tag', image.manifest, OCI_MANIFEST), 'types/oci-image-tag', image.digest);
      await assertServed('types/oci-image-tag', ['only-tag', image.digest], image);
    });

    it('Docker schema 2 manifest', async () => {
      const image = makeImage({ layers: 2, mediaType: DOCKER_MANIFEST });
      await pushBlobs('types/docker-image', [image.config, ...image.layers]);
      await pushBoth('types/docker-image', image, 'latest');
    });

    it('OCI index', async () => {
      const repo = 'types/oci-index';
      const a = makeImage();
      const b = makeImage();
      for (const im of [a, b]) await client.pushImage(repo, im);
      await pushBoth(repo, makePlatformIndex([{ image: a, arch: 'amd64' }, { image: b, arch: 'arm64' }]), 'multi');
    });

    it('Docker manifest list', async () => {
      const repo = 'types/docker-list';
      const a = makeImage({ mediaType: DOCKER_MANIFEST });
      const b = makeImage({ mediaType: DOCKER_MANIFEST });
      for (const im of [a, b]) await client.pushImage(repo, im);
      await pushBoth(repo, makePlatformIndex([{ image: a, arch: 'amd64' }, { image: b, arch: 'arm64' }], DOCKER_LIST), 'multi');
    });

    it('OCI artifact with artifactType and the empty config', async () => {
      const repo = 'types/artifact';
      const artifact = makeArtifact();
      await pushBlobs(repo, artifact.blobs);
      await pushBoth(repo, artifact, 'sbom');
      // The empty config blob itself is served as pushed.
      const cfg = await client.getBlob(repo, EMPTY_BLOB.digest);
      assert.equal(cfg.status, 200);
      assert.equal(await cfg.text(), '{}');
    });

    it('an OCI manifest pushed without Content-Type is stored with the mediaType of its body', async () => {
      const repo = 'types/no-content-type';
      const image = makeImage({ layers: 1 });
      await pushBlobs(repo, [image.config, ...image.layers]);
      const res = await client.fetch(`/v2/${repo}/manifests/t`, { method: 'PUT', body: bytes(image.manifest) });
      await assertCreated(res, repo, image.digest);
      await assertServed(repo, ['t'], image);
    });

    it('PUT by a sha512 digest stores the manifest under that digest', async () => {
      const repo = 'types/sha512';
      const image = makeImage({ layers: 1 });
      await pushBlobs(repo, [image.config, ...image.layers]);
      const { createHash } = await import('node:crypto');
      const d512 = `sha512:${createHash('sha512').update(image.manifest).digest('hex')}`;
      await assertCreated(await client.putManifest(repo, d512, image.manifest, OCI_MANIFEST), repo, d512);
      await assertServed(repo, [d512], { ...image, digest: d512 });
    });

    it('PUT by digest with a body of another digest is 400 DIGEST_INVALID and stores nothing', async () => {
      const repo = 'types/digest-mismatch';
      const image = makeImage({ layers: 1 });
      const other = makeImage({ layers: 1 });
      await pushBlobs(repo, [image.config, ...image.layers]);
      const res = await client.putManifest(repo, other.digest, image.manifest, OCI_MANIFEST);
      assert.equal(res.status, 400);
      assert.equal(await errorCode(res), 'DIGEST_INVALID');
      for (const d of [other.digest, image.digest]) {
        const g = await get(repo, d);
        assert.equal(g.status, 404);
        assert.equal(await errorCode(g), 'MANIFEST_UNKNOWN');
      }
    });

    it('re-pushing the same manifest to the same tag is idempotent', async () => {
      const repo = 'types/idempotent';
      const image = makeImage({ layers: 1 });
      await client.pushImage(repo, image, 'same');
      await assertCreated(await client.putManifest(repo, 'same', image.manifest, OCI_MANIFEST), repo, image.digest);
      assert.deepEqual(await tagsOf(repo), ['same']);
      await assertServed(repo, ['same'], image);
    });

    it('overwriting a tag moves it; the old manifest stays reachable by digest', async () => {
      const repo = 'types/overwrite';
      const a = makeImage({ layers: 1 });
      const b = makeImage({ layers: 1 });
      await client.pushImage(repo, a, 'moving');
      await assertServed(repo, ['moving'], a);
      await client.pushImage(repo, b, 'moving');
      await assertServed(repo, ['moving', b.digest], b);
      await assertServed(repo, [a.digest], a);
      assert.deepEqual(await tagsOf(repo), ['moving']);
    });
  });

  describe('validation', () => {
    const repo = 'validation/app';
    let keep: Image;
    let cfg: Blob;
    let layer: Blob;
    before(async () => {
      keep = makeImage({ layers: 1 });
      await client.pushImage(repo, keep, 'keep');
      cfg = keep.config;
      layer = keep.layers[0]!;
    });

    const desc = (b: Blob, mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip') => ({ mediaType, digest: b.digest, size: b.size });
    const image = (extra: Record<string, unknown> = {}) => ({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: desc(cfg, 'application/vnd.oci.image.config.v1+json'),
      layers: [desc(layer)],
      // Unlike `keep`, so that a body refused here is never the bytes of a stored manifest.
      annotations: { 'org.example.case': 'refused' },
      ...extra,
    });
    const without = (doc: Record<string, unknown>, key: string) => {
      const copy = { ...doc };
      delete copy[key];
      return copy;
    };
    const js = (v: unknown) => Buffer.from(JSON.stringify(v));

    /** Refused with `status`/`code`: the tag is not created and nothing is stored under the body's digest. */
    async function assertRefused(body: Buffer, contentType: string | undefined, status: number, code: string, tag = 'bad'): Promise<void> {
      const res = await client.fetch(`/v2/${repo}/manifests/${tag}`, {
        method: 'PUT',
        headers: contentType === undefined ? {} : { 'Content-Type': contentType },
        body: bytes(body),
      });
      assert.equal(res.status, status, `expected ${status} ${code}`);
      assert.equal(await errorCode(res), code);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json(;|$)/);
      const byTag = await get(repo, tag);
      assert.equal(byTag.status, 404);
      assert.equal(await errorCode(byTag), 'MANIFEST_UNKNOWN');
      const byDigest = await get(repo, sha256(body));
      assert.equal(byDigest.status, 404);
      assert.equal(await errorCode(byDigest), 'MANIFEST_UNKNOWN');
      assert.deepEqual(await tagsOf(repo), ['keep']);
    }

    const invalid: [string, () => Buffer, string | undefined][] = [
      ['body is not JSON', () => Buffer.from('{"schemaVersion": 2, "mediaType": '), OCI_MANIFEST],
      ['body is empty', () => Buffer.alloc(0), OCI_MANIFEST],
      ['body is a JSON array', () => js([image()]), OCI_MANIFEST],
      ['schemaVersion 1', () => js(image({ schemaVersion: 1 })), OCI_MANIFEST],
      ['schemaVersion missing', () => js(without(image(), 'schemaVersion')), OCI_MANIFEST],
      ['Docker schema 1 media type', () => js(image()), 'application/vnd.docker.distribution.manifest.v1+prettyjws'],
      ['Content-Type disagrees with the mediaType of the body', () => js(image()), DOCKER_MANIFEST],
      ['Content-Type index for an image body', () => js(image()), OCI_INDEX],
      ['unknown media type', () => js(image({ mediaType: 'application/vnd.example.unknown+json' })), 'application/vnd.example.unknown+json'],
      ['layers missing', () => js(without(image(), 'layers')), OCI_MANIFEST],
      ['config missing', () => js(without(image(), 'config')), OCI_MANIFEST],
      ['layer digest malformed', () => js(image({ layers: [{ ...desc(layer), digest: 'sha256:1234' }] })), OCI_MANIFEST],
      ['layer digest of an unknown algorithm', () => js(image({ layers: [{ ...desc(layer), digest: `md5:${'0'.repeat(32)}` }] })), OCI_MANIFEST],
      ['layer size negative', () => js(image({ layers: [{ ...desc(layer), size: -5 }] })), OCI_MANIFEST],
      ['layer size not a number', () => js(image({ layers: [{ ...desc(layer), size: '512' }] })), OCI_MANIFEST],
      ['config digest malformed', () => js(image({ config: { ...desc(cfg), digest: 'not-a-digest' } })), OCI_MANIFEST],
      ['index without manifests', () => js({ schemaVersion: 2, mediaType: OCI_INDEX }), OCI_INDEX],
    ];
    for (const [name, body, contentType] of invalid) {
      it(`${name} → 400 MANIFEST_INVALID, nothing stored`, () => assertRefused(body(), contentType, 400, 'MANIFEST_INVALID'));
    }

    it('the same invalid bodies pushed by digest are refused too', async () => {
      const body = js(without(image(), 'layers'));
      const res = await client.putManifest(repo, sha256(body), body, OCI_MANIFEST);
      assert.equal(res.status, 400);
      assert.equal(await errorCode(res), 'MANIFEST_INVALID');
      assert.equal((await get(repo, sha256(body))).status, 404);
    });

    it('a missing layer → 400 MANIFEST_BLOB_UNKNOWN (as the reference registry answers)', async () => {
      const missing = randomBlob(32);
      await assertRefused(js(image({ layers: [desc(layer), desc(missing)] })), OCI_MANIFEST, 400, 'MANIFEST_BLOB_UNKNOWN');
    });

    it('a missing config → 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const missing = randomBlob(32);
      await assertRefused(js(image({ config: desc(missing, 'application/vnd.oci.image.config.v1+json') })), OCI_MANIFEST, 400, 'MANIFEST_BLOB_UNKNOWN');
    });

    it('a blob pushed only to another repository does not count → 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const elsewhere = randomBlob(48);
      await client.pushBlob('validation/other', elsewhere);
      await assertRefused(js(image({ layers: [desc(elsewhere)] })), OCI_MANIFEST, 400, 'MANIFEST_BLOB_UNKNOWN');
    });

    it('an index referencing a missing child → 400 MANIFEST_BLOB_UNKNOWN (as the reference registry answers)', async () => {
      const absent = makeImage();
      const index = makePlatformIndex([{ image: keep, arch: 'amd64' }, { image: absent, arch: 'arm64' }]);
      await assertRefused(index.manifest, OCI_INDEX, 400, 'MANIFEST_BLOB_UNKNOWN');
    });

    it('an index referencing a manifest of another repository only → 400 MANIFEST_BLOB_UNKNOWN', async () => {
      const elsewhere = makeImage({ layers: 1 });
      await client.pushImage('validation/other', elsewhere, 'x');
      const index = makePlatformIndex([{ image: elsewhere, arch: 'amd64' }]);
      await assertRefused(index.manifest, OCI_INDEX, 400, 'MANIFEST_BLOB_UNKNOWN');
    });

    it('a refused push to a new repository does not create it', async () => {
      const image = makeImage({ layers: 1 });
      const res = await client.putManifest('validation/never', 'v1', image.manifest, OCI_MANIFEST);
      assert.equal(res.status, 400);
      assert.equal(await errorCode(res), 'MANIFEST_BLOB_UNKNOWN');
      const tags = await client.fetch('/v2/validation/never/tags/list');
      assert.equal(tags.status, 404);
      assert.equal(await errorCode(tags), 'NAME_UNKNOWN');
      const byTag = await get('validation/never', 'v1');
      assert.equal(byTag.status, 404);
      assert.equal(await errorCode(byTag), 'NAME_UNKNOWN');
      const catalog = (await (await client.fetch('/v2/_catalog')).json()) as { repositories: string[] };
      assert.equal(catalog.repositories.includes('validation/never'), false);
    });

    it('an invalid repository name → 400 NAME_INVALID', async () => {
      const res = await client.putManifest('Validation/UPPER', 'v1', keep.manifest, OCI_MANIFEST);
      assert.equal(res.status, 400);
      assert.equal(await errorCode(res), 'NAME_INVALID');
    });

    it('an invalid tag → 400 MANIFEST_INVALID (129 characters)', async () => {
      const res = await client.putManifest(repo, 'x'.repeat(129), keep.manifest, OCI_MANIFEST);
      assert.equal(res.status, 400);
      assert.equal(await errorCode(res), 'MANIFEST_INVALID');
    });

    it('a repository name of exactly 255 characters is accepted; 256 → 400 NAME_INVALID', async () => {
      const name255 = `validation/${'n'.repeat(255 - 'validation/'.length)}`;
      assert.equal(name255.length, 255);
      const image = makeImage({ layers: 1 });
      await client.pushImage(name255, image, 'v1');
      await assertServed(name255, ['v1'], image);
      const res = await client.putManifest(`${name255}n`, 'v1', image.manifest, OCI_MANIFEST);
      assert.equal(res.status, 400);
      assert.equal(await errorCode(res), 'NAME_INVALID');
      const g = await get(`${name255}n`, 'v1');
      assert.equal(g.status, 400);
      assert.equal(await errorCode(g), 'NAME_INVALID');
    });

    it('reading a reference that is neither tag nor digest → 404 MANIFEST_UNKNOWN', async () => {
      for (const ref of ['x'.repeat(129), '-leading-dash', '.dot']) {
        const res = await get(repo, ref);
        assert.equal(res.status, 404, ref);
        assert.equal(await errorCode(res), 'MANIFEST_UNKNOWN');
      }
    });

    it('a tag of exactly 128 characters is accepted', async () => {
      const tag = `t${'x'.repeat(127)}`;
      const image = makeImage({ layers: 1 });
      await client.pushImage('validation/long-tag', image, tag);
      await assertServed('validation/long-tag', [tag], image);
    });
  });

  describe('size limit', () => {
    const repo = 'size/app';
    let base: Image;
    before(async () => {
      base = makeImage({ layers: 1 });
      await pushBlobs(repo, [base.config, ...base.layers]);
    });

    /** The base image's manifest padded with an annotation to exactly `size` bytes. */
    function padded(size: number): Buffer {
      const doc = JSON.parse(base.manifest.toString()) as Record<string, unknown>;
      doc.annotations = { 'org.example.padding': '' };
      const overhead = Buffer.byteLength(JSON.stringify(doc));
      doc.annotations = { 'org.example.padding': 'p'.repeat(size - overhead) };
      const body = Buffer.from(JSON.stringify(doc));
      assert.equal(body.length, size);
      return body;
    }

    /** PUTs `body` as the manifest `ref` without Content-Length: a stream of 256 KiB chunks. */
    function putChunked(ref: string, body: Buffer): Promise<Response> {
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < body.length; i += 256 * 1024) controller.enqueue(new Uint8Array(body.subarray(i, i + 256 * 1024)));
          controller.close();
        },
      });
      return client.fetch(`/v2/${repo}/manifests/${ref}`, {
        method: 'PUT',
        headers: { 'Content-Type': OCI_MANIFEST },
        body: stream,
        duplex: 'half',
      } as RequestInit);
    }

    it('a manifest of exactly 4 MiB is accepted and served back whole', async () => {
      const body = padded(MAX_MANIFEST);
      const digest = sha256(body);
      await assertCreated(await client.putManifest(repo, 'big', body, OCI_MANIFEST), repo, digest);
      await assertServed(repo, ['big'], { manifest: body, digest, mediaType: OCI_MANIFEST });
    });

    it('a manifest one byte over 4 MiB → 413, not stored', async () => {
      const body = padded(MAX_MANIFEST + 1);
      const res = await client.putManifest(repo, 'too-big', body, OCI_MANIFEST);
      assert.equal(res.status, 413);
      assert.equal(await errorCode(res), 'SIZE_INVALID');
      assert.equal((await get(repo, 'too-big')).status, 404);
      assert.equal((await get(repo, sha256(body))).status, 404);
    });

    it('a manifest over 4 MiB sent without Content-Length (chunked) → 413, not stored', async () => {
      const res = await putChunked('chunked', padded(MAX_MANIFEST + 64 * 1024));
      assert.equal(res.status, 413);
      assert.equal(await errorCode(res), 'SIZE_INVALID');
      assert.equal((await get(repo, 'chunked')).status, 404);
    });

    it('after a chunked manifest refused with 413, the client\'s next requests are answered (the connection is not left hanging)', async () => {
      const body = padded(MAX_MANIFEST + 64 * 1024);
      for (let round = 0; round < 4; round++) {
        const res = await putChunked('chunked', body);
        assert.equal(res.status, 413);
        await res.arrayBuffer();
        assert.equal((await get(repo, 'chunked')).status, 404);
        const b = randomBlob(64);
        const push = await client.fetch(`/v2/${repo}/blobs/uploads/?digest=${b.digest}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
          body: bytes(b.data),
          signal: AbortSignal.timeout(10_000),
        });
        assert.equal(push.status, 201, `round ${round}`);
      }
    });
  });

  describe('OCI-Subject', () => {
    const repo = 'subject/app';

    it('is returned for a manifest with a subject that does not exist yet', async () => {
      const subject = makeImage({ layers: 1 });
      const artifact = makeArtifact({ subject });
      await pushBlobs(repo, artifact.blobs);
      const res = await client.putManifest(repo, artifact.digest, artifact.manifest, OCI_MANIFEST);
      await assertCreated(res, repo, artifact.digest);
      assert.equal(res.headers.get('oci-subject'), subject.digest);
      // The subject really is still absent.
      assert.equal((await get(repo, subject.digest)).status, 404);
    });

    it('is returned for a manifest whose subject exists', async () => {
      const subject = makeImage({ layers: 1 });
      await client.pushImage(repo, subject, 'base');
      const artifact = makeArtifact({ subject });
      await pushBlobs(repo, artifact.blobs);
      const res = await client.putManifest(repo, 'sig', artifact.manifest, OCI_MANIFEST);
      await assertCreated(res, repo, artifact.digest);
      assert.equal(res.headers.get('oci-subject'), subject.digest);
    });

    it('is absent for a manifest without a subject', async () => {
      const image = makeImage({ layers: 1 });
      await pushBlobs(repo, [image.config, ...image.layers]);
      const res = await client.putManifest(repo, 'plain', image.manifest, OCI_MANIFEST);
      await assertCreated(res, repo, image.digest);
      assert.equal(res.headers.get('oci-subject'), null);
    });
  });

  describe('content negotiation', () => {
    const repo = 'negotiation/app';
    let amd64: Image;
    let arm64: Image;
    let index: Pushable;
    let dAmd64: Image;
    let list: Pushable;
    before(async () => {
      amd64 = makeImage({ layers: 1 });
      arm64 = makeImage({ layers: 1 });
      for (const im of [amd64, arm64]) await client.pushImage(repo, im);
      // The default platform is deliberately not the first entry.
      index = makePlatformIndex([{ image: arm64, arch: 'arm64' }, { image: amd64, arch: 'amd64', os: 'windows' }, { image: amd64, arch: 'amd64' }]);
      const res = await client.putManifest(repo, 'multi', index.manifest, OCI_INDEX);
      assert.equal(res.status, 201);
      dAmd64 = makeImage({ layers: 1, mediaType: DOCKER_MANIFEST });
      await client.pushImage(repo, dAmd64);
      list = makePlatformIndex([{ image: dAmd64, arch: 'amd64' }], DOCKER_LIST);
      assert.equal((await client.putManifest(repo, 'dlist', list.manifest, DOCKER_LIST)).status, 201);
      await client.pushImage(repo, amd64, 'single');
    });

    it('an index by tag with Accept naming only image manifest types → its linux/amd64 image', async () => {
      for (const method of ['GET', 'HEAD']) {
        const res = await client.fetch(`/v2/${repo}/manifests/multi`, { method, headers: { Accept: `${OCI_MANIFEST}, ${DOCKER_MANIFEST}` } });
        assert.equal(res.status, 200, method);
        assert.equal(res.headers.get('content-type'), OCI_MANIFEST);
        assert.equal(res.headers.get('docker-content-digest'), amd64.digest);
        assert.equal(res.headers.get('content-length'), String(amd64.manifest.length));
        if (method === 'GET') assert.deepEqual(Buffer.from(await res.arrayBuffer()), amd64.manifest);
      }
    });

    it('a Docker manifest list by tag with Accept of the Docker manifest type → its amd64 image', async () => {
      const res = await get(repo, 'dlist', DOCKER_MANIFEST);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), DOCKER_MANIFEST);
      assert.equal(res.headers.get('docker-content-digest'), dAmd64.digest);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), dAmd64.manifest);
    });

    it('an index with Accept naming its own type among others → the index itself', async () => {
      const res = await get(repo, 'multi', `${OCI_MANIFEST};q=0.5, ${OCI_INDEX}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), OCI_INDEX);
      assert.equal(res.headers.get('docker-content-digest'), index.digest);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), index.manifest);
    });

    it('Accept naming only types the manifest is not → 404 MANIFEST_UNKNOWN', async () => {
      // An image manifest asked for as an index.
      const image = await get(repo, 'single', `${OCI_INDEX}, ${DOCKER_LIST}`);
      assert.equal(image.status, 404);
      assert.equal(await errorCode(image), 'MANIFEST_UNKNOWN');
      // An OCI index whose default image is OCI, asked for as Docker types only.
      const idx = await get(repo, 'multi', `${DOCKER_LIST}, ${DOCKER_MANIFEST}`);
      assert.equal(idx.status, 404);
      assert.equal(await errorCode(idx), 'MANIFEST_UNKNOWN');
      const h = await head(repo, 'multi', DOCKER_MANIFEST);
      assert.equal(h.status, 404);
      // An index by digest is not rewritten: the digest names exactly one manifest.
      const byDigest = await get(repo, index.digest, OCI_MANIFEST);
      assert.equal(byDigest.status, 404);
      assert.equal(await errorCode(byDigest), 'MANIFEST_UNKNOWN');
    });

    it('no Accept header → the stored type', async () => {
      for (const method of ['GET', 'HEAD']) {
        const res = await rawRequest(`${server.url}/v2/${repo}/manifests/multi`, method);
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-type'], OCI_INDEX);
        assert.equal(res.headers['docker-content-digest'], index.digest);
        assert.equal(res.headers['content-length'], String(index.manifest.length));
        assert.deepEqual(res.body, method === 'GET' ? index.manifest : Buffer.alloc(0));
      }
    });

    it('Accept */* → the stored type', async () => {
      for (const ref of ['multi', 'dlist', 'single']) {
        const res = await rawRequest(`${server.url}/v2/${repo}/manifests/${ref}`, 'GET', { Accept: '*/*' });
        assert.equal(res.status, 200);
        const expected = { multi: index, dlist: list, single: amd64 }[ref]!;
        assert.equal(res.headers['content-type'], expected.mediaType);
        assert.equal(res.headers['docker-content-digest'], expected.digest);
        assert.deepEqual(res.body, expected.manifest);
      }
    });

    it('unknown tag or digest → 404 MANIFEST_UNKNOWN; HEAD → 404 without body', async () => {
      const tag = await get(repo, 'no-such-tag');
      assert.equal(tag.status, 404);
      assert.equal(await errorCode(tag), 'MANIFEST_UNKNOWN');
      const digest = await get(repo, sha256(randomBytes(16)));
      assert.equal(digest.status, 404);
      assert.equal(await errorCode(digest), 'MANIFEST_UNKNOWN');
      const h = await head(repo, 'no-such-tag');
      assert.equal(h.status, 404);
      assert.equal((await h.arrayBuffer()).byteLength, 0);
    });

    it('unknown repository → 404 NAME_UNKNOWN', async () => {
      for (const ref of ['latest', amd64.digest]) {
        const res = await get('negotiation/nobody-here', ref);
        assert.equal(res.status, 404);
        assert.equal(await errorCode(res), 'NAME_UNKNOWN');
      }
    });

    it('a manifest is not visible through another repository', async () => {
      const res = await get('types/oci-image', amd64.digest);
      assert.equal(res.status, 404);
      assert.equal(await errorCode(res), 'MANIFEST_UNKNOWN');
    });

    it('a malformed digest reference → 400 DIGEST_INVALID', async () => {
      const res = await get(repo, 'sha256:abc');
      assert.equal(res.status, 400);
      assert.equal(await errorCode(res), 'DIGEST_INVALID');
    });
  });
});
