/** Tag, catalog and referrers listings. */
import type { Page, ReferrerDescriptor } from '../metadata/store.js';
import type { RegistryContext } from './context.js';
import { RegistryError } from './errors.js';
import type { Digest } from './reference.js';

/** Page size when the client does not ask for one, and the most it may ask for. */
export const DEFAULT_PAGE_SIZE = 1000;
export const MAX_PAGE_SIZE = 10000;

export class Listings {
  constructor(private readonly ctx: RegistryContext) {}

  async tags(repository: string, last: string | undefined, limit: number): Promise<Page> {
    const page = await this.ctx.metadata.listTags(repository, last, limit);
    if (page.items.length === 0 && !(await this.ctx.metadata.repositoryExists(repository))) {
      throw new RegistryError('NAME_UNKNOWN', undefined, { detail: { name: repository } });
    }
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
