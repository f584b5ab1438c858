// Shared backends for the benchmark's S3 mode: one S3 key prefix per run (a
// sub-prefix per server) and, optionally, a fresh PostgreSQL database for
// Berth's metadata. Both are removed at the end of the run.
import crypto from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** S3 settings from the environment: S3_* as printed by scripts/s3/start.sh, else the AWS_* ones. */
export function s3Settings(env = process.env) {
  const endpoint = env.S3_ENDPOINT ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const accessKeyId = env.S3_ACCESS_KEY_ID ?? env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.S3_SECRET_ACCESS_KEY ?? env.AWS_SECRET_ACCESS_KEY;
  if (!endpoint || !accessKeyId || !secretAccessKey) return undefined;
  return {
    endpoint,
    bucket: env.S3_BUCKET ?? 'registry',
    region: env.S3_REGION ?? env.AWS_REGION ?? 'us-east-1',
    accessKeyId,
    secretAccessKey,
    /** The standard variables Berth (AWS SDK) reads. */
    awsEnv: {
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_REGION: env.S3_REGION ?? env.AWS_REGION ?? 'us-east-1',
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
    },
  };
}

/** A key prefix of its own for this run: bench/<time>-<random>/ */
export function runPrefix() {
  return `bench/${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${crypto.randomBytes(3).toString('hex')}/`;
}

/** Deletes everything under `prefix` (objects and unfinished multipart uploads), with Berth's own S3 store. */
export async function deleteS3Prefix(repoRoot, s3, prefix) {
  for (const [k, v] of Object.entries(s3.awsEnv)) process.env[k] ??= v;
  const { S3BlobStore } = await import(pathToFileURL(path.join(repoRoot, 'dist/src/storage/s3.js')).href);
  const store = new S3BlobStore({ bucket: s3.bucket, prefix, endpoint: s3.endpoint, region: s3.region });
  try {
    await store.deleteEverything();
  } finally {
    store.close();
  }
}

export const PG_ADMIN_URL = process.env.BERTH_BENCH_PG_URL ?? process.env.BERTH_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function pgAdmin(sql) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A fresh database next to PG_ADMIN_URL's: { url, name, drop() }. */
export async function createBenchDatabase() {
  const name = `berth_bench_${crypto.randomBytes(5).toString('hex')}`;
  await pgAdmin(`CREATE DATABASE ${name}`);
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return { name, url: url.toString(), drop: () => pgAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
