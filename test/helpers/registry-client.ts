/**
 * A minimal client of the distribution protocol for tests: enough to push
 * blobs and manifests in every way the spec allows, with no library between
 * the test and the wire.
 */
import { createHash, randomBytes } from 'node:crypto';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface Blob {
  data: Buffer;
  digest: string;
  size: number;
}

export function blob(data: Buffer | string): Blob {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
  return { data: buf, digest: sha256(buf), size: buf.length };
}

export function randomBlob(size = 1024): Blob {
  return blob(randomBytes(size));
}

export interface Image {
  config: Blob;
  layers: Blob[];
  manifest: Buffer;
  digest: string;
  mediaType: string;
}

/** An OCI (or Docker schema 2) image manifest over fresh random layers. */
export function makeImage(opts: { layers?: number; mediaType?: string; subject?: { digest: string; size: number; mediaType: string }; artifactType?: string; annotations?: Record<string, string> } = {}): Image {
  const mediaType = opts.mediaType ?? OCI_MANIFEST;
  const docker = mediaType === DOCKER_MANIFEST;
  const config = blob(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') }));
  const layers = Array.from({ length: opts.layers ?? 2 }, () => randomBlob(512));
  const doc: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: docker ? 'application/vnd.docker.container.image.v1+json' : OCI_CONFIG, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: docker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : OCI_LAYER, digest: l.digest, size: l.size })),
  };
  if (opts.subject) doc.subject = opts.subject;
  if (opts.artifactType) doc.artifactType = opts.artifactType;
  if (opts.annotations) doc.annotations = opts.annotations;
  const manifest = Buffer.from(JSON.stringify(doc));
  return { config, layers, manifest, digest: sha256(manifest), mediaType };
}

export function makeIndex(images: Image[], mediaType = OCI_INDEX): { manifest: Buffer; digest: string; mediaType: string } {
  const archs = ['amd64', 'arm64', 'ppc64le', 's390x'];
  const doc = {
    schemaVersion: 2,
    mediaType,
    manifests: images.map((im, i) => ({
      mediaType: im.mediaType,
      digest: im.digest,
      size: im.manifest.length,
      platform: { os: 'linux', architecture: archs[i % archs.length] },
    })),
  };
  const manifest = Buffer.from(JSON.stringify(doc));
  return { manifest, digest: sha256(manifest), mediaType };
}

export class RegistryClient {
  constructor(readonly url: string) {}

  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(this.url + path, { redirect: 'manual', ...init });
  }

  /** POST ?digest= with the whole body. */
  async pushBlob(repo: string, b: Blob): Promise<Response> {
    const res = await this.fetch(`/v2/${repo}/blobs/uploads/?digest=${b.digest}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
      body: bytes(b.data),
    });
    if (res.status !== 201) throw new Error(`push blob ${b.digest}: ${res.status} ${await res.text()}`);
    return res;
  }

  /** POST, then PATCH chunks of `chunkSize` with Content-Range, then PUT ?digest=. */
  async pushBlobChunked(repo: string, b: Blob, chunkSize: number): Promise<Response> {
    let location = await this.startUpload(repo);
    for (let start = 0; start < b.size; start += chunkSize) {
      const chunk = b.data.subarray(start, Math.min(start + chunkSize, b.size));
      const res = await this.fetch(location, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${start + chunk.length - 1}`, 'Content-Length': String(chunk.length) },
        body: bytes(chunk),
      });
      if (res.status !== 202) throw new Error(`PATCH: ${res.status} ${await res.text()}`);
      location = res.headers.get('location')!;
    }
    const res = await this.fetch(withQuery(location, `digest=${b.digest}`), { method: 'PUT', headers: { 'Content-Length': '0' } });
    if (res.status !== 201) throw new Error(`PUT: ${res.status} ${await res.text()}`);
    return res;
  }

  async startUpload(repo: string): Promise<string> {
    const res = await this.fetch(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (res.status !== 202) throw new Error(`start upload: ${res.status} ${await res.text()}`);
    return res.headers.get('location')!;
  }

  async putManifest(repo: string, reference: string, body: Buffer, mediaType: string): Promise<Response> {
    return this.fetch(`/v2/${repo}/manifests/${reference}`, { method: 'PUT', headers: { 'Content-Type': mediaType }, body: bytes(body) });
  }

  /** Pushes an image's blobs and manifest; throws unless every step succeeds. */
  async pushImage(repo: string, image: Image, tag?: string): Promise<void> {
    for (const b of [image.config, ...image.layers]) await this.pushBlob(repo, b);
    const res = await this.putManifest(repo, tag ?? image.digest, image.manifest, image.mediaType);
    if (res.status !== 201) throw new Error(`put manifest: ${res.status} ${await res.text()}`);
  }

  async getBlob(repo: string, digest: string): Promise<Response> {
    return this.fetch(`/v2/${repo}/blobs/${digest}`);
  }
}

/** A Buffer as a fetch body (the DOM typings do not accept Buffer itself). */
export function bytes(b: Buffer): BodyInit {
  return b as unknown as BodyInit;
}

export function withQuery(location: string, query: string): string {
  return location + (location.includes('?') ? '&' : '?') + query;
}

/** The spec's error code of a response body. */
export async function errorCode(res: Response): Promise<string | undefined> {
  const text = await res.text();
  try {
    return (JSON.parse(text) as { errors?: { code: string }[] }).errors?.[0]?.code;
  } catch {
    return undefined;
  }
}
