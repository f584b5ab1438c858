/** A reference registry's storage from its location: a directory, or s3://BUCKET/ROOTDIRECTORY. */
import { parseS3Url } from '../config.js';
import { FilesystemReferenceStorage } from './filesystem-source.js';
import type { ReferenceStorage } from './source.js';

export async function openReferenceStorage(location: string, s3: { endpoint?: string; region?: string; pathStyle?: boolean }): Promise<ReferenceStorage> {
  if (location.startsWith('s3://')) {
    const { bucket, prefix } = parseS3Url(location);
    const { S3ReferenceStorage } = await import('./s3-source.js'); // the AWS SDK only when used
    return new S3ReferenceStorage({ bucket, rootDirectory: prefix, endpoint: s3.endpoint, region: s3.region, forcePathStyle: s3.pathStyle });
  }
  return new FilesystemReferenceStorage(location);
}
