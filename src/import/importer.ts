/**
 * `berth import`: records a reference registry's repositories, manifests,
 * tags and blobs in Berth, through the same ports and operations as a push.
 * Blobs are committed and linked before the manifests that reference them
 * (invariant 2 is checked by putManifest, as for any push), image manifests
 * before the indexes that list them, manifests before their tags.
 *
 * Every step first asks metadata whether its result is already there, so an
 * import is idempotent, and one killed at any point finishes when run again
 * (each blob's key is claimed in metadata before its bytes are stored, as
 * every commit's is: a run killed in between leaves a claim that expires
 * like an abandoned upload, never an object nothing names).
 */
import { createHash, randomUUID } from 'node:crypto';
import { crashPoint } from '../crash-points.js';
import type { MetadataStore } from '../metadata/store.js';
import { isRegistryError } from '../registry/errors.js';
import { parseManifest, type ParsedManifest } from '../registry/manifest.js';
import { isTag, isValidRepositoryName, parseDigest } from '../registry/reference.js';
import { Registry } from '../registry/registry.js';
import type { BlobStore, ImportedBlob } from '../storage/blob-store.js';
import { emptyReport, type ImportReport, type SkippedItem, type SkipReason } from './report.js';
import { blobDataPath, isSha256Hex, parseLink, repositoryPath, type ReferenceStorage } from './source.js';

export interface ImportOptions {
  /** Hash every imported blob's bytes against its digest (manifests are always checked). */
  verify: boolean;
  /** Read and check everything, write nothing. */
  dryRun: boolean;
  /** Only these repositories (default: all). */
  repositories?: string[];
  /** Also remove from Berth the tags that are gone from the source (the final pass of a migration). */
  incremental: boolean;
  /** Repositories imported at once. */
  concurrency?: number;
  now?: () => number;
  /** Called once the repositories are known, and after each is done. */
  progress?: (p: ImportProgress) => void;
}

export interface ImportProgress {
  repositoriesTotal: number;
  repositoriesDone: number;
  manifests: number;
  blobs: number;
  bytes: number;
}

interface Revision {
  digest: string;
  body: Buffer;
  mediaType: string | undefined;
  parsed: ParsedManifest;
}

type BlobOutcome = 'imported' | 'linked' | 'present' | 'skipped';

/** Blobs, manifests and tags of one repository in flight at once (their commits share group commits). */
const BLOBS_AT_ONCE = 4;
const MANIFESTS_AT_ONCE = 4;
/** Blobs up to this size are read whole to be verified. */
const SMALL_BLOB = 1024 * 1024;

/** Runs `fn` over `items`, at most `limit` at a time. */
async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export async function importRegistry(source: ReferenceStorage, metadata: MetadataStore, storage: BlobStore, options: ImportOptions): Promise<ImportReport> {
  return new Importer(source, metadata, storage, options).run();
}

class Importer {
  private readonly report: ImportReport;
  private readonly registry: Registry;
  private readonly now: () => number;
  /** Blobs being imported by another repository's task: a second one waits and links instead of copying again. */
  private readonly inFlight = new Map<string, Promise<BlobOutcome>>();
  /** Dry run: what this run would have made available, by digest (blobs) and repository@digest (manifests). */
  private readonly wouldHaveBlobs = new Set<string>();
  /** Every blob digest some repository links or references (the rest of the source's blobs are reported as unlinked). */
  private readonly seenBlobs = new Set<string>();
  /** repository@digest of manifests reported as not imported (a tag pointing at one says so). */
  private readonly skippedManifests = new Set<string>();
  private started = Date.now();

  constructor(
    private readonly source: ReferenceStorage,
    private readonly metadata: MetadataStore,
    private readonly storage: BlobStore,
    private readonly options: ImportOptions,
  ) {
    this.report = emptyReport(source.description, options.dryRun, options.verify, options.incremental);
    this.now = options.now ?? Date.now;
    this.registry = new Registry(metadata, storage, {}, { now: this.now });
  }

  async run(): Promise<ImportReport> {
    this.started = Date.now();
    const found = await this.findRepositories();
    let names = found;
    if (this.options.repositories?.length) {
      const wanted = new Set(this.options.repositories);
      names = found.filter((n) => wanted.has(n));
      for (const n of wanted) if (!found.includes(n)) this.skip({ kind: 'repository', repository: n, reason: 'repository not found in source' }, 'repositories');
    }
    const progress: ImportProgress = { repositoriesTotal: names.length, repositoriesDone: 0, manifests: 0, blobs: 0, bytes: 0 };
    this.options.progress?.(progress);
    const queue = [...names];
    const worker = async () => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
        await this.importRepository(name);
        progress.repositoriesDone++;
        progress.manifests = this.report.manifests.imported + this.report.manifests.present;
        progress.blobs = this.report.blobs.imported + this.report.blobs.linked + this.report.blobs.present;
        progress.bytes = this.report.blobs.bytes;
        this.options.progress?.(progress);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.options.concurrency ?? 8) }, worker));
    if (!this.options.repositories?.length) await this.countUnlinkedBlobs();
    this.report.durationMs = Date.now() - this.started;
    return this.report;
  }

  // Discovery ----------------------------------------------------------------

  /** Repository names: directories holding _manifests, _layers or _uploads (names may nest). */
  private async findRepositories(): Promise<string[]> {
    const names: string[] = [];
    const walk = async (name: string): Promise<void> => {
      const entries = await this.source.list(name ? repositoryPath(name) : 'repositories');
      if (name && entries.some((e) => e.directory && (e.name === '_manifests' || e.name === '_layers' || e.name === '_uploads'))) names.push(name);
      for (const e of entries) if (e.directory && !e.name.startsWith('_')) await walk(name ? `${name}/${e.name}` : e.name);
    };
    await walk('');
    return names.sort();
  }

  // One repository -----------------------------------------------------------

  private async importRepository(name: string): Promise<void> {
    if (!isValidRepositoryName(name)) {
      this.skip({ kind: 'repository', repository: name, reason: 'invalid repository name' }, 'repositories');
      return;
    }
    const base = repositoryPath(name);
    const revisions = await this.readRevisions(name, base);

    const tags = await this.readTags(name, base);

    // Blobs: those the repository links, and those its manifests reference.
    const blobs = new Set<string>();
    for (const hex of await this.hexEntries(`${base}/_layers/sha256`)) {
      const digest = parseLink(await this.source.read(`${base}/_layers/sha256/${hex}/link`));
      if (digest === `sha256:${hex}`) blobs.add(digest);
      else this.skip({ kind: 'link', repository: name, item: `sha256:${hex}`, reason: 'link file unreadable' });
    }
    for (const r of revisions.values()) for (const b of r.parsed.blobs) blobs.add(b);
    const available = new Set<string>();
    await eachLimit([...blobs], BLOBS_AT_ONCE, async (digest) => {
      this.seenBlobs.add(digest);
      if ((await this.importBlob(name, digest)) !== 'skipped') available.add(digest);
    });

    // A manifest is recorded with its first tag in one transaction; the other tags follow.
    const firstTag = new Map<string, string>();
    for (const [tag, digest] of tags) if (!firstTag.has(digest)) firstTag.set(digest, tag);
    const recordedTags = new Set<string>();
    const manifests = await this.importManifests(name, revisions, available, firstTag, recordedTags);
    await this.importTags(name, tags, revisions, manifests, recordedTags);

    for (const upload of await this.source.list(`${base}/_uploads`)) {
      this.report.uploads++;
      this.skip({ kind: 'upload', repository: name, item: upload.name, reason: 'upload in progress' });
    }
    this.report.repositories.imported++;
  }

  /** The manifest revisions that still have a link (a deleted manifest's link is removed), read and parsed. */
  private async readRevisions(name: string, base: string): Promise<Map<string, Revision>> {
    const out = new Map<string, Revision>();
    for (const hex of await this.hexEntries(`${base}/_manifests/revisions/sha256`)) {
      const linkBytes = await this.source.read(`${base}/_manifests/revisions/sha256/${hex}/link`);
      if (linkBytes === undefined) continue; // deleted through the API: not a revision any more
      const digest = `sha256:${hex}`;
      this.seenBlobs.add(digest);
      if (parseLink(linkBytes) !== digest) {
        this.skip({ kind: 'link', repository: name, item: digest, reason: 'link file unreadable' });
        continue;
      }
      const body = await this.source.read(blobDataPath(hex));
      if (body === undefined) {
        this.skip({ kind: 'manifest', repository: name, item: digest, reason: 'manifest data missing' }, 'manifests');
        continue;
      }
      if (createHash('sha256').update(body).digest('hex') !== hex) {
        this.skip({ kind: 'manifest', repository: name, item: digest, reason: 'manifest data does not match its digest' }, 'manifests');
        continue;
      }
      let doc: { mediaType?: unknown; schemaVersion?: unknown };
      try {
        doc = JSON.parse(body.toString('utf8')) as typeof doc;
      } catch {
        this.skip({ kind: 'manifest', repository: name, item: digest, reason: 'manifest invalid', detail: 'not JSON' }, 'manifests');
        continue;
      }
      if (doc?.schemaVersion === 1) {
        this.skip({ kind: 'manifest', repository: name, item: digest, reason: 'schema 1 manifest' }, 'manifests');
        continue;
      }
      const mediaType = typeof doc?.mediaType === 'string' ? doc.mediaType : undefined;
      try {
        out.set(digest, { digest, body, mediaType, parsed: parseManifest(body, mediaType) });
      } catch (e) {
        if (!isRegistryError(e)) throw e;
        this.skip({ kind: 'manifest', repository: name, item: digest, reason: 'manifest invalid', detail: e.message }, 'manifests');
      }
    }
    return out;
  }

  /** Names of a directory's sub-directories that are sha256 hex digests (anything else is garbage and ignored). */
  private async hexEntries(path: string): Promise<string[]> {
    return (await this.source.list(path)).filter((e) => e.directory && isSha256Hex(e.name)).map((e) => e.name);
  }

  // Blobs --------------------------------------------------------------------

  private async importBlob(repository: string, digest: string): Promise<BlobOutcome> {
    if (await this.metadata.findBlob(repository, digest)) return this.count('present');
    // Another repository is importing it right now: wait, then link it.
    const pending = this.inFlight.get(digest);
    if (pending) await pending;
    if (this.options.dryRun) {
      if (this.wouldHaveBlobs.has(digest) || (await this.metadata.findAnyBlob(digest))) return this.count('linked');
    } else if (await this.metadata.mountBlob(repository, digest, undefined, this.now())) {
      return this.count('linked');
    }
    const work = this.storeBlob(repository, digest);
    this.inFlight.set(digest, work);
    try {
      return this.count(await work);
    } finally {
      if (this.inFlight.get(digest) === work) this.inFlight.delete(digest);
    }
  }

  private count(outcome: BlobOutcome): BlobOutcome {
    if (outcome !== 'skipped') this.report.blobs[outcome]++;
    return outcome;
  }

  /** Bytes first (durable, under a key of their own), then metadata: the order of every commit. */
  private async storeBlob(repository: string, digest: string): Promise<BlobOutcome> {
    const hex = digest.slice('sha256:'.length);
    const path = blobDataPath(hex);
    const size = await this.source.size(path);
    if (size === undefined) {
      this.skip({ kind: 'blob', repository, item: digest, reason: 'blob data missing' }, 'blobs');
      return 'skipped';
    }
    // A store that streams the bytes hashes them on the way; one that may link
    // or copy them server side gets them checked first (and a dry run always
    // checks, since it streams nothing).
    const direct = this.storage.importBlob !== undefined;
    if (this.options.verify && (direct || this.options.dryRun)) {
      const actual = await this.hashOf(path, size);
      if (actual !== hex) {
        this.skip({ kind: 'blob', repository, item: digest, reason: 'blob data does not match its digest', detail: `sha256:${actual}` }, 'blobs');
        return 'skipped';
      }
    }
    if (this.options.dryRun) {
      this.wouldHaveBlobs.add(digest);
      this.report.blobs.bytes += size;
      return 'imported';
    }
    // Claimed before storage is touched, like every commit (invariant 9):
    // metadata names the key first, so fsck never takes the object for an
    // orphan, and a run killed before its commit leaves a claim that
    // expires like an abandoned upload.
    const id = randomUUID();
    const key = this.storage.commitKey(id, digest);
    await this.metadata.createClaimedUpload(id, repository, key, this.now());
    let method: keyof ImportReport['blobs']['byMethod'];
    let result;
    try {
      const stored: ImportedBlob | undefined = await this.storage.importBlob?.(id, digest, this.source.blobSource(path, size));
      if (stored) {
        method = stored.method;
        if (stored.key !== key) throw new Error(`store imported ${stored.key}, the commit claimed ${key}`);
      } else {
        // Streamed through this process: hashed on the way, so always verified.
        method = 'stream';
        const hash = createHash('sha256');
        await this.storage.createUpload(id);
        const length = await this.storage.appendUpload(id, 0, await this.source.open(path), (c) => hash.update(c));
        const actual = hash.digest('hex');
        if (actual !== hex || length !== size) {
          await this.abandon(id, key);
          this.skip({ kind: 'blob', repository, item: digest, reason: 'blob data does not match its digest', detail: `sha256:${actual}` }, 'blobs');
          return 'skipped';
        }
        const committed = await this.storage.commitUpload(id, length, digest);
        if (committed !== key) throw new Error(`store committed ${committed}, the commit claimed ${key}`);
      }
      crashPoint('import-after-blob-bytes');
      result = await this.metadata.commitBlob(id, repository, { digest, size, storageKey: key }, this.now());
    } catch (e) {
      await this.abandon(id, key);
      throw e;
    }
    // Already recorded meanwhile (another importer): keep the one copy.
    if (result.outcome === 'already-present') {
      await this.storage.deleteBlob(key);
      return 'linked';
    }
    if (result.replacedKey !== undefined) await this.storage.deleteBlob(result.replacedKey);
    this.report.blobs.byMethod[method]++;
    this.report.blobs.bytes += size;
    return 'imported';
  }

  /** Ends a claimed import that did not commit: the object goes only on metadata's word that nothing names it (invariant 9). */
  private async abandon(id: string, key: string): Promise<void> {
    const ended = await this.metadata.deleteUpload(id).catch(() => false);
    if (ended) await this.storage.deleteBlob(key).catch(() => {});
    await this.storage.deleteUpload(id).catch(() => {});
  }

  private async hashOf(path: string, size: number): Promise<string> {
    const hash = createHash('sha256');
    // Small blobs (most of them) in one read: a stream per file costs more than its bytes.
    if (size <= SMALL_BLOB) {
      const bytes = await this.source.read(path);
      if (bytes) return hash.update(bytes).digest('hex');
    }
    for await (const chunk of await this.source.open(path)) hash.update(chunk as Buffer);
    return hash.digest('hex');
  }

  // Manifests ----------------------------------------------------------------

  /**
   * Image manifests first, then indexes whose children are in, repeated
   * while that makes progress (indexes of indexes). Returns the digests
   * that are in Berth afterwards (or would be, in a dry run).
   */
  private async importManifests(
    repository: string,
    revisions: Map<string, Revision>,
    blobs: Set<string>,
    firstTag: Map<string, string>,
    recordedTags: Set<string>,
  ): Promise<Set<string>> {
    const done = new Set<string>();
    let pending = [...revisions.values()];
    while (pending.length > 0) {
      const ready = pending.filter((r) => r.parsed.children.every((c) => done.has(c) || !revisions.has(c)));
      const batch = ready.length > 0 ? ready : pending; // a cycle or a child that failed: try them, and report what is refused
      pending = pending.filter((r) => !batch.includes(r));
      const wave = new Set<string>();
      await eachLimit(batch, MANIFESTS_AT_ONCE, async (r) => {
        if (await this.importManifest(repository, r, blobs, done, firstTag.get(r.digest), recordedTags)) wave.add(r.digest);
      });
      for (const d of wave) done.add(d);
    }
    return done;
  }

  private async importManifest(
    repository: string,
    r: Revision,
    blobs: Set<string>,
    done: Set<string>,
    tag: string | undefined,
    recordedTags: Set<string>,
  ): Promise<boolean> {
    if (await this.metadata.findManifestByDigest(repository, r.digest)) {
      this.report.manifests.present++;
      return true;
    }
    const missingBlob = r.parsed.blobs.find((b) => !blobs.has(b));
    const missingChild = r.parsed.children.find((c) => !done.has(c));
    if (this.options.dryRun) {
      if (missingBlob) return this.manifestRefused(repository, r, 'manifest references a blob that was not imported', missingBlob);
      if (missingChild && !(await this.metadata.findManifestByDigest(repository, missingChild))) {
        return this.manifestRefused(repository, r, 'index references a manifest that was not imported', missingChild);
      }
      this.report.manifests.imported++;
      return true;
    }
    try {
      const reference = tag !== undefined ? ({ kind: 'tag', tag } as const) : ({ kind: 'digest', digest: parseDigest(r.digest) } as const);
      await this.registry.manifests.put(repository, reference, r.body, r.mediaType);
    } catch (e) {
      if (!isRegistryError(e)) throw e;
      if (e.code === 'MANIFEST_BLOB_UNKNOWN') {
        const reason = r.parsed.children.length > 0 ? 'index references a manifest that was not imported' : 'manifest references a blob that was not imported';
        return this.manifestRefused(repository, r, reason, missingChild ?? missingBlob ?? e.message);
      }
      if (e.code === 'MANIFEST_UNKNOWN') return this.manifestRefused(repository, r, 'index references a manifest that was not imported', missingChild ?? e.message);
      return this.manifestRefused(repository, r, 'manifest invalid', `${e.code}: ${e.message}`);
    }
    this.report.manifests.imported++;
    if (tag !== undefined) {
      recordedTags.add(tag);
      this.report.tags.imported++;
    }
    return true;
  }

  private manifestRefused(repository: string, r: Revision, reason: SkipReason, detail: string): false {
    this.skip({ kind: 'manifest', repository, item: r.digest, reason, detail }, 'manifests');
    return false;
  }

  // Tags ---------------------------------------------------------------------

  /** The source's tags and what each points at; invalid and unreadable ones are reported here. */
  private async readTags(repository: string, base: string): Promise<Map<string, string>> {
    const tags = new Map<string, string>();
    for (const entry of await this.source.list(`${base}/_manifests/tags`)) {
      if (!entry.directory) continue;
      const tag = entry.name;
      if (!isTag(tag)) {
        this.skip({ kind: 'tag', repository, item: tag, reason: 'invalid tag name' }, 'tags');
        continue;
      }
      const digest = parseLink(await this.source.read(`${base}/_manifests/tags/${tag}/current/link`));
      if (!digest) {
        this.skip({ kind: 'tag', repository, item: tag, reason: 'tag link missing or unreadable' }, 'tags');
        continue;
      }
      tags.set(tag, digest);
    }
    return tags;
  }

  private async importTags(repository: string, tags: Map<string, string>, revisions: Map<string, Revision>, manifests: Set<string>, recorded: Set<string>): Promise<void> {
    await eachLimit([...tags], MANIFESTS_AT_ONCE, async ([tag, digest]) => {
      if (recorded.has(tag)) return; // recorded with its manifest
      const revision = revisions.get(digest);
      if (!revision || !manifests.has(digest)) {
        // A revision whose link is gone was never read; one that was read and refused is reported with its manifest.
        const reason = revision || this.skippedManifest(repository, digest) ? "tag's manifest was not imported" : "tag's revision is gone";
        this.skip({ kind: 'tag', repository, item: tag, reason, detail: digest }, 'tags');
        return;
      }
      const current = await this.metadata.findManifestByTag(repository, tag);
      if (current?.digest === digest) {
        this.report.tags.present++;
        return;
      }
      if (!this.options.dryRun) {
        await this.registry.manifests.put(repository, { kind: 'tag', tag }, revision.body, revision.mediaType);
      }
      this.report.tags.imported++;
    });
    if (this.options.incremental) await this.removeGoneTags(repository, new Set(tags.keys()));
  }

  /** The final pass of a migration: tags deleted in the source since the last import go from Berth too. */
  private async removeGoneTags(repository: string, sourceTags: Set<string>): Promise<void> {
    let last: string | undefined;
    const gone: string[] = [];
    for (;;) {
      const page = await this.metadata.listTags(repository, last, 1000);
      for (const t of page.items) if (!sourceTags.has(t)) gone.push(t);
      if (!page.more || page.items.length === 0) break;
      last = page.items[page.items.length - 1];
    }
    for (const tag of gone) {
      if (!this.options.dryRun) await this.metadata.deleteTag(repository, tag, this.now());
      this.report.tags.removed++;
    }
  }

  // Leftovers ----------------------------------------------------------------

  /** Blobs in the source that no repository links or references: garbage the reference's GC would remove. */
  private async countUnlinkedBlobs(): Promise<void> {
    for (const shard of await this.source.list('blobs/sha256')) {
      if (!shard.directory) continue;
      for (const entry of await this.source.list(`blobs/sha256/${shard.name}`)) {
        if (!entry.directory || !isSha256Hex(entry.name)) continue;
        const digest = `sha256:${entry.name}`;
        if (this.seenBlobs.has(digest)) continue;
        this.report.unlinkedBlobs++;
        this.skip({ kind: 'blob', item: digest, reason: 'blob not linked to any repository' });
      }
    }
  }

  private skippedManifest(repository: string, digest: string): boolean {
    return this.skippedManifests.has(`${repository}@${digest}`);
  }

  private skip(item: SkippedItem, counter?: 'repositories' | 'manifests' | 'tags' | 'blobs'): void {
    if (item.kind === 'manifest') this.skippedManifests.add(`${item.repository}@${item.item}`);
    this.report.skipped.push(item);
    this.report.reasons[item.reason] = (this.report.reasons[item.reason] ?? 0) + 1;
    if (counter) this.report[counter].skipped++;
  }
}
