/** The registry's operations, grouped by resource, over the two ports. */
import type { MetadataStore } from '../metadata/store.js';
import type { BlobStore } from '../storage/blob-store.js';
import { Blobs } from './blobs.js';
import { DEFAULT_REGISTRY_OPTIONS, type RegistryContext, type RegistryOptions } from './context.js';
import { Listings } from './listings.js';
import { Manifests } from './manifests.js';
import { Uploads } from './uploads.js';
import { systemNow } from '../clock.js';

export class Registry {
  readonly ctx: RegistryContext;
  readonly blobs: Blobs;
  readonly uploads: Uploads;
  readonly manifests: Manifests;
  readonly listings: Listings;

  constructor(
    metadata: MetadataStore,
    storage: BlobStore,
    options: Partial<RegistryOptions> = {},
    { now = systemNow, log, pullEvents, events, policies, tagPulls }: Pick<Partial<RegistryContext>, 'now' | 'log' | 'pullEvents' | 'events' | 'policies' | 'tagPulls'> = {},
  ) {
    this.ctx = { metadata, storage, options: { ...DEFAULT_REGISTRY_OPTIONS, ...options }, now, log, pullEvents, events, policies, tagPulls };
    this.blobs = new Blobs(this.ctx);
    this.uploads = new Uploads(this.ctx);
    this.manifests = new Manifests(this.ctx);
    this.listings = new Listings(this.ctx);
  }
}
