/** Shared by the notification tests: a config file naming one endpoint, and /admin/events. */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EndpointSettings {
  name?: string;
  url: string;
  [key: string]: unknown;
}

/** A config file with one notification endpoint (YAML is a superset of JSON). */
export function notificationsConfig(endpoint: EndpointSettings, extra: Record<string, unknown> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-events-'));
  const file = join(dir, 'berth.yml');
  writeFileSync(file, JSON.stringify({ notifications: { endpoints: [{ name: 'test', ...endpoint }] }, ...extra }));
  return file;
}

export interface EndpointReport {
  name: string;
  pending: number;
  failed: number;
  deadLettered: number;
  lastError?: string;
  sent?: number;
}

export async function eventsReport(url: string): Promise<EndpointReport[]> {
  const res = await fetch(`${url}/admin/events`);
  if (res.status !== 200) throw new Error(`GET /admin/events: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { endpoints: EndpointReport[] }).endpoints;
}

export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
