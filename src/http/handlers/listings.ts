/** GET /v2/<name>/tags/list, /v2/_catalog and /v2/<name>/referrers/<digest>. */
import { MediaType } from '../../registry/media-types.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../../registry/listings.js';
import { parseDigest } from '../../registry/reference.js';
import type { Page } from '../../metadata/store.js';
import type { Registry } from '../../registry/registry.js';
import { nextLink, pagination, type Handler, type RequestAccess } from './handler.js';

/** A catalog page of only the repositories the caller may pull (auth on): reads on until it has n of them. */
async function pullablePage(registry: Registry, access: RequestAccess, last: string | undefined, n: number): Promise<Page> {
  const items: string[] = [];
  let cursor = last;
  for (;;) {
    const page = await registry.listings.repositories(cursor, Math.max(n, 100));
    let i = 0;
    for (; i < page.items.length && items.length < n; i++) if (access.canPull(page.items[i]!)) items.push(page.items[i]!);
    if (items.length >= n) return { items, more: i < page.items.length || page.more };
    if (!page.more || page.items.length === 0) return { items, more: false };
    cursor = page.items[page.items.length - 1];
  }
}

export const listTags: Handler = async ({ reply, registry, repository, query }) => {
  const { n, last } = pagination(query, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  const page = await registry.listings.tags(repository, last, n);
  // n=0 returns no items, so there is no `last` to continue from: no Link.
  if (page.more && page.items.length > 0) reply.header('Link', nextLink(`/v2/${repository}/tags/list`, n, page.items[page.items.length - 1]!));
  reply.code(200).type('application/json').send(JSON.stringify({ name: repository, tags: page.items }));
};

export const listCatalog: Handler = async ({ reply, registry, query, access }) => {
  const { n, last } = pagination(query, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  const page = access ? await pullablePage(registry, access, last, n) : await registry.listings.repositories(last, n);
  if (page.more && page.items.length > 0) reply.header('Link', nextLink('/v2/_catalog', n, page.items[page.items.length - 1]!));
  reply.code(200).type('application/json').send(JSON.stringify({ repositories: page.items }));
};

export const listReferrers: Handler = async ({ reply, registry, repository, reference, query }) => {
  const artifactType = query.get('artifactType') ?? undefined;
  const manifests = await registry.listings.referrers(repository, parseDigest(reference), artifactType);
  if (artifactType !== undefined) reply.header('OCI-Filters-Applied', 'artifactType');
  // Set as a header, not with type(), which would append a charset the spec's media type does not have.
  reply
    .code(200)
    .header('Content-Type', MediaType.OciIndex)
    .send(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests })));
};
