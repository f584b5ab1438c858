/** Tag, catalog and referrers listings. */
import type { Page, ReferrerDescriptor } from '../metadata/store.js';
import type { RegistryContext } from './context.js';
import { RegistryError } from './errors.js';
import type { Digest } from './reference.js';

/** Page size when the client does not ask for one, and the most it may ask for. */
export const DEFAULT_PAGE_SIZE = 1000;
export const MAX_PAGE_SIZE = 10000;

/**
 * Memory the kept tag pages may use, estimated from their strings. Bounded
 * by bytes, not entries: a page of 10,000 long tags is a thousand times a
 * small one, and `last=` values are the client's to choose (256 entries once
 * grew a process by 400 MB).
 */
export const TAG_PAGE_CACHE_BYTES = 16 * 1024 * 1024;
/** A page bigger than this is served but not kept: it would push out many others. */
const TAG_PAGE_MAX_BYTES = TAG_PAGE_CACHE_BYTES / 4;

/** Estimated memory of a kept page: UTF-16 strings plus per-string and per-entry overhead. */
function pageBytes(key: string, version: string, page: Page): number {
  let n = 2 * (key.length + version.length) + 160;
  for (const item of page.items) n += 2 * item.length + 32;
  return n;
}

export class Listings {
  /** Kept tag pages, least recently used first; each is served only while its repository's tags version is unchanged. */
  private readonly tagPages = new Map<string, { version: string; page: Page; bytes: number }>();
  private tagPagesBytes = 0;

  constructor(private readonly ctx: RegistryContext) {}

  /**
   * A page of tags. CI systems poll big tag lists; reading a thousand rows
   * costs far more than checking the repository's tags version, which
   * metadata bumps in the same transaction as any tag change. So a page is
   * reused only after metadata confirms nothing changed (invariant 1 holds:
   * the answer still comes from metadata, one indexed read away).
   */
  async tags(repository: string, last: string | undefined, limit: number): Promise<Page> {
    const version = await this.ctx.metadata.tagsVersion(repository);
    if (version === undefined) throw new RegistryError('NAME_UNKNOWN', undefined, { detail: { name: repository } });
    const key = `${repository}\n${last ?? ''}\n${limit}`;
    const cached = this.tagPages.get(key);
    if (cached && cached.version === version) {
      this.tagPages.delete(key); // most recently used: last to go
      this.tagPages.set(key, cached);
      return cached.page;
    }
    // Read after the version: if the tags change in between, this page is
    // newer than its version says, and the next request (seeing the new
    // version) reads again. A page is never older than its version.
    const page = await this.ctx.metadata.listTags(repository, last, limit);
    this.forgetTagPage(key);
    const bytes = pageBytes(key, version, page);
    if (bytes > TAG_PAGE_MAX_BYTES) return page;
    while (this.tagPagesBytes + bytes > TAG_PAGE_CACHE_BYTES) this.forgetTagPage(this.tagPages.keys().next().value!);
    this.tagPages.set(key, { version, page, bytes });
    this.tagPagesBytes += bytes;
    return page;
  }

  /** Estimated memory of the kept tag pages (at most TAG_PAGE_CACHE_BYTES). */
  get tagPageCacheBytes(): number {
    return this.tagPagesBytes;
  }

  private forgetTagPage(key: string): void {
    const entry = this.tagPages.get(key);
    if (!entry) return;
    this.tagPages.delete(key);
    this.tagPagesBytes -= entry.bytes;
  }

  async repositories(last: string | undefined, limit: number): Promise<Page> {
    return this.ctx.metadata.listRepositories(last, limit);
  }

  /** Manifests whose subject is `digest`; an unknown subject simply has none (spec). */
  async referrers(repository: string, digest: Digest, artifactType: string | undefined): Promise<ReferrerDescriptor[]> {
    return this.ctx.metadata.listReferrers(repository, digest.value, artifactType);
  }
}
