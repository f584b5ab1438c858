/**
 * The pull-through cache: what registry/ asks (through its PullThrough
 * hook) for content of a cached repository that it does not have, or for
 * a tag that is due for a re-check. Fetched content is stored through the
 * same verified paths as a push (Uploads.storeVerified, Manifests.store),
 * so it is ordinary content to GC and fsck.
 *
 * - Single flight: one upstream fetch per blob (and per manifest reference)
 *   per repository in this process; later requests join it.
 * - A manifest is answered from upstream's bytes (verified against its
 *   digest) at once; it is recorded once everything it references is
 *   stored, since a manifest never exists without its blobs. Its missing
 *   blobs (and, for an index, child manifests and theirs) are fetched in the
 *   background through the same flights that clients' blob GETs join.
 * - A tag is re-checked upstream (one HEAD) once its TTL has passed since it
 *   was last confirmed; when upstream is unreachable, slow or says 429/5xx,
 *   the cached manifest is served with `X-Berth-Cache: stale`.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import type { Logger } from '../log.js';
import type { BlobRecord, ManifestRecord } from '../metadata/store.js';
import { RegistryError, type ErrorCode } from '../registry/errors.js';
import { parseManifest } from '../registry/manifest.js';
import type { PulledManifest, PullThrough, RemoteBlob } from '../registry/pull-through.js';
import { parseDigest, type Digest, type ManifestReference } from '../registry/reference.js';
import type { Registry } from '../registry/registry.js';
import { pausePoint } from '../pause-points.js';
import { BlobFlight } from './blob-flight.js';
import type { UpstreamConfig } from './config.js';
import { ProxyMetrics } from './metrics.js';
import { Routing, type Route } from './routing.js';
import { readAll, UpstreamClient, UpstreamError } from './upstream-client.js';

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** Upstream manifest requests that take longer than this fail (a cached tag is then served stale). */
const MANIFEST_TIMEOUT = 30_000;
/** Blobs of one manifest fetched at once in the background. */
const BLOB_CONCURRENCY = 4;

interface FetchedManifest {
  digest: string;
  mediaType: string;
  size: number;
  body: Buffer;
}

export interface PullThroughOptions {
  /** Where in-flight blobs are spooled for joined readers (default: the OS temp directory). */
  spoolDir?: string;
  log?: Pick<Logger, 'warn' | 'info'>;
}

export class PullThroughCache implements PullThrough {
  readonly metrics = new ProxyMetrics();
  /** When each cached tag (`repo:tag`) was last pulled in this process: read by the expiry sweep. */
  readonly lastPulled = new Map<string, number>();
  readonly startedAt = Date.now();
  private readonly routing: Routing;
  private readonly clients = new Map<UpstreamConfig, UpstreamClient>();
  private readonly blobFlights = new Map<string, BlobFlight>();
  private readonly manifestFlights = new Map<string, Promise<FetchedManifest | undefined>>();
  private readonly persisting = new Map<string, Promise<void>>();
  /** When each recent blob flight (`repo@digest`) stored its blob: a request that missed just before looks again. */
  private readonly stored = new Map<string, number>();
  /** Tags fetched from upstream whose manifest is being stored (`repo:tag`). */
  private readonly pendingTags = new Map<string, FetchedManifest>();
  /** When upstream last confirmed each cached tag (`repo:tag`). */
  private readonly confirmedAt = new Map<string, number>();
  private readonly spoolDir: string;
  private readonly log?: Pick<Logger, 'warn' | 'info'>;

  constructor(
    private readonly registry: Registry,
    readonly upstreams: UpstreamConfig[],
    options: PullThroughOptions = {},
  ) {
    this.routing = new Routing(upstreams);
    for (const u of upstreams) this.clients.set(u, new UpstreamClient(u));
    this.spoolDir = options.spoolDir ?? tmpdir();
    this.log = options.log;
  }

  serves(repository: string): boolean {
    return this.routing.route(repository) !== undefined;
  }

  route(repository: string): Route | undefined {
    return this.routing.route(repository);
  }

  async manifest(repository: string, reference: ManifestReference, local: ManifestRecord | undefined): Promise<PulledManifest | undefined> {
    const route = this.routing.route(repository)!;
    const counters = this.metrics.of(route.upstream.name);
    const tagKey = reference.kind === 'tag' ? `${repository}:${reference.tag}` : undefined;
    if (tagKey) this.lastPulled.set(tagKey, Date.now());
    // Fetched upstream and being stored: served as fetched until the tag is recorded.
    const pending = tagKey ? this.pendingTags.get(tagKey) : undefined;
    if (pending) {
      counters.misses++;
      return { ...pending, cache: 'miss' };
    }
    if (local && tagKey && reference.kind === 'tag') {
      const confirmed = this.confirmedAt.get(tagKey);
      if (confirmed !== undefined && Date.now() - confirmed < route.upstream.tagTtl) {
        counters.hits++;
        return { ...local, cache: 'hit' };
      }
      let upstreamDigest: string | undefined;
      try {
        upstreamDigest = await this.headManifest(route, reference.tag);
      } catch (e) {
        return this.stale(repository, reference.tag, local, e);
      }
      if (upstreamDigest === local.digest) {
        this.confirmedAt.set(tagKey, Date.now());
        counters.hits++;
        return { ...local, cache: 'hit' };
      }
      if (upstreamDigest === undefined) return this.stale(repository, reference.tag, local, new UpstreamError('upstream no longer has this tag', 404));
      // The tag moved upstream: fetched below like a miss.
    }
    let fetched: FetchedManifest | undefined;
    try {
      fetched = await this.fetchManifest(route, repository, reference);
    } catch (e) {
      if (local && reference.kind === 'tag') return this.stale(repository, reference.tag, local, e);
      throw upstreamFailure(route, e, 'MANIFEST_UNKNOWN');
    }
    if (!fetched) return undefined;
    counters.misses++;
    if (tagKey) this.pendingTags.set(tagKey, fetched);
    this.persistInBackground(repository, route, fetched, reference.kind === 'tag' ? reference.tag : undefined);
    return { ...fetched, cache: 'miss' };
  }

  async blob(repository: string, digest: Digest): Promise<RemoteBlob | BlobRecord | undefined> {
    const route = this.routing.route(repository)!;
    const counters = this.metrics.of(route.upstream.name);
    const key = `${repository}@${digest.value}`;
    let flight = this.joinable(key);
    if (!flight) {
      // A flight that just finished is gone (or going) but its blob is committed: look again.
      const ctx = this.registry.ctx;
      const local = await ctx.metadata.statBlob(repository, digest.value, ctx.now(), ctx.options.touchInterval);
      if (local) {
        counters.hits++;
        return local;
      }
      await pausePoint('pull-through-after-miss');
      flight = this.joinable(key);
      // The flight may have ended (stored its blob, left the map) while the read above was under way.
      if (!flight && this.stored.has(key)) {
        const now = await ctx.metadata.statBlob(repository, digest.value, ctx.now(), ctx.options.touchInterval);
        if (now) {
          counters.hits++;
          return now;
        }
        flight = this.joinable(key);
      }
    }
    if (flight) counters.joined++;
    else flight = this.startBlobFlight(repository, route, digest);
    const reader = flight.reader();
    try {
      if (!(await flight.started)) {
        reader.release();
        return undefined;
      }
    } catch (e) {
      reader.release();
      throw upstreamFailure(route, e, 'BLOB_UNKNOWN');
    }
    counters.misses++;
    return {
      digest: reader.digest,
      // Known only now that upstream answered.
      size: flight.size,
      copyTo: async (out, opened) => {
        let sent = false;
        try {
          await reader.copyTo(out, () => {
            sent = true;
            opened();
          });
        } catch (e) {
          // Nothing sent yet: the client gets an upstream error, not the upload path's (a GET is no upload).
          if (!sent) throw upstreamFailure(route, e instanceof RegistryError ? new UpstreamError(e.message) : e, 'BLOB_UNKNOWN');
          throw e;
        }
      },
    };
  }

  hit(repository: string): void {
    const route = this.routing.route(repository);
    if (route) this.metrics.of(route.upstream.name).hits++;
  }

  async blobSize(repository: string, digest: Digest): Promise<number | undefined> {
    const route = this.routing.route(repository)!;
    let res: IncomingMessage;
    try {
      res = await this.send(route, { method: 'HEAD', path: `/v2/${route.remote}/blobs/${digest.value}`, signal: AbortSignal.timeout(MANIFEST_TIMEOUT) });
    } catch (e) {
      throw upstreamFailure(route, e, 'BLOB_UNKNOWN');
    }
    res.resume();
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw upstreamFailure(route, new UpstreamError(`upstream answered ${res.statusCode}`, res.statusCode), 'BLOB_UNKNOWN');
    const length = Number(res.headers['content-length']);
    return Number.isFinite(length) ? length : undefined;
  }

  /** The flight for this blob that a request may still join (one that has not settled). */
  private joinable(key: string): BlobFlight | undefined {
    const flight = this.blobFlights.get(key);
    return flight?.joinable ? flight : undefined;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }

  // Internals ----------------------------------------------------------------

  private stale(repository: string, tag: string, local: ManifestRecord, e: unknown): PulledManifest {
    const route = this.routing.route(repository)!;
    this.metrics.of(route.upstream.name).stale++;
    this.log?.warn({ repository, tag, upstream: route.upstream.name, reason: (e as Error).message }, 'upstream could not confirm a cached tag: serving it stale');
    return { ...local, cache: 'stale' };
  }

  private async send(route: Route, req: { method: 'GET' | 'HEAD'; path: string; headers?: Record<string, string>; signal?: AbortSignal }): Promise<IncomingMessage> {
    const counters = this.metrics.of(route.upstream.name);
    counters.upstreamRequests++;
    try {
      const res = await this.clients.get(route.upstream)!.send({ ...req, scope: `repository:${route.remote}:pull` });
      const status = res.statusCode ?? 0;
      if (status === 429 || status >= 500 || status === 401 || status === 403) {
        res.resume();
        throw new UpstreamError(`upstream answered ${status}`, status);
      }
      return res;
    } catch (e) {
      counters.upstreamErrors++;
      throw e;
    }
  }

  /** The digest upstream's tag names now; undefined when upstream does not have it. */
  private async headManifest(route: Route, tag: string): Promise<string | undefined> {
    const res = await this.send(route, {
      method: 'HEAD',
      path: `/v2/${route.remote}/manifests/${tag}`,
      headers: { Accept: MANIFEST_TYPES },
      signal: AbortSignal.timeout(route.upstream.checkTimeout),
    });
    res.resume();
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw new UpstreamError(`upstream answered ${res.statusCode}`, res.statusCode);
    const digest = res.headers['docker-content-digest'];
    if (typeof digest === 'string' && digest) return digest;
    // No digest header: the manifest itself says.
    const fetched = await this.fetchRemoteManifest(route, tag, undefined);
    return fetched?.digest;
  }

  /** One upstream GET per repository and reference at a time. */
  private fetchManifest(route: Route, repository: string, reference: ManifestReference): Promise<FetchedManifest | undefined> {
    const ref = reference.kind === 'tag' ? reference.tag : reference.digest.value;
    const key = `${repository}@${ref}`;
    let flight = this.manifestFlights.get(key);
    if (flight) {
      this.metrics.of(route.upstream.name).joined++;
      return flight;
    }
    flight = this.fetchRemoteManifest(route, ref, reference.kind === 'digest' ? reference.digest : undefined).finally(() => this.manifestFlights.delete(key));
    this.manifestFlights.set(key, flight);
    return flight;
  }

  private async fetchRemoteManifest(route: Route, ref: string, digest: Digest | undefined): Promise<FetchedManifest | undefined> {
    const res = await this.send(route, { method: 'GET', path: `/v2/${route.remote}/manifests/${ref}`, headers: { Accept: MANIFEST_TYPES }, signal: AbortSignal.timeout(MANIFEST_TIMEOUT) });
    if (res.statusCode === 404) {
      res.resume();
      return undefined;
    }
    if (res.statusCode !== 200) {
      res.resume();
      throw new UpstreamError(`upstream answered ${res.statusCode}`, res.statusCode);
    }
    const counters = this.metrics.of(route.upstream.name);
    try {
      const body = await readAll(res, this.registry.ctx.options.maxManifestBytes);
      counters.upstreamBytes += body.length;
      const algorithm = digest?.algorithm ?? 'sha256';
      const actual = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`;
      if (digest && actual !== digest.value) throw new UpstreamError(`upstream manifest does not match its digest ${digest.value}`);
      const claimed = res.headers['docker-content-digest'];
      if (!digest && typeof claimed === 'string' && claimed.startsWith('sha256:') && claimed !== actual) {
        throw new UpstreamError(`upstream manifest does not match the digest it announced (${claimed})`);
      }
      const contentType = res.headers['content-type']?.split(';')[0]?.trim();
      let mediaType: string;
      try {
        mediaType = parseManifest(body, contentType).mediaType;
      } catch (e) {
        throw new UpstreamError(`upstream manifest is invalid: ${(e as Error).message}`);
      }
      return { digest: actual, mediaType, size: body.length, body };
    } catch (e) {
      counters.upstreamErrors++;
      throw e;
    }
  }

  private startBlobFlight(repository: string, route: Route, digest: Digest): BlobFlight {
    const key = `${repository}@${digest.value}`;
    const counters = this.metrics.of(route.upstream.name);
    const flight = new BlobFlight(
      digest.value,
      async () => {
        const res = await this.send(route, { method: 'GET', path: `/v2/${route.remote}/blobs/${digest.value}` });
        if (res.statusCode === 404) {
          res.resume();
          return undefined;
        }
        if (res.statusCode !== 200) {
          res.resume();
          throw new UpstreamError(`upstream answered ${res.statusCode}`, res.statusCode);
        }
        return res;
      },
      async (stream, length) => {
        await this.registry.uploads.storeVerified(repository, digest, { stream, ...(length !== undefined ? { length } : {}) });
      },
      this.spoolDir,
      (n) => (counters.upstreamBytes += n),
    );
    this.blobFlights.set(key, flight);
    const forget = () => {
      if (this.blobFlights.get(key) === flight) this.blobFlights.delete(key);
    };
    flight.done.then(() => {
      this.stored.set(key, Date.now());
      if (this.stored.size > 1000) for (const [k, at] of this.stored) if (Date.now() - at > 60_000) this.stored.delete(k);
      forget();
    }, (e: unknown) => {
        forget();
        counters.upstreamErrors++;
        this.log?.warn({ repository, digest: digest.value, upstream: route.upstream.name, reason: (e as Error).message }, 'pull-through blob fetch failed');
    });
    return flight;
  }

  /** Records a fetched manifest once what it references is stored; failures are logged, the next pull tries again. */
  private persistInBackground(repository: string, route: Route, manifest: FetchedManifest, tag: string | undefined): void {
    const tagKey = tag === undefined ? undefined : `${repository}:${tag}`;
    const fetchedAt = Date.now();
    const settle = () => {
      if (tagKey && this.pendingTags.get(tagKey) === manifest) this.pendingTags.delete(tagKey);
    };
    this.persist(repository, route, manifest, tag).then(() => {
      // The tag's TTL counts from when upstream named this manifest.
      if (tagKey && this.pendingTags.get(tagKey) === manifest) this.confirmedAt.set(tagKey, fetchedAt);
      settle();
    }, (e: unknown) => {
      settle();
      this.log?.warn({ repository, digest: manifest.digest, tag, upstream: route.upstream.name, reason: (e as Error).message }, 'pull-through: could not cache a manifest');
    });
  }

  private async persist(repository: string, route: Route, manifest: FetchedManifest, tag: string | undefined): Promise<void> {
    const key = `${repository}@${manifest.digest}`;
    let stored = this.persisting.get(key);
    if (!stored) {
      stored = this.storeWithReferences(repository, route, manifest).finally(() => this.persisting.delete(key));
      this.persisting.set(key, stored);
    }
    await stored;
    if (tag !== undefined) await this.registry.manifests.store(repository, { kind: 'tag', tag }, manifest.body, manifest.mediaType);
  }

  private async storeWithReferences(repository: string, route: Route, manifest: FetchedManifest): Promise<void> {
    const metadata = this.registry.ctx.metadata;
    if (await metadata.findManifestByDigest(repository, manifest.digest)) return;
    const parsed = parseManifest(manifest.body, manifest.mediaType);
    for (const child of parsed.children) {
      if (await metadata.findManifestByDigest(repository, child)) continue;
      const fetched = await this.fetchManifest(route, repository, { kind: 'digest', digest: parseDigest(child) });
      if (!fetched) throw new UpstreamError(`upstream has no manifest ${child}, which ${manifest.digest} references`);
      await this.persist(repository, route, fetched, undefined);
    }
    const missing: string[] = [];
    for (const blob of parsed.blobs) if (!(await metadata.findBlob(repository, blob))) missing.push(blob);
    const work = missing.map((d) => parseDigest(d));
    const next = async (): Promise<void> => {
      for (let digest = work.shift(); digest; digest = work.shift()) {
        const key = `${repository}@${digest.value}`;
        const flight = this.joinable(key) ?? this.startBlobFlight(repository, route, digest);
        if (!(await flight.started)) throw new UpstreamError(`upstream has no blob ${digest.value}, which ${manifest.digest} references`);
        await flight.done;
      }
    };
    await Promise.all(Array.from({ length: Math.min(BLOB_CONCURRENCY, work.length) }, next));
    await this.registry.manifests.store(repository, { kind: 'digest', digest: parseDigest(manifest.digest) }, manifest.body, manifest.mediaType);
  }
}

/** What a client is told when upstream failed and nothing is cached: 429 stays 429, the rest is a 502 with the reason. */
function upstreamFailure(route: Route, e: unknown, code: ErrorCode): RegistryError {
  if (e instanceof RegistryError) return e;
  const status = e instanceof UpstreamError ? e.status : undefined;
  const detail = { upstream: route.upstream.name, reason: (e as Error).message };
  if (status === 429) return new RegistryError('TOOMANYREQUESTS', `upstream ${route.upstream.name} is rate-limiting, and this is not cached`, { detail });
  return new RegistryError(code, `not cached, and upstream ${route.upstream.name} could not be used: ${(e as Error).message}`, { status: 502, detail });
}
