/**
 * Unit tests of what arrives from the network before it touches metadata:
 * repository names, tags and digests (src/registry/reference.ts), and the
 * parsing and validation of pushed manifests (src/registry/manifest.ts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { RegistryError } from '../../src/registry/errors.js';
import { parseManifest } from '../../src/registry/manifest.js';
import { MediaType } from '../../src/registry/media-types.js';
import {
  isTag,
  isValidRepositoryName,
  parseDigest,
  parseManifestReference,
  parseRepositoryName,
} from '../../src/registry/reference.js';

const hex = (s: string, alg: 'sha256' | 'sha512' = 'sha256') => createHash(alg).update(s).digest('hex');
const D1 = `sha256:${hex('one')}`;
const D2 = `sha256:${hex('two')}`;
const D3 = `sha256:${hex('three')}`;
const EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

function throwsCode(fn: () => unknown, code: string, status?: number): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof RegistryError, `expected a RegistryError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (status !== undefined) assert.equal(e.status, status);
    return true;
  });
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

function ociImage(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D1, size: 10 },
    layers: [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D2, size: 20 },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D3, size: 30 },
    ],
    ...extra,
  };
}

function ociIndex(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      { mediaType: MediaType.OciManifest, digest: D1, size: 100, platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: MediaType.OciManifest, digest: D2, size: 200, platform: { os: 'linux', architecture: 'arm64' } },
    ],
    ...extra,
  };
}

describe('reference: repository names', () => {
  it('accepts names of the spec grammar', () => {
    for (const name of ['a', 'library/ubuntu', 'a/b/c/d', 'my-app', 'my--app', 'my.app', 'my_app', 'my__app', 'a0/b1.c2_d3-e4', '0', 'x'.repeat(255)]) {
      assert.equal(isValidRepositoryName(name), true, name);
      assert.equal(parseRepositoryName(name), name);
    }
  });

  it('accepts a multi-component name of exactly 255 characters and refuses 256', () => {
    const name255 = `${'a'.repeat(127)}/${'b'.repeat(127)}`;
    assert.equal(name255.length, 255);
    assert.equal(isValidRepositoryName(name255), true);
    assert.equal(isValidRepositoryName(`${name255}c`), false);
    assert.equal(isValidRepositoryName('x'.repeat(256)), false);
    throwsCode(() => parseRepositoryName('x'.repeat(256)), 'NAME_INVALID', 400);
  });

  it('refuses names outside the grammar with NAME_INVALID', () => {
    for (const name of ['', 'A', 'Library/ubuntu', '/a', 'a/', 'a//b', '..', 'a/../b', '.a', 'a.', '-a', 'a-', '_a', 'a_', 'a___b', 'a..b', 'a b', 'a:b', 'a@b', 'é']) {
      assert.equal(isValidRepositoryName(name), false, JSON.stringify(name));
      throwsCode(() => parseRepositoryName(name), 'NAME_INVALID', 400);
    }
  });
});

describe('reference: tags', () => {
  it('accepts tags up to 128 characters', () => {
    for (const tag of ['latest', 'v1.0.0', 'A', '_x', '0', 'a-b_c.d', 'X'.repeat(128), `_${'.'.repeat(127)}`]) {
      assert.equal(isTag(tag), true, tag);
      assert.deepEqual(parseManifestReference(tag), { kind: 'tag', tag });
    }
  });

  it('refuses tags of 129 characters or with a bad first character or bad characters', () => {
    for (const tag of ['X'.repeat(129), '.a', '-a', '', 'a/b', 'a+b', 'a b', 'ä']) {
      assert.equal(isTag(tag), false, JSON.stringify(tag));
    }
    // Reading a reference that can name nothing is "unknown"; writing one is invalid.
    throwsCode(() => parseManifestReference('X'.repeat(129)), 'MANIFEST_UNKNOWN', 404);
    throwsCode(() => parseManifestReference('-a', 'read'), 'MANIFEST_UNKNOWN', 404);
    throwsCode(() => parseManifestReference('X'.repeat(129), 'write'), 'MANIFEST_INVALID', 400);
    throwsCode(() => parseManifestReference('-a', 'write'), 'MANIFEST_INVALID', 400);
    assert.deepEqual(parseManifestReference('X'.repeat(128), 'write'), { kind: 'tag', tag: 'X'.repeat(128) });
  });
});

describe('reference: digests', () => {
  it('parses sha256 and sha512 digests', () => {
    const h256 = hex('x');
    assert.deepEqual(parseDigest(`sha256:${h256}`), { algorithm: 'sha256', hex: h256, value: `sha256:${h256}` });
    const h512 = hex('x', 'sha512');
    assert.deepEqual(parseDigest(`sha512:${h512}`), { algorithm: 'sha512', hex: h512, value: `sha512:${h512}` });
  });

  it('a reference with a colon is a digest', () => {
    const ref = parseManifestReference(D1);
    assert.equal(ref.kind, 'digest');
    assert.equal(ref.kind === 'digest' && ref.digest.value, D1);
  });

  it('refuses unknown algorithms and malformed encodings with DIGEST_INVALID', () => {
    const h256 = hex('x');
    for (const d of [
      `md5:${'a'.repeat(32)}`,
      `sha1:${'a'.repeat(40)}`,
      `sha384:${'a'.repeat(96)}`,
      `SHA256:${h256}`,
      `sha256:${h256.toUpperCase()}`,
      `sha256:${h256.slice(1)}`,
      `sha256:${h256}0`,
      `sha256:${'g'.repeat(64)}`,
      `sha512:${h256}`,
      `sha256:`,
      `:${h256}`,
      'sha256',
      h256,
      `sha256:${h256}:x`,
    ]) {
      throwsCode(() => parseDigest(d), 'DIGEST_INVALID', 400);
    }
    throwsCode(() => parseManifestReference(`sha256:${'z'.repeat(64)}`), 'DIGEST_INVALID', 400);
    throwsCode(() => parseManifestReference(`foo:${h256}`), 'DIGEST_INVALID', 400);
    throwsCode(() => parseManifestReference(`sha256:${'z'.repeat(64)}`, 'write'), 'DIGEST_INVALID', 400);
  });
});

describe('parseManifest: accepted types', () => {
  it('OCI image manifest: config and layers are the blobs, config type is the artifact type', () => {
    const p = parseManifest(json(ociImage({ annotations: { a: 'b' } })), MediaType.OciManifest);
    assert.equal(p.mediaType, MediaType.OciManifest);
    assert.equal(p.kind, 'image');
    assert.deepEqual(p.blobs, [D1, D2, D3]);
    assert.deepEqual(p.children, []);
    assert.equal(p.subject, undefined);
    assert.equal(p.artifactType, 'application/vnd.oci.image.config.v1+json');
    assert.deepEqual(p.annotations, { a: 'b' });
  });

  it('OCI image manifest with a Content-Type parameter, and without Content-Type', () => {
    assert.equal(parseManifest(json(ociImage()), `${MediaType.OciManifest}; charset=utf-8`).mediaType, MediaType.OciManifest);
    assert.equal(parseManifest(json(ociImage()), undefined).mediaType, MediaType.OciManifest);
  });

  it('OCI image manifest without a mediaType field takes the Content-Type, or its shape', () => {
    const doc = ociImage();
    delete doc.mediaType;
    assert.equal(parseManifest(json(doc), MediaType.OciManifest).mediaType, MediaType.OciManifest);
    assert.equal(parseManifest(json(doc), undefined).mediaType, MediaType.OciManifest);
    const idx = ociIndex();
    delete idx.mediaType;
    assert.equal(parseManifest(json(idx), undefined).mediaType, MediaType.OciIndex);
  });

  it('a layer repeated, or equal to the config, is listed once', () => {
    const doc = ociImage({
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: D2, size: 20 },
        { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: D2, size: 20 },
        { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: D1, size: 10 },
      ],
    });
    assert.deepEqual(parseManifest(json(doc), MediaType.OciManifest).blobs, [D1, D2]);
  });

  it('OCI artifact: artifactType wins over the empty config type; an empty layer list is allowed', () => {
    const doc = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType: 'application/vnd.example.sbom+json',
      config: { mediaType: MediaType.OciEmpty, digest: EMPTY_DIGEST, size: 2 },
      layers: [],
      subject: { mediaType: MediaType.OciManifest, digest: D3, size: 300 },
    };
    const p = parseManifest(json(doc), MediaType.OciManifest);
    assert.equal(p.artifactType, 'application/vnd.example.sbom+json');
    assert.deepEqual(p.blobs, [EMPTY_DIGEST]);
    assert.equal(p.subject, D3);
  });

  it('foreign (non-distributable) layers are not required blobs', () => {
    const doc = ociImage({
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', digest: D2, size: 20, urls: ['https://example.com/l'] },
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D3, size: 30 },
      ],
    });
    assert.deepEqual(parseManifest(json(doc), MediaType.OciManifest).blobs, [D1, D3]);
  });

  it('Docker schema 2 manifest', () => {
    const doc = {
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: D1, size: 10 },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: D2, size: 20 }],
    };
    const p = parseManifest(json(doc), MediaType.DockerManifest);
    assert.equal(p.mediaType, MediaType.DockerManifest);
    assert.equal(p.kind, 'image');
    assert.deepEqual(p.blobs, [D1, D2]);
    // Without a Content-Type, the mediaType field decides.
    assert.equal(parseManifest(json(doc), undefined).mediaType, MediaType.DockerManifest);
    assert.equal(parseManifest(json(doc), 'application/json').mediaType, MediaType.DockerManifest);
  });

  it('OCI index: children are the manifests, no blobs', () => {
    const p = parseManifest(json(ociIndex({ annotations: { x: 'y' } })), MediaType.OciIndex);
    assert.equal(p.mediaType, MediaType.OciIndex);
    assert.equal(p.kind, 'index');
    assert.deepEqual(p.blobs, []);
    assert.deepEqual(p.children, [D1, D2]);
    assert.equal(p.artifactType, undefined);
    assert.deepEqual(p.annotations, { x: 'y' });
  });

  it('OCI index with a subject and artifactType', () => {
    const p = parseManifest(
      json(ociIndex({ artifactType: 'application/vnd.example.bundle', subject: { mediaType: MediaType.OciManifest, digest: D3, size: 1 } })),
      MediaType.OciIndex,
    );
    assert.equal(p.subject, D3);
    assert.equal(p.artifactType, 'application/vnd.example.bundle');
  });

  it('Docker manifest list', () => {
    const doc = ociIndex({ mediaType: MediaType.DockerManifestList });
    const p = parseManifest(json(doc), MediaType.DockerManifestList);
    assert.equal(p.mediaType, MediaType.DockerManifestList);
    assert.equal(p.kind, 'index');
    assert.deepEqual(p.children, [D1, D2]);
  });
});

describe('parseManifest: refused with MANIFEST_INVALID', () => {
  const cases: [string, Buffer, string | undefined][] = [
    ['not JSON', Buffer.from('{"schemaVersion": 2,'), MediaType.OciManifest],
    ['empty body', Buffer.alloc(0), MediaType.OciManifest],
    ['a JSON array', json([ociImage()]), MediaType.OciManifest],
    ['a JSON string', json('manifest'), MediaType.OciManifest],
    ['JSON null', json(null), MediaType.OciManifest],
    ['schemaVersion 1', json(ociImage({ schemaVersion: 1 })), MediaType.OciManifest],
    ['schemaVersion 1 without mediaType', json({ schemaVersion: 1, name: 'a', tag: 'b', fsLayers: [] }), undefined],
    ['schemaVersion 3', json(ociImage({ schemaVersion: 3 })), MediaType.OciManifest],
    ['schemaVersion "2"', json(ociImage({ schemaVersion: '2' })), MediaType.OciManifest],
    ['schemaVersion missing', json((({ schemaVersion: _s, ...rest }) => rest)(ociImage())), MediaType.OciManifest],
    ['Docker schema 1 Content-Type', json(ociImage()), MediaType.DockerSchema1Signed],
    ['Content-Type disagrees with mediaType', json(ociImage()), MediaType.DockerManifest],
    ['Content-Type index, body image', json(ociImage()), MediaType.OciIndex],
    ['Content-Type image, body index', json(ociIndex()), MediaType.OciManifest],
    ['unknown mediaType field', json(ociImage({ mediaType: 'application/vnd.example.unknown+json' })), undefined],
    ['unknown mediaType field and Content-Type', json(ociImage({ mediaType: 'application/vnd.example.unknown+json' })), 'application/vnd.example.unknown+json'],
    ['mediaType not a string', json(ociImage({ mediaType: 42 })), MediaType.OciManifest],
    ['no type and no recognisable shape', json({ schemaVersion: 2 }), undefined],
    ['layers missing', json((({ layers: _l, ...rest }) => rest)(ociImage())), MediaType.OciManifest],
    ['layers not an array', json(ociImage({ layers: {} })), MediaType.OciManifest],
    ['config missing', json((({ config: _c, ...rest }) => rest)(ociImage())), MediaType.OciManifest],
    ['config not an object', json(ociImage({ config: D1 })), MediaType.OciManifest],
    ['config without mediaType', json(ociImage({ config: { digest: D1, size: 1 } })), MediaType.OciManifest],
    ['layer digest malformed', json(ociImage({ layers: [{ mediaType: 'x/y', digest: 'sha256:abc', size: 1 }] })), MediaType.OciManifest],
    ['layer digest unknown algorithm', json(ociImage({ layers: [{ mediaType: 'x/y', digest: `md5:${'a'.repeat(32)}`, size: 1 }] })), MediaType.OciManifest],
    ['layer digest missing', json(ociImage({ layers: [{ mediaType: 'x/y', size: 1 }] })), MediaType.OciManifest],
    ['layer size negative', json(ociImage({ layers: [{ mediaType: 'x/y', digest: D2, size: -1 }] })), MediaType.OciManifest],
    ['layer size fractional', json(ociImage({ layers: [{ mediaType: 'x/y', digest: D2, size: 1.5 }] })), MediaType.OciManifest],
    ['layer size a string', json(ociImage({ layers: [{ mediaType: 'x/y', digest: D2, size: '1' }] })), MediaType.OciManifest],
    ['layer size missing', json(ociImage({ layers: [{ mediaType: 'x/y', digest: D2 }] })), MediaType.OciManifest],
    ['layer not an object', json(ociImage({ layers: [D2] })), MediaType.OciManifest],
    ['Docker manifest with no layers', json({ ...ociImage({ layers: [] }), mediaType: MediaType.DockerManifest }), MediaType.DockerManifest],
    ['annotations not a string map', json(ociImage({ annotations: { a: 1 } })), MediaType.OciManifest],
    ['artifactType not a string', json(ociImage({ artifactType: 7 })), MediaType.OciManifest],
    ['subject not a descriptor', json(ociImage({ subject: D1 })), MediaType.OciManifest],
    ['subject with a bad digest', json(ociImage({ subject: { mediaType: MediaType.OciManifest, digest: 'sha256:00', size: 1 } })), MediaType.OciManifest],
    ['index manifests missing', json((({ manifests: _m, ...rest }) => rest)(ociIndex())), MediaType.OciIndex],
    ['index child with a bad digest', json(ociIndex({ manifests: [{ mediaType: MediaType.OciManifest, digest: 'nope', size: 1 }] })), MediaType.OciIndex],
    ['index child with a bad size', json(ociIndex({ manifests: [{ mediaType: MediaType.OciManifest, digest: D1, size: null }] })), MediaType.OciIndex],
  ];
  for (const [name, body, contentType] of cases) {
    it(name, () => throwsCode(() => parseManifest(body, contentType), 'MANIFEST_INVALID', 400));
  }
});
