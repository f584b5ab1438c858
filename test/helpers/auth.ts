/** Auth fixtures for tests: htpasswd files, config files, credentials and tokens. */
import { hashSync } from '@node-rs/bcrypt';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Writes an htpasswd file with bcrypt entries (cost 4 by default: fast tests; the format `htpasswd -B` writes). */
export function writeHtpasswd(file: string, users: Record<string, string>, cost = 4): void {
  const lines = Object.entries(users).map(([u, p]) => `${u}:${hashSync(p, cost).replace(/^\$2b\$/, '$2y$')}`);
  writeFileSync(file, lines.join('\n') + '\n');
}

export function authDir(): string {
  return mkdtempSync(join(tmpdir(), 'berth-auth-'));
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** A token from Berth's endpoint; `auth` is a Basic header or undefined (anonymous). */
export async function getToken(url: string, auth: string | undefined, scopes: string[], service = 'berth'): Promise<string> {
  const q = new URLSearchParams({ service });
  for (const s of scopes) q.append('scope', s);
  const res = await fetch(`${url}/auth/token?${q}`, { headers: auth ? { authorization: auth } : {} });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`token: ${res.status} ${text}`);
  return (JSON.parse(text) as { token: string }).token;
}

/** The `access` claim of a JWT (unverified: for assertions). */
export function accessOf(token: string): { type: string; name: string; actions: string[] }[] {
  return (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { access: { type: string; name: string; actions: string[] }[] }).access;
}
