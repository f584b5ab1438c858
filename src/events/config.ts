/**
 * Notification endpoints: the reference registry's `notifications` section
 * (endpoints[] with name, url, headers, timeout, threshold, backoff,
 * ignoredmediatypes, ignore {mediatypes, actions}, disabled), plus Berth's
 * own keys for what its durable outbox adds: maxage and maxevents (after
 * which undelivered events are dead-lettered), batch (events per envelope),
 * maxbackoff, and secret (HMAC signing of each envelope).
 */
import { ConfigError, parseDuration } from '../config.js';
import type { OutboxEvent } from '../metadata/store.js';
import type { OutboxEndpoint, OutboxOptions } from '../metadata/outbox.js';

export interface EndpointConfig {
  name: string;
  url: string;
  /** Sent with every envelope (a header may repeat). */
  headers: Record<string, string[]>;
  /** Per delivery attempt, ms. */
  timeout: number;
  /** Failures in a row retried at once before backing off. */
  threshold: number;
  /** First backoff after `threshold` failures, ms; doubles with each further failure up to maxBackoff. */
  backoff: number;
  maxBackoff: number;
  ignoredMediaTypes: string[];
  ignoreActions: string[];
  /** Undelivered events older than this (ms) are dead-lettered. */
  maxAge: number;
  /** At most this many pending events; older ones are dead-lettered. */
  maxEvents: number;
  /** Events per envelope. */
  batch: number;
  /** HMAC-SHA256 key: each envelope gets a `Berth-Signature: t=<unix seconds>,v1=<hex>` header. */
  secret?: string;
}

export interface NotificationsConfig {
  endpoints: EndpointConfig[];
  /** Record pull events at all (they change nothing, and are the most frequent). */
  pulls: boolean;
}

export const DEFAULT_NOTIFICATIONS: NotificationsConfig = { endpoints: [], pulls: true };

export const ENDPOINT_DEFAULTS: Omit<EndpointConfig, 'name' | 'url'> = {
  headers: {},
  timeout: 5_000,
  threshold: 3,
  backoff: 1_000,
  maxBackoff: 5 * 60_000,
  ignoredMediaTypes: [],
  ignoreActions: [],
  maxAge: 24 * 3_600_000,
  maxEvents: 1_000_000,
  batch: 100,
};

const ENDPOINT_KEYS = new Set([
  'name', 'url', 'headers', 'timeout', 'threshold', 'backoff', 'ignoredmediatypes', 'ignore', 'disabled',
  'maxage', 'maxevents', 'batch', 'maxbackoff', 'secret',
]);

function checkUrl(url: string, what: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`${what}: invalid url "${url}": use http://HOST[:PORT]/PATH or https://…`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`${what}: url must be http:// or https://, not ${u.protocol}`);
  return url;
}

function stringList(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ConfigError(`${what} must be a list of strings`);
  return v as string[];
}

function positive(v: unknown, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${what} must be a whole number of at least 1`);
  return n;
}

/** The `notifications` mapping of a config file. */
export function parseNotifications(doc: unknown, into: NotificationsConfig): void {
  if (doc === undefined || doc === null) return;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError('notifications must be a mapping (endpoints: [...])');
  const d = doc as Record<string, unknown>;
  for (const key of Object.keys(d)) {
    if (!['endpoints', 'events', 'pulls'].includes(key)) throw new ConfigError(`notifications: unknown setting "${key}"`);
  }
  if (d.pulls !== undefined) into.pulls = d.pulls === true || d.pulls === 'true';
  if (d.endpoints === undefined || d.endpoints === null) return;
  if (!Array.isArray(d.endpoints)) throw new ConfigError('notifications.endpoints must be a list');
  d.endpoints.forEach((raw, i) => {
    const what = `notifications.endpoints[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${what} must be a mapping`);
    const e = raw as Record<string, unknown>;
    for (const key of Object.keys(e)) if (!ENDPOINT_KEYS.has(key)) throw new ConfigError(`${what}: unknown setting "${key}"`);
    if (e.disabled === true || e.disabled === 'true') return;
    if (typeof e.name !== 'string' || e.name === '') throw new ConfigError(`${what}: name is required`);
    if (typeof e.url !== 'string') throw new ConfigError(`${what}: url is required`);
    if (into.endpoints.some((x) => x.name === e.name)) throw new ConfigError(`${what}: endpoint name "${e.name}" is used twice`);
    const headers: Record<string, string[]> = {};
    if (e.headers !== undefined && e.headers !== null) {
      if (typeof e.headers !== 'object' || Array.isArray(e.headers)) throw new ConfigError(`${what}.headers must be a mapping of header to a list of values`);
      for (const [h, v] of Object.entries(e.headers)) headers[h] = Array.isArray(v) ? v.map(String) : [String(v)];
    }
    const ignore = (e.ignore ?? {}) as Record<string, unknown>;
    const dur = (k: string, def: number) => (e[k] === undefined ? def : parseDuration(e[k] as string, `${what}.${k}`));
    into.endpoints.push({
      ...ENDPOINT_DEFAULTS,
      name: e.name,
      url: checkUrl(e.url, what),
      headers,
      timeout: dur('timeout', ENDPOINT_DEFAULTS.timeout),
      threshold: e.threshold === undefined ? ENDPOINT_DEFAULTS.threshold : positive(e.threshold, `${what}.threshold`),
      backoff: dur('backoff', ENDPOINT_DEFAULTS.backoff),
      maxBackoff: dur('maxbackoff', ENDPOINT_DEFAULTS.maxBackoff),
      ignoredMediaTypes: [...stringList(e.ignoredmediatypes, `${what}.ignoredmediatypes`), ...stringList(ignore.mediatypes, `${what}.ignore.mediatypes`)],
      ignoreActions: stringList(ignore.actions, `${what}.ignore.actions`),
      maxAge: dur('maxage', ENDPOINT_DEFAULTS.maxAge),
      maxEvents: e.maxevents === undefined ? ENDPOINT_DEFAULTS.maxEvents : positive(e.maxevents, `${what}.maxevents`),
      batch: e.batch === undefined ? ENDPOINT_DEFAULTS.batch : positive(e.batch, `${what}.batch`),
      ...(e.secret !== undefined ? { secret: String(e.secret) } : {}),
    });
  });
}

/** `--notify URL` (repeatable): an endpoint with the defaults, named by its URL. */
export function notifyEndpoint(url: string): EndpointConfig {
  return { ...ENDPOINT_DEFAULTS, name: url, url: checkUrl(url, '--notify') };
}

/** Whether the endpoint takes the event (its ignore rules). */
export function accepts(e: EndpointConfig, event: Pick<OutboxEvent, 'action' | 'mediaType'>): boolean {
  if (e.ignoreActions.includes(event.action)) return false;
  if (event.mediaType !== undefined && e.ignoredMediaTypes.includes(event.mediaType)) return false;
  return true;
}

/** What the metadata store needs to write events: none configured, no outbox (and no cost). */
export function outboxOptions(n: NotificationsConfig | undefined): OutboxOptions | undefined {
  if (!n || n.endpoints.length === 0) return undefined;
  const endpoints: OutboxEndpoint[] = n.endpoints.map((e) => ({ name: e.name, accepts: (event) => accepts(e, event) }));
  return { endpoints };
}

/** Whether pulls are recorded: on, and some endpoint takes them. */
export function pullsWanted(n: NotificationsConfig | undefined): boolean {
  return !!n && n.pulls && n.endpoints.some((e) => !e.ignoreActions.includes('pull'));
}
