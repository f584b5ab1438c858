/** Tag, catalog and referrers listings. */
import type { Page, ReferrerDescriptor } from '../metadata/store.js';
import type { RegistryContext } from './context.js';
import { RegistryError } from './errors.js';
import type { Digest } from './reference.js';

/** Page size when the client does not ask for one, and the most it may ask for. */
export const DEFAULT_PAGE_SIZE = 1000;
export const MAX_PAGE_SIZE = 10000;

/** Tag pages kept for reuse; each is served only while its repository's tags version is unchanged. */
const TAG_PAGE_CACHE_SIZE = 256;

export class Listings {
  private readonly tagPages = new Map<string, { version: string; page: Page }>();

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
    if (cached && cached.version === version) return cached.page;
    // Read after the version: if the tags change in between, this page is
    // newer than its version says, and the next request (seeing the new
    // version) reads again. A page is never older than its version.
    const page = await this.ctx.metadata.listTags(repository, last, limit);
    this.tagPages.delete(key);
    if (this.tagPages.size >= TAG_PAGE_CACHE_SIZE) this.tagPages.delete(this.tagPages.keys().next().value!);
    this.tagPages.set(key, { version, page });
    return page;
  }

  async repositories(last: string | undefined, limit: number): Promise<Page> {
    return this.ctx.metadata.listRepositories(last, limit);
  }

  /** Manifests whose subject is `digest`; an unknown subject simply has none (spec). */
  async referrers(repository: string, digest: Digest, artifactType: string | undefined): Promise<ReferrerDescriptor[]> {
    return this.ctx.metadata.listReferrers(repository, digest.value, artifactType);
  }
}
