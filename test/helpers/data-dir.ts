/** Looking at a test server's data directory and at spec error bodies, shared by the API tests. */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TestServer } from './server.js';

/** Files below `dir`, relative and sorted; [] when it does not exist. */
export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true }) as string[]).filter((p) => statSync(join(dir, p)).isFile()).sort();
}

/** Files under <dataDir>/blobs stored for a digest (keys are <alg>/<xx>/<hex>.<upload-id>). */
export function blobFiles(server: TestServer, digest: string): string[] {
  const hex = digest.split(':')[1]!;
  return listFiles(join(server.dataDir, 'blobs')).filter((p) => p.split('/').pop()!.startsWith(`${hex}.`));
}

/** Asserts the status and the spec's error code of a response. */
export async function assertError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status} ${text}`);
  assert.equal((JSON.parse(text) as { errors: { code: string }[] }).errors[0]!.code, code, text);
}
