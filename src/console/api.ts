/**
 * The console's JSON API under /ui/api/ (docs/console.md). Every answer is
 * filtered by what the caller may pull (invariant 11): a repository the
 * caller may not pull is "unknown", exactly like one that does not exist.
 * Deletes go through registry/ and so follow its rules (`deletes:`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import type { GcService } from '../gc/service.js';
import type { MetadataStore, ManifestRecord } from '../metadata/store.js';
import { RegistryError } from '../registry/errors.js';
import { isTag, parseDigest, parseRepositoryName } from '../registry/reference.js';
import type { Registry } from '../registry/registry.js';
import { requireAdmin, type Caller, type ConsoleAccess } from './access.js';
import type { PullCounter } from './pulls.js';
import { addImageBlobs, imageConfig, imageParts, imageSize, indexChildren, kindOf, parseBody, totalSize, type DescriptorView } from './views.js';

const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
const DEFAULT_TAGS = 100;
const MAX_TAGS = 1000;
const DEFAULT_REPOSITORIES = 100;
const MAX_REPOSITORIES = 1000;
const SORTS = ['name', 'size', 'pushed'] as const;

export interface ConsoleApiOptions {
  registry: Registry;
  gc: GcService;
  access: ConsoleAccess;
  /** Whether the token endpoint is on (the login page gets its token there). */
  tokenLogin: boolean;
  pulls?: PullCounter;
  readOnly?: boolean;
}

/** A query parameter given at most once. */
function param(query: URLSearchParams, name: string): string | undefined {
  const all = query.getAll(name);
  if (all.length > 1) throw new RegistryError('UNSUPPORTED', `query parameter ${name} is given more than once`, { status: 400 });
  return all[0];
}

function required(query: URLSearchParams, name: string): string {
  const v = param(query, name);
  if (v === undefined || v === '') throw new RegistryError('UNSUPPORTED', `query parameter ${name} is required`, { status: 400 });
  return v;
}

function count(query: URLSearchParams, name: string, fallback: number, max: number): number {
  const v = param(query, name);
  if (v === undefined || v === '') return fallback;
  if (!/^\d{1,9}$/.test(v)) throw new RegistryError('UNSUPPORTED', `query parameter ${name} must be a whole number`, { status: 400 });
  return Math.min(Number(v), max);
}

function queryOf(req: FastifyRequest): URLSearchParams {
  const url = req.raw.url ?? '';
  const q = url.indexOf('?');
  return new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
}

/**
 * Changes (DELETE, POST) only from this origin or from non-browser clients:
 * with auth off, or for the GC button of a loopback admin, a page on another
 * site could otherwise make a visitor's browser send a simple cross-site POST.
 * Browsers name the page's origin on such requests; scripts send none.
 */
function sameOrigin(req: FastifyRequest): void {
  const origin = req.headers.origin;
  const site = req.headers['sec-fetch-site'];
  let foreign = site === 'cross-site' || site === 'same-site';
  if (origin !== undefined) {
    try {
      foreign ||= new URL(origin).host !== req.headers.host;
    } catch {
      foreign = true; // "null" (sandboxed pages, file://) or garbage
    }
  }
  if (foreign) throw new RegistryError('DENIED', 'changes are accepted from the console\'s own origin only');
}

function send(reply: FastifyReply, value: unknown): FastifyReply {
  return reply.code(200).header('Cache-Control', 'no-store').type('application/json').send(JSON.stringify(value));
}

/** The repository named by `repository=`, if the caller may pull it; NAME_UNKNOWN otherwise, as for one that does not exist. */
async function pullable(metadata: MetadataStore, caller: Caller, query: URLSearchParams): Promise<string> {
  const repository = parseRepositoryName(required(query, 'repository'));
  if (!caller.can(repository, 'pull') || !(await metadata.repositoryExists(repository))) {
    throw new RegistryError('NAME_UNKNOWN', undefined, { detail: { name: repository } });
  }
  return repository;
}

export function consoleApi({ registry, gc, access, tokenLogin, pulls, readOnly = false }: ConsoleApiOptions) {
  const metadata = registry.ctx.metadata;
  const storage = registry.ctx.storage;
  const deletes = registry.ctx.options.deleteEnabled;

  /** Compressed size and platforms of a manifest, reading the children of an index. */
  async function summarize(repository: string, m: ManifestRecord) {
    const body = parseBody(m.body);
    const kind = kindOf(m.mediaType);
    if (kind !== 'index') return { kind, size: imageSize(body), platforms: undefined };
    const children = indexChildren(body);
    // Layers shared between platforms are stored once: the index costs the distinct blobs of its children.
    const all = new Map<string, number>();
    const platforms = await Promise.all(
      children.map(async (c) => {
        const child = await metadata.findManifestByDigest(repository, c.digest);
        const own = child ? addImageBlobs(parseBody(child.body), new Map()) : new Map<string, number>();
        for (const [d, size] of own) all.set(d, size);
        return { digest: c.digest, mediaType: c.mediaType, platform: c.platform ?? 'unknown', size: totalSize(own) };
      }),
    );
    return { kind, size: totalSize(all), platforms };
  }

  /** Pull counts by digest: this process's pending counts first, so a pull just made shows. */
  async function pullsOf(repository: string, digests: string[]): Promise<Map<string, { pulls: number; lastPulled: number }>> {
    await pulls?.flush();
    const counts = await metadata.pullCounts(repository, [...new Set(digests)]);
    return new Map(counts.map((c) => [c.digest, { pulls: c.count, lastPulled: c.lastPulled }]));
  }

  async function readConfig(repository: string, config: DescriptorView | undefined) {
    if (!config || config.size > MAX_CONFIG_BYTES) return undefined;
    const blob = await metadata.findBlob(repository, config.digest);
    if (!blob) return undefined;
    try {
      const chunks: Buffer[] = [];
      const stream: Readable = await storage.openBlob(blob.storageKey, blob.size > 0 ? { start: 0, end: blob.size - 1 } : undefined);
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      return imageConfig(Buffer.concat(chunks));
    } catch {
      return undefined; // bytes missing: drift that fsck reports; the page shows the manifest without its config
    }
  }

  return (app: FastifyInstance) => {
    const get = (path: string, fn: (caller: Caller, query: URLSearchParams) => Promise<unknown>) =>
      app.get(`/ui/api/${path}`, async (req, reply) => send(reply, await fn(await access.caller(req), queryOf(req))));

    get('session', async (caller) => ({ auth: access.auth, tokenLogin, user: caller.name, admin: caller.admin, deletes }));

    get('repositories', async (caller, query) => {
      const q = (param(query, 'q') ?? '').toLowerCase();
      const sort = param(query, 'sort') ?? 'name';
      if (!(SORTS as readonly string[]).includes(sort)) throw new RegistryError('UNSUPPORTED', `sort must be one of ${SORTS.join(', ')}`, { status: 400 });
      const limit = count(query, 'limit', DEFAULT_REPOSITORIES, MAX_REPOSITORIES);
      const offset = count(query, 'offset', 0, Number.MAX_SAFE_INTEGER);
      const all = (await metadata.repositorySummaries()).filter((r) => caller.can(r.name, 'pull') && (q === '' || r.name.includes(q)));
      if (sort === 'size') all.sort((a, b) => b.bytes - a.bytes || (a.name < b.name ? -1 : 1));
      else if (sort === 'pushed') all.sort((a, b) => b.lastPush - a.lastPush || (a.name < b.name ? -1 : 1));
      return { total: all.length, repositories: all.slice(offset, offset + limit) };
    });

    get('tags', async (caller, query) => {
      const repository = await pullable(metadata, caller, query);
      const limit = count(query, 'limit', DEFAULT_TAGS, MAX_TAGS);
      const page = await metadata.listTagDetails(repository, param(query, 'last') || undefined, limit);
      const counts = await pullsOf(repository, page.items.map((t) => t.manifest.digest));
      const tags = await Promise.all(
        page.items.map(async (t) => ({
          tag: t.tag,
          digest: t.manifest.digest,
          mediaType: t.manifest.mediaType,
          ...(t.manifest.artifactType ? { artifactType: t.manifest.artifactType } : {}),
          pushedAt: t.updatedAt,
          ...(counts.get(t.manifest.digest) ?? { pulls: 0 }),
          ...(await summarize(repository, t.manifest)),
        })),
      );
      return { repository, tags, more: page.more, canDelete: deletes && caller.can(repository, 'delete') };
    });

    get('manifest', async (caller, query) => {
      const repository = await pullable(metadata, caller, query);
      const reference = required(query, 'reference');
      let m: ManifestRecord | undefined;
      if (isTag(reference)) m = await metadata.findManifestByTag(repository, reference);
      else m = await metadata.findManifestByDigest(repository, parseDigest(reference).value);
      if (!m) throw new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { reference: reference.slice(0, 200) } });
      const body = parseBody(m.body);
      const kind = kindOf(m.mediaType);
      const [usage, referrers, summary, counts] = await Promise.all([
        metadata.manifestUsage(repository, m.digest),
        metadata.listReferrers(repository, m.digest, undefined),
        summarize(repository, m),
        pullsOf(repository, [m.digest]),
      ]);
      const { config, layers } = imageParts(body);
      return {
        repository,
        digest: m.digest,
        mediaType: m.mediaType,
        kind,
        manifestSize: m.size,
        size: summary.size,
        ...(body.artifactType ? { artifactType: body.artifactType } : {}),
        annotations: body.annotations ?? {},
        ...(body.subject ? { subject: { digest: String(body.subject.digest), mediaType: String(body.subject.mediaType) } } : {}),
        ...(kind === 'image' ? { config: config ? { ...config, image: await readConfig(repository, config) } : undefined, layers } : {}),
        ...(kind === 'index' ? { manifests: summary.platforms } : {}),
        ...(counts.get(m.digest) ?? { pulls: 0 }),
        tags: usage.tags,
        parents: usage.parents,
        referrers,
        canDelete: deletes && caller.can(repository, 'delete'),
      };
    });

    get('storage', async (caller) => {
      const repositories = (await metadata.repositorySummaries())
        .filter((r) => caller.can(r.name, 'pull'))
        .map(({ name, bytes, uniqueBytes, manifests, tags }) => ({ name, bytes, uniqueBytes, sharedBytes: bytes - uniqueBytes, manifests, tags }))
        .sort((a, b) => b.bytes - a.bytes || (a.name < b.name ? -1 : 1));
      // Totals speak of every repository: admins only (invariant 11).
      return { totals: caller.admin ? await metadata.storageTotals() : undefined, repositories };
    });

    get('lifecycle', async (caller, query) => {
      requireAdmin(caller);
      const limit = count(query, 'limit', 50, 1000);
      const [runs, totals] = await Promise.all([metadata.listRuns(limit), metadata.runTotals()]);
      return { runs, totals };
    });

    app.post('/ui/api/gc', async (req, reply) => {
      sameOrigin(req);
      const caller = await access.caller(req);
      requireAdmin(caller);
      const query = queryOf(req);
      const dryRun = param(query, 'dryRun');
      if (dryRun !== undefined && !['0', '1', 'true', 'false'].includes(dryRun)) throw new RegistryError('UNSUPPORTED', 'dryRun must be 1 or 0', { status: 400 });
      if (!req.raw.readableEnded) req.raw.resume();
      const dry = dryRun === '1' || dryRun === 'true';
      if (readOnly && !dry) {
        throw new RegistryError('UNSUPPORTED', 'the registry is in read-only mode (maintenance): only a dry run of GC is allowed', { status: 405 });
      }
      const report = await gc.run('admin', { dryRun: dry, verbose: true });
      // What goes, as a sample: a dry run on a large registry can name many thousands.
      return send(reply, { ...report, manifests: report.manifests?.slice(0, 200), blobs: report.blobs?.slice(0, 200) });
    });

    app.delete('/ui/api/tag', async (req, reply) => {
      sameOrigin(req);
      const caller = await access.caller(req);
      const query = queryOf(req);
      const repository = await pullable(metadata, caller, query);
      const tag = required(query, 'tag');
      if (!isTag(tag)) throw new RegistryError('UNSUPPORTED', 'invalid tag', { status: 400, detail: { tag: tag.slice(0, 200) } });
      if (!caller.can(repository, 'delete')) throw new RegistryError('DENIED', undefined, { detail: { repository, action: 'delete' } });
      await registry.manifests.delete(repository, { kind: 'tag', tag });
      return send(reply, { deleted: { repository, tag } });
    });

    app.delete('/ui/api/manifest', async (req, reply) => {
      sameOrigin(req);
      const caller = await access.caller(req);
      const query = queryOf(req);
      const repository = await pullable(metadata, caller, query);
      const digest = parseDigest(required(query, 'digest'));
      if (!caller.can(repository, 'delete')) throw new RegistryError('DENIED', undefined, { detail: { repository, action: 'delete' } });
      await registry.manifests.delete(repository, { kind: 'digest', digest });
      return send(reply, { deleted: { repository, digest: digest.value } });
    });
  };
}
