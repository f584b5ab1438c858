/** Whether a reference registry's storage still waits for `berth import` (serve with a reference config checks this). */
import type { MetadataStore } from '../metadata/store.js';
import { openReferenceStorage } from './open.js';

/** True when the source holds repositories and Berth holds none: serving now would hide every image. */
export async function awaitsImport(source: string, metadata: MetadataStore, s3: { endpoint?: string; region?: string; pathStyle?: boolean }): Promise<boolean> {
  const reference = await openReferenceStorage(source, s3);
  if (!(await reference.exists())) return false;
  if ((await reference.list('repositories')).length === 0) return false;
  return (await metadata.listRepositories(undefined, 1)).items.length === 0;
}
