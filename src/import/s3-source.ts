/**
 * A reference registry's storage in an S3 bucket (its s3 storage driver):
 * the same layout as on disk, under the driver's `rootdirectory`. Blobs are
 * handed to Berth's S3 store as bucket and key, for a server-side copy.
 */
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import type { BlobSource } from '../storage/blob-store.js';
import type { DirEntry, ReferenceStorage } from './source.js';

export interface S3ReferenceOptions {
  bucket: string;
  /** The s3 driver's rootdirectory ('' for the bucket's root). */
  rootDirectory: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
}

export class S3ReferenceStorage implements ReferenceStorage {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly base: string;

  constructor(options: S3ReferenceOptions) {
    this.bucket = options.bucket;
    const root = options.rootDirectory.replace(/^\/+|\/+$/g, '');
    this.base = `${root ? `${root}/` : ''}docker/registry/v2/`;
    this.description = `s3://${options.bucket}/${root}`;
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private key(p: string): string {
    return this.base + p;
  }

  async exists(): Promise<boolean> {
    const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.base, MaxKeys: 1 }));
    return (res.KeyCount ?? 0) > 0;
  }

  async list(p: string): Promise<DirEntry[]> {
    const prefix = `${this.key(p)}/`;
    const out: DirEntry[] = [];
    let token: string | undefined;
    do {
      const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }));
      for (const cp of res.CommonPrefixes ?? []) if (cp.Prefix) out.push({ name: cp.Prefix.slice(prefix.length, -1), directory: true });
      for (const o of res.Contents ?? []) if (o.Key && o.Key !== prefix) out.push({ name: o.Key.slice(prefix.length), directory: false });
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async read(p: string): Promise<Buffer | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(p) }));
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async size(p: string): Promise<number | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(p) }));
      return res.ContentLength ?? 0;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async open(p: string): Promise<Readable> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(p) }));
    return res.Body as Readable;
  }

  blobSource(p: string, size: number): BlobSource {
    return { kind: 's3', bucket: this.bucket, key: this.key(p), size };
  }
}

function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata?.httpStatusCode === 404;
}
