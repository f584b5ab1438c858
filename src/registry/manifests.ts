/** Manifests: push with validation of everything referenced, pull with content negotiation, delete. */
import { createHash } from 'node:crypto';
import type { EventContext, ManifestRecord } from '../metadata/store.js';
import { manifestReferences } from '../metadata/outbox.js';
import { pausePoint } from '../pause-points.js';
import type { RegistryContext } from './context.js';
import { RegistryError } from './errors.js';
import { parseManifest } from './manifest.js';
import { refuseCachedPush, type CacheOutcome } from './pull-through.js';
import { manifestKind, MediaType } from './media-types.js';
import { parseDigest, type ManifestReference } from './reference.js';

export interface PushedManifest {
  digest: string;
  subject?: string;
}

export class Manifests {
  constructor(private readonly ctx: RegistryContext) {}

  async put(repository: string, reference: ManifestReference, body: Buffer, contentType: string | undefined, ev?: EventContext): Promise<PushedManifest> {
    refuseCachedPush(this.ctx, repository);
    return this.store(repository, reference, body, contentType, ev);
  }

  /** Stores a manifest as a push does, without the push checks: how the pull-through cache records what it fetched. */
  async store(repository: string, reference: ManifestReference, body: Buffer, contentType: string | undefined, ev?: EventContext): Promise<PushedManifest> {
    const algorithm = reference.kind === 'digest' ? reference.digest.algorithm : 'sha256';
    const digest = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`;
    if (reference.kind === 'digest' && reference.digest.value !== digest) {
      throw new RegistryError('DIGEST_INVALID', 'manifest digest does not match its content', {
        detail: { expected: reference.digest.value, actual: digest },
      });
    }
    const parsed = parseManifest(body, contentType);
    await pausePoint('manifest-before-put');
    await this.ctx.metadata.putManifest(
      repository,
      {
        digest,
        mediaType: parsed.mediaType,
        size: body.length,
        body,
        artifactType: parsed.artifactType,
        subject: parsed.subject,
        annotations: parsed.annotations,
        blobs: parsed.blobs,
        children: parsed.children,
      },
      reference.kind === 'tag' ? reference.tag : undefined,
      this.ctx.now(),
      ev,
      this.ctx.policies?.current.writeGuard(repository),
    );
    return { digest, subject: parsed.subject };
  }

  /**
   * The manifest for a reference, as the client can accept it. A client that
   * accepts only image manifests and asks for a tag that names an index gets
   * the linux/amd64 image of it (as Docker's registry does); one that accepts
   * neither gets MANIFEST_UNKNOWN rather than a type it cannot read.
   */
  async get(repository: string, reference: ManifestReference, accept: string | undefined, ev?: EventContext): Promise<ManifestRecord & { cache?: CacheOutcome }> {
    const manifest = await this.find(repository, reference);
    if (reference.kind === 'tag') this.ctx.tagPulls?.record(repository, reference.tag);
    const accepted = acceptedTypes(accept);
    // The common case (the client accepts what is stored) costs no further await.
    const found = accepted === 'any' || accepted.has(manifest.mediaType) ? manifest : await this.platformImage(repository, reference, manifest, accepted);
    if (ev && this.ctx.pullEvents) {
      this.ctx.pullEvents({
        action: 'pull',
        kind: 'manifest',
        repository,
        digest: found.digest,
        mediaType: found.mediaType,
        size: found.size,
        tag: reference.kind === 'tag' ? reference.tag : undefined,
        references: manifestReferences(found.body),
        ctx: ev,
      });
    }
    return found;
  }

  /** A stored manifest the client does not accept: the image an index names for linux/amd64, when the client accepts that. */
  private async platformImage(
    repository: string,
    reference: ManifestReference,
    manifest: ManifestRecord,
    accepted: ReadonlySet<string>,
  ): Promise<ManifestRecord & { cache?: CacheOutcome }> {
    if (reference.kind === 'tag' && manifestKind(manifest.mediaType) === 'index') {
      const child = defaultPlatformChild(manifest.body);
      if (child) {
        const image =
          (await this.ctx.metadata.findManifestByDigest(repository, child)) ??
          (await this.ctx.pullThrough?.manifest(repository, { kind: 'digest', digest: parseDigest(child) }, undefined));
        if (image && accepted.has(image.mediaType)) return image;
      }
    }
    throw new RegistryError('MANIFEST_UNKNOWN', 'manifest is not available in any of the accepted media types', {
      detail: { mediaType: manifest.mediaType },
    });
  }

  async delete(repository: string, reference: ManifestReference, ev?: EventContext): Promise<void> {
    if (!this.ctx.options.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletes are disabled');
    const now = this.ctx.now();
    const guard = this.ctx.policies?.current.writeGuard(repository);
    const deleted =
      reference.kind === 'tag'
        ? await this.ctx.metadata.deleteTag(repository, reference.tag, now, ev, guard)
        : await this.ctx.metadata.deleteManifest(repository, reference.digest.value, now, ev, guard);
    if (!deleted) throw new RegistryError('MANIFEST_UNKNOWN');
  }

  private async find(repository: string, reference: ManifestReference): Promise<ManifestRecord & { cache?: CacheOutcome }> {
    let manifest: (ManifestRecord & { cache?: CacheOutcome }) | undefined =
      reference.kind === 'tag'
        ? await this.ctx.metadata.findManifestByTag(repository, reference.tag)
        : // By digest, the answer renews an untagged manifest's grace (invariant 5):
          // clients HEAD the children before pushing an index that references them.
          await this.ctx.metadata.statManifest(repository, reference.digest.value, this.ctx.now(), this.ctx.options.touchInterval);
    // A cached repository: a miss goes upstream, and a tag may be due for a re-check.
    const pullThrough = this.ctx.pullThrough;
    if (pullThrough?.serves(repository)) {
      if (!manifest || reference.kind === 'tag') manifest = await pullThrough.manifest(repository, reference, manifest);
      else {
        // By digest, a cached manifest never needs upstream.
        pullThrough.hit(repository);
        manifest = { ...manifest, cache: 'hit' };
      }
    }
    if (!manifest) {
      const known = await this.ctx.metadata.repositoryExists(repository);
      throw new RegistryError(known ? 'MANIFEST_UNKNOWN' : 'NAME_UNKNOWN', undefined, {
        detail: reference.kind === 'tag' ? { tag: reference.tag } : { digest: reference.digest.value },
      });
    }
    return manifest;
  }
}

/**
 * Parsed Accept headers: clients send a handful of distinct ones, and
 * splitting the same header on every manifest pull was ~1.5 % of a GET
 * manifest's CPU. Bounded: emptied when full. The sets are shared, read only.
 */
const acceptCache = new Map<string, ReadonlySet<string> | 'any'>();
const ACCEPT_CACHE_SIZE = 64;

/** Media types named in an Accept header; 'any' when absent or a wildcard. */
export function acceptedTypes(accept: string | undefined): ReadonlySet<string> | 'any' {
  if (!accept) return 'any';
  let types = acceptCache.get(accept);
  if (types === undefined) {
    if (acceptCache.size >= ACCEPT_CACHE_SIZE) acceptCache.clear();
    types = parseAccept(accept);
    acceptCache.set(accept, types);
  }
  return types;
}

function parseAccept(accept: string): ReadonlySet<string> | 'any' {
  const types = new Set<string>();
  for (const part of accept.split(',')) {
    const type = part.split(';')[0]!.trim().toLowerCase();
    if (type === '*/*' || type === 'application/*') return 'any';
    if (type) types.add(type);
  }
  // Clients that name no manifest type at all (e.g. "application/json") are not negotiating.
  if (![...types].some((t) => manifestKind(t) || t === MediaType.DockerSchema1 || t === MediaType.DockerSchema1Signed)) return 'any';
  return types;
}

function defaultPlatformChild(body: Buffer): string | undefined {
  try {
    const index = JSON.parse(body.toString('utf8')) as { manifests?: { digest?: string; platform?: { os?: string; architecture?: string } }[] };
    const match = index.manifests?.find((m) => m.platform?.os === 'linux' && m.platform?.architecture === 'amd64');
    if (match?.digest) return parseDigest(match.digest).value;
  } catch {
    // A stored index always parses; if not, there is simply no default.
  }
  return undefined;
}

