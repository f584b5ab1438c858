/**
 * Writes a reference registry's storage layout directly (no registry
 * running): for damaged-tree tests and for building large sources fast.
 * The layout is the one docker-registry 2.8 writes (test/e2e/import.test.ts
 * imports what the real one wrote).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export class ReferenceTree {
  readonly base: string;

  constructor(readonly root: string) {
    this.base = join(root, 'docker', 'registry', 'v2');
    mkdirSync(join(this.base, 'repositories'), { recursive: true });
    mkdirSync(join(this.base, 'blobs', 'sha256'), { recursive: true });
  }

  private write(path: string, data: Buffer | string): void {
    const full = join(this.base, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, data);
  }

  /** Stores bytes as a blob; returns its digest. */
  blob(data: Buffer | string): string {
    const hex = createHash('sha256').update(data).digest('hex');
    this.write(`blobs/sha256/${hex.slice(0, 2)}/${hex}/data`, data);
    return `sha256:${hex}`;
  }

  dataPath(digest: string): string {
    const hex = digest.slice(7);
    return join(this.base, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
  }

  linkLayer(repo: string, digest: string): void {
    this.write(`repositories/${repo}/_layers/sha256/${digest.slice(7)}/link`, digest);
  }

  revision(repo: string, digest: string): void {
    this.write(`repositories/${repo}/_manifests/revisions/sha256/${digest.slice(7)}/link`, digest);
  }

  tag(repo: string, tag: string, digest: string): void {
    this.write(`repositories/${repo}/_manifests/tags/${tag}/current/link`, digest);
    this.write(`repositories/${repo}/_manifests/tags/${tag}/index/sha256/${digest.slice(7)}/link`, digest);
  }

  upload(repo: string, id: string, data: Buffer | string): void {
    this.write(`repositories/${repo}/_uploads/${id}/data`, data);
    this.write(`repositories/${repo}/_uploads/${id}/startedat`, new Date(0).toISOString());
  }

  /** Raw write under docker/registry/v2/ (garbage, damage). */
  raw(path: string, data: Buffer | string): void {
    this.write(path, data);
  }

  /** An OCI image of `layers` blobs, pushed as the reference does: blobs, layer links, revision, tag. */
  image(repo: string, tag: string | undefined, layers: (Buffer | string)[], extra: Record<string, unknown> = {}): { digest: string; config: string; layers: string[]; manifest: Buffer } {
    const configBytes = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, repo, tag, n: layers.length });
    const config = this.blob(configBytes);
    const layerDigests = layers.map((l) => this.blob(l));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: Buffer.byteLength(configBytes) },
        layers: layers.map((l, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigests[i], size: Buffer.byteLength(l) })),
        ...extra,
      }),
    );
    const digest = this.blob(manifest);
    for (const d of [config, ...layerDigests]) this.linkLayer(repo, d);
    this.revision(repo, digest);
    if (tag) this.tag(repo, tag, digest);
    return { digest, config, layers: layerDigests, manifest };
  }
}
