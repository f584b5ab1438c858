/**
 * Expiry of cached content: a cached tag that nobody pulled for its
 * upstream's `expireAfter` is untagged. Nothing else is needed: GC then
 * collects the manifest (after gc.manifestGrace) and the blobs only it held
 * (after gc.blobGrace) by its ordinary, contract-keeping protocol, and a
 * later pull simply fetches them again. Content pulled only by digest is
 * untagged already and goes the same way.
 *
 * "Last pulled" is what this process saw; a tag it has not seen pulled
 * since it started counts as pulled at start, so a restart can only delay
 * expiry, never bring it forward.
 */
import type { Logger } from '../log.js';
import type { MetadataStore } from '../metadata/store.js';
import type { PullThroughCache } from './pull-through-cache.js';

const PAGE = 500;

export async function expireCachedTags(cache: PullThroughCache, metadata: MetadataStore, now = Date.now(), log?: Pick<Logger, 'info'>): Promise<number> {
  if (!cache.upstreams.some((u) => u.expireAfter > 0)) return 0;
  let untagged = 0;
  let last: string | undefined;
  for (;;) {
    const repos = await metadata.listRepositories(last, PAGE);
    for (const repository of repos.items) {
      const route = cache.route(repository);
      if (!route || route.upstream.expireAfter <= 0) continue;
      let lastTag: string | undefined;
      for (;;) {
        const tags = await metadata.listTags(repository, lastTag, PAGE);
        for (const tag of tags.items) {
          const pulled = cache.lastPulled.get(`${repository}:${tag}`) ?? cache.startedAt;
          if (now - pulled <= route.upstream.expireAfter) continue;
          if (await metadata.deleteTag(repository, tag, await metadata.now())) {
            untagged++;
            cache.lastPulled.delete(`${repository}:${tag}`);
            log?.info({ repository, tag, upstream: route.upstream.name }, 'pull-through: cached tag expired');
          }
        }
        if (!tags.more) break;
        lastTag = tags.items.at(-1);
      }
    }
    if (!repos.more) break;
    last = repos.items.at(-1);
  }
  return untagged;
}
