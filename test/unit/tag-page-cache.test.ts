/**
 * From finding 6 of the security review: the tag-page cache is bounded by
 * bytes, not entries. Long tags and client-chosen `last=` values once grew a
 * process from 100 to 510 MB within 256 entries.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MetadataStore, Page } from '../../src/metadata/store.js';
import { DEFAULT_REGISTRY_OPTIONS, type RegistryContext } from '../../src/registry/context.js';
import { Listings } from '../../src/registry/listings.js';
import type { BlobStore } from '../../src/storage/blob-store.js';

/** A metadata store that only lists tags, each page `size` tags of 128 characters, and counts its reads. */
function fakeMetadata(size: number) {
  const reads = { n: 0 };
  const metadata = {
    tagsVersion: async () => '1',
    listTags: async (_repo: string, last: string | undefined): Promise<Page> => {
      reads.n++;
      return { items: Array.from({ length: size }, (_, i) => `${last ?? ''}-${i}`.padEnd(128, 'x')), more: true };
    },
  } as unknown as MetadataStore;
  return { metadata, reads };
}

function listings(metadata: MetadataStore): Listings {
  const ctx: RegistryContext = { metadata, storage: {} as BlobStore, options: DEFAULT_REGISTRY_OPTIONS, now: () => 0 };
  return new Listings(ctx);
}

describe('tag page cache', () => {
  it('keeps at most 16 MiB of pages, however many distinct last= values and long tags are asked for', async () => {
    const { metadata, reads } = fakeMetadata(1000); // ~300 KB a page
    const l = listings(metadata);
    for (let i = 0; i < 256; i++) await l.tags('big/app', `${'t'.repeat(100)}${i}`, 1000);
    assert.ok(l.tagPageCacheBytes <= 16 * 1024 * 1024, `cache holds ${l.tagPageCacheBytes} bytes`);
    // The first pages were let go to stay under the bound: asked again, they are read again.
    const before = reads.n;
    await l.tags('big/app', `${'t'.repeat(100)}0`, 1000);
    assert.equal(reads.n, before + 1);
  });

  it('still serves small pages again without reading them', async () => {
    const { metadata, reads } = fakeMetadata(10);
    const l = listings(metadata);
    for (let i = 0; i < 200; i++) await l.tags('small/app', String(i), 10);
    const before = reads.n;
    for (let i = 0; i < 200; i++) await l.tags('small/app', String(i), 10);
    assert.equal(reads.n, before, 'all 200 small pages were kept');
  });
});
