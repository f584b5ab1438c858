/**
 * Brings the metadata store's quota namespaces in line with the policies
 * (at start and after a reload): which namespaces exist, which existing
 * repositories each holds, and their usage recounted. Repositories created
 * later join their namespaces in the write that creates them.
 */
import type { MetadataStore } from '../metadata/store.js';
import type { Policies } from './policies.js';

const PAGE = 1000;

export async function syncQuotas(metadata: MetadataStore, policies: Policies): Promise<void> {
  const namespaces = policies.quotaNamespaces().map((n) => ({ ...n, repositories: [] as string[] }));
  if (namespaces.length > 0) {
    let last: string | undefined;
    for (;;) {
      const page = await metadata.listRepositories(last, PAGE);
      for (const repository of page.items) for (const n of namespaces) if (n.matches(repository)) n.repositories.push(repository);
      if (!page.more || page.items.length === 0) break;
      last = page.items.at(-1);
    }
  }
  await metadata.syncQuotaNamespaces(namespaces.map((n) => ({ name: n.name, repositories: n.repositories })));
}
