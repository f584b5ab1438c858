/** Opens the metadata store and blob store a configuration names. */
import { join } from 'node:path';
import { parseS3Url, type Config } from './config.js';
import type { MetadataStore } from './metadata/store.js';
import { outboxOptions } from './events/config.js';
import type { OutboxOptions } from './metadata/outbox.js';
import { SqliteMetadataStore } from './metadata/sqlite/sqlite-store.js';
import type { BlobStore } from './storage/blob-store.js';
import { FilesystemBlobStore } from './storage/filesystem.js';

export interface Backends {
  metadata: MetadataStore;
  storage: BlobStore;
}

export async function openBackends(config: Config, written?: () => void): Promise<Backends> {
  const storage = await openStorage(config);
  const metadata = await openMetadata(config, written);
  return { metadata, storage };
}

/** The configured metadata store, migrated to the current schema (a newer schema is refused). */
export async function openMetadata(config: Config, written?: () => void): Promise<MetadataStore> {
  // With notification endpoints, state changes write their events in the same transaction (src/events/).
  const found = outboxOptions(config.notifications);
  const outbox: OutboxOptions | undefined = found && { ...found, written };
  if (config.metadata) {
    const { PostgresMetadataStore } = await import('./metadata/postgres/postgres-store.js'); // pg only when used
    return PostgresMetadataStore.open(config.metadata, { outbox });
  }
  return new SqliteMetadataStore(sqliteFile(config), { outbox });
}

export function sqliteFile(config: Config): string {
  return join(config.data, 'metadata.db');
}

async function openStorage(config: Config): Promise<BlobStore> {
  const { url, endpoint, region, pathStyle, partSize } = config.storage;
  if (url) {
    const { S3BlobStore } = await import('./storage/s3.js'); // the AWS SDK only when used
    return new S3BlobStore({ ...parseS3Url(url), endpoint, region, forcePathStyle: pathStyle, partSize });
  }
  const storage = new FilesystemBlobStore(config.data);
  await storage.init();
  return storage;
}
