/**
 * The S3 endpoint tests use, from the environment: S3_ENDPOINT (or
 * AWS_ENDPOINT_URL_S3), S3_BUCKET, S3_REGION, S3_ACCESS_KEY_ID,
 * S3_SECRET_ACCESS_KEY (scripts/s3/start.sh prints them), falling back to
 * the standard AWS_* variables.
 */
import { randomBytes } from 'node:crypto';

export interface S3TestEnv {
  endpoint: string;
  bucket: string;
  region: string;
  /** The standard AWS variables a child process (berth serve) needs. */
  awsEnv: Record<string, string>;
}

export function s3TestEnv(env: NodeJS.ProcessEnv = process.env): S3TestEnv | undefined {
  const endpoint = env.S3_ENDPOINT ?? env.AWS_ENDPOINT_URL_S3;
  if (!endpoint) return undefined;
  const region = env.S3_REGION ?? env.AWS_REGION ?? 'us-east-1';
  const awsEnv: Record<string, string> = { AWS_ENDPOINT_URL_S3: endpoint, AWS_REGION: region };
  const key = env.S3_ACCESS_KEY_ID ?? env.AWS_ACCESS_KEY_ID;
  const secret = env.S3_SECRET_ACCESS_KEY ?? env.AWS_SECRET_ACCESS_KEY;
  if (key) awsEnv.AWS_ACCESS_KEY_ID = key;
  if (secret) awsEnv.AWS_SECRET_ACCESS_KEY = secret;
  return { endpoint, bucket: env.S3_BUCKET ?? 'registry', region, awsEnv };
}

/** Why S3 tests do not run, or undefined when they do; under CI=true a missing endpoint is a failure. */
export function s3SkipReason(): string | undefined {
  if (s3TestEnv()) return undefined;
  const reason = 'no S3 endpoint: start one with eval "$(bash scripts/s3/start.sh)" to run the S3 tests';
  if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: S3 tests must run)`);
  return reason;
}

/** A key prefix no other test (or run) uses. */
export function uniquePrefix(what: string): string {
  return `test/${what}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}/`;
}
