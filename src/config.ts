/**
 * Configuration: defaults, then a YAML file, then environment variables,
 * then command-line flags; each later source overrides the earlier ones.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { applySecurityFile, applySecurityOverrides, type SecurityConfig, type SecurityOverrides } from './auth/config.js';
import { ConfigError, parseAddr, parseBoolean, parseDuration } from './config-values.js';
import { LOG_LEVELS, type LogLevel } from './log.js';
import { parsePolicies, type PolicyRule } from './policy/config.js';
import { DEFAULT_NOTIFICATIONS, notifyEndpoint, parseNotifications, type NotificationsConfig } from './events/config.js';
import { checkPrefixes, mirrorFromFlag, parseMirrors, type UpstreamConfig } from './proxy/config.js';
import { applyReferenceConfig, isReferenceConfig, type ReferenceConfigResult } from './reference-config.js';

export { ConfigError, parseAddr, parseBoolean, parseDuration };

export interface GcConfig {
  /** Run the background collector inside `berth serve`. */
  enabled: boolean;
  /** Time between background runs, ms. */
  interval: number;
  /** How long an unreferenced blob is kept after it was last uploaded, mounted or said to exist, ms. */
  blobGrace: number;
  /** How long a manifest without tag or parent is kept, ms. */
  manifestGrace: number;
  /** Whether untagged manifests are collected at all. */
  untagged: boolean;
  /** Upload sessions idle for longer than this are purged, ms. */
  uploadTimeout: number;
}

export interface StorageConfig {
  /** Undefined: blobs in the data directory; `s3://BUCKET/PREFIX`: an S3 bucket. */
  url?: string;
  /** S3 endpoint for S3-compatible stores (MinIO, Swift, …); undefined: AWS. */
  endpoint?: string;
  /** Undefined: from AWS_REGION or the AWS config, else us-east-1. */
  region?: string;
  /** Path-style addressing; undefined: on when an endpoint is set. */
  pathStyle?: boolean;
  /** Multipart part size in bytes (at least 5 MiB). */
  partSize: number;
  /** Answer blob GETs with a 307 redirect to a pre-signed URL (bytes flow from the object store). */
  redirect: boolean;
}

export interface Config extends SecurityConfig {
  /** HOST:PORT to listen on. */
  addr: string;
  /** Data directory: the SQLite database and the blobs. */
  data: string;
  /** Metadata store: a postgres:// URL; undefined means the SQLite file in the data directory. */
  metadata?: string;
  logLevel: LogLevel;
  /** Where the audit log goes (a file path, or `stdout`/`stderr`); undefined: no audit log. */
  auditLog?: string;
  /** Whether DELETE of manifests, tags and blobs is allowed. */
  deletes: boolean;
  /** Serve the web console under /ui (src/console/). */
  ui: boolean;
  gc: GcConfig;
  storage: StorageConfig;
  /** Retention, quota and immutable-tag rules (src/policy/); reloaded from the config file on SIGHUP. */
  policies: PolicyRule[];
  /** The config file read, if any (a reload reads it again). */
  configFile?: string;
  /** Upstream registries of the pull-through cache (`mirrors:`, `--proxy`); empty: none. */
  mirrors: UpstreamConfig[];
  /**
   * Read-only mode (maintenance, migration): pulls work, every write is
   * refused as the reference registry refuses it, and GC does not run.
   */
  readOnly: boolean;
  /** Set when the config file was the reference registry's (version 0.1): what was mapped and ignored. */
  reference?: ReferenceConfigResult & { file: string };
  /** Webhook endpoints for registry events (src/events/); none: no events at all. */
  notifications?: NotificationsConfig;
}

export const DEFAULT_CONFIG: Config = {
  addr: '0.0.0.0:5000',
  data: './data',
  logLevel: 'info',
  deletes: true,
  readOnly: false,
  ui: true,
  gc: {
    enabled: true,
    interval: 10 * 60_000,
    blobGrace: 60 * 60_000,
    manifestGrace: 60 * 60_000,
    untagged: true,
    uploadTimeout: 24 * 60 * 60_000,
  },
  // Security (src/auth/config.ts): auth and TLS are off unless configured.
  trustedProxies: [],
  limits: {
    maxHeaderBytes: 16 * 1024,
    uploadsPerClient: 16,
    headerTimeout: 30_000,
    idleTimeout: 60_000,
    connectionsPerClient: 128,
    uploadSessionsPerUser: 1000,
  },
  storage: { partSize: 16 * 1024 * 1024, redirect: false },
  policies: [],
  mirrors: [],
};

function checkLogLevel(level: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new ConfigError(`invalid log level "${level}": one of ${LOG_LEVELS.join(', ')}`);
  return level as LogLevel;
}

/** The metadata store's location: only PostgreSQL URLs (SQLite lives in the data directory). */
function checkMetadata(value: string): string {
  if (!/^postgres(ql)?:\/\/[^\s]+$/i.test(value)) {
    throw new ConfigError('invalid metadata store: use a postgres://USER@HOST:PORT/DB URL (or leave it unset for SQLite in the data directory)');
  }
  return value;
}

/** Settings given on the command line; undefined means "not given". */
export interface ConfigOverrides extends SecurityOverrides {
  config?: string;
  addr?: string;
  data?: string;
  metadata?: string;
  logLevel?: string;
  deletes?: boolean;
  readOnly?: boolean;
  storage?: string;
  s3Endpoint?: string;
  auditLog?: string;
  headerTimeout?: string;
  idleTimeout?: string;
  connectionsPerClient?: string;
  uploadSessionsPerUser?: string;
  /** `--notify URL`, repeatable: endpoints with the default settings. */
  notify?: string[];
  /** `--no-notify-pulls`: record no pull events. */
  notifyPulls?: boolean;
  /** `--proxy URL`: mirror this upstream (every name, unchanged). */
  proxy?: string;
}

/** A whole number of a flag or variable (limits): 0 and up. */
function count(value: string, what: string): number {
  if (!/^\d+$/.test(value.trim())) throw new ConfigError(`invalid ${what} "${value}": use a whole number (0 = unlimited)`);
  return Number(value);
}

/** The time and connection limits from BERTH_* variables, then flags. */
function applyLimitOverrides(config: Config, flags: ConfigOverrides, env: NodeJS.ProcessEnv): void {
  const header = flags.headerTimeout ?? env.BERTH_HEADER_TIMEOUT;
  const idle = flags.idleTimeout ?? env.BERTH_IDLE_TIMEOUT;
  const connections = flags.connectionsPerClient ?? env.BERTH_CONNECTIONS_PER_CLIENT;
  const sessions = flags.uploadSessionsPerUser ?? env.BERTH_UPLOAD_SESSIONS_PER_USER;
  if (header !== undefined) config.limits.headerTimeout = parseDuration(header, 'header timeout');
  if (idle !== undefined) config.limits.idleTimeout = parseDuration(idle, 'idle timeout');
  if (connections !== undefined) config.limits.connectionsPerClient = count(connections, 'connections per client');
  if (sessions !== undefined) config.limits.uploadSessionsPerUser = count(sessions, 'upload sessions per user');
}

export function loadConfig(flags: ConfigOverrides, env: NodeJS.ProcessEnv = process.env): Config {
  const config: Config = structuredClone(DEFAULT_CONFIG);
  const file = flags.config ?? env.BERTH_CONFIG;
  if (file) {
    applyFile(config, file, env);
    config.configFile = resolve(file);
  }
  if (env.BERTH_ADDR) config.addr = env.BERTH_ADDR;
  if (env.BERTH_DATA) config.data = env.BERTH_DATA;
  if (env.BERTH_METADATA) config.metadata = checkMetadata(env.BERTH_METADATA);
  if (env.BERTH_LOG_LEVEL) config.logLevel = checkLogLevel(env.BERTH_LOG_LEVEL);
  if (env.BERTH_DELETES) config.deletes = parseBoolean(env.BERTH_DELETES, 'BERTH_DELETES');
  if (env.BERTH_READ_ONLY) config.readOnly = parseBoolean(env.BERTH_READ_ONLY, 'BERTH_READ_ONLY');
  if (env.BERTH_UI) config.ui = parseBoolean(env.BERTH_UI, 'BERTH_UI');
  if (env.BERTH_GC_ENABLED) config.gc.enabled = parseBoolean(env.BERTH_GC_ENABLED, 'BERTH_GC_ENABLED');
  if (env.BERTH_STORAGE) config.storage.url = env.BERTH_STORAGE;
  const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  if (endpoint) config.storage.endpoint = endpoint;
  if (flags.addr) config.addr = flags.addr;
  if (flags.data) config.data = flags.data;
  if (flags.metadata) config.metadata = checkMetadata(flags.metadata);
  if (flags.logLevel) config.logLevel = checkLogLevel(flags.logLevel);
  if (flags.deletes !== undefined) config.deletes = flags.deletes;
  if (flags.readOnly) config.readOnly = true;
  applySecurityOverrides(config, flags, env);
  applyLimitOverrides(config, flags, env);
  const audit = flags.auditLog ?? env.BERTH_AUDIT_LOG;
  if (audit) config.auditLog = audit;
  const proxy = flags.proxy ?? env.BERTH_PROXY;
  if (proxy) {
    // The flag's upstream replaces a default mirror of the file; prefixed ones stay.
    config.mirrors = [...config.mirrors.filter((m) => m.prefix !== ''), mirrorFromFlag(proxy, env)];
    checkPrefixes(config.mirrors);
  }
  if (flags.storage) config.storage.url = flags.storage;
  if (flags.s3Endpoint) config.storage.endpoint = flags.s3Endpoint;
  applyNotifyOverrides(config, flags);
  parseAddr(config.addr);
  checkStorage(config.storage);
  checkRedirect(config);
  config.data = resolve(config.data);
  return config;
}

/** `--notify URL` (repeatable) adds endpoints to those of the config file; `--no-notify-pulls` turns pull events off. */
function applyNotifyOverrides(config: Config, flags: ConfigOverrides): void {
  for (const url of flags.notify ?? []) {
    const n = (config.notifications ??= structuredClone(DEFAULT_NOTIFICATIONS));
    const e = notifyEndpoint(url);
    if (!n.endpoints.some((x) => x.name === e.name)) n.endpoints.push(e);
  }
  if (flags.notifyPulls === false && config.notifications) config.notifications.pulls = false;
}

/** The YAML parser, loaded only when there is a config file to read (~9 MiB of memory otherwise spent for nothing). */
function loadYaml(): typeof import('yaml') {
  return createRequire(import.meta.url)('yaml') as typeof import('yaml');
}

function applyFile(config: Config, file: string, env: NodeJS.ProcessEnv = process.env): void {
  let doc: unknown;
  try {
    doc = loadYaml().parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${file} must be a YAML mapping`);
  const d = doc as Record<string, unknown>;
  if (isReferenceConfig(d)) {
    config.reference = { ...applyReferenceConfig(config, d, file), file };
    return;
  }
  const known = new Set(['addr', 'data', 'metadata', 'storage', 'log', 'deletes', 'readOnly', 'gc', 'auth', 'tls', 'proxy', 'limits', 'ui', 'mirrors', 'notifications', 'policies']);
  for (const key of Object.keys(d)) if (!known.has(key)) throw new ConfigError(`config file ${file}: unknown setting "${key}"`);
  if (d.addr !== undefined) config.addr = String(d.addr);
  if (d.data !== undefined) config.data = String(d.data);
  if (d.metadata !== undefined) config.metadata = checkMetadata(String(d.metadata));
  if (d.deletes !== undefined) config.deletes = parseBoolean(d.deletes as string, 'deletes');
  if (d.readOnly !== undefined) config.readOnly = parseBoolean(d.readOnly as string, 'readOnly');
  if (d.ui !== undefined) config.ui = parseBoolean(d.ui as string, 'ui');
  const log = d.log as Record<string, unknown> | undefined;
  if (log?.level !== undefined) config.logLevel = checkLogLevel(String(log.level));
  if (log?.audit !== undefined && log.audit !== null && log.audit !== '') config.auditLog = String(log.audit);
  const gc = d.gc as Record<string, unknown> | undefined;
  if (gc) {
    if (gc.enabled !== undefined) config.gc.enabled = parseBoolean(gc.enabled as string, 'gc.enabled');
    if (gc.untagged !== undefined) config.gc.untagged = parseBoolean(gc.untagged as string, 'gc.untagged');
    if (gc.interval !== undefined) config.gc.interval = parseDuration(gc.interval as string, 'gc.interval');
    if (gc.blobGrace !== undefined) config.gc.blobGrace = parseDuration(gc.blobGrace as string, 'gc.blobGrace');
    if (gc.manifestGrace !== undefined) config.gc.manifestGrace = parseDuration(gc.manifestGrace as string, 'gc.manifestGrace');
    if (gc.uploadTimeout !== undefined) config.gc.uploadTimeout = parseDuration(gc.uploadTimeout as string, 'gc.uploadTimeout');
  }
  if (typeof d.storage === 'string') config.storage.url = d.storage;
  else if (d.storage !== undefined && d.storage !== null) {
    const st = d.storage as Record<string, unknown>;
    if (st.url !== undefined) config.storage.url = String(st.url);
    if (st.endpoint !== undefined) config.storage.endpoint = String(st.endpoint);
    if (st.region !== undefined) config.storage.region = String(st.region);
    if (st.pathStyle !== undefined) config.storage.pathStyle = parseBoolean(st.pathStyle as string, 'storage.pathStyle');
    if (st.partSize !== undefined) config.storage.partSize = parseSize(st.partSize as string, 'storage.partSize');
    if (st.redirect !== undefined) config.storage.redirect = parseBoolean(st.redirect as string, 'storage.redirect');
    // The reference registry's spelling, accepted here too.
    const readonly = (st.maintenance as { readonly?: { enabled?: unknown } } | undefined)?.readonly?.enabled;
    if (readonly !== undefined) config.readOnly = parseBoolean(readonly as string, 'storage.maintenance.readonly.enabled');
  }
  applySecurityFile(config, d);
  try {
    config.policies = parsePolicies(d.policies);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`config file ${file}: ${e.message}`);
    throw e;
  }
  if (d.notifications !== undefined && d.notifications !== null) parseNotifications(d.notifications, (config.notifications ??= structuredClone(DEFAULT_NOTIFICATIONS)));
  if (d.mirrors !== undefined && d.mirrors !== null) config.mirrors = parseMirrors(d.mirrors, env);
}

/** Parses `16MiB`, `8M`, `5242880` (bytes) into bytes. */
export function parseSize(value: string | number, what = 'size'): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(value.trim());
  if (!m) throw new ConfigError(`invalid ${what} "${value}": use bytes or a number with KiB, MiB or GiB (e.g. 16MiB)`);
  const unit = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? 'b')[0]!.toLowerCase() as 'b'];
  return Number(m[1]) * unit;
}

/** The bucket and key prefix of an `s3://BUCKET/PREFIX` storage URL. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new ConfigError(`invalid storage "${url}": use s3://BUCKET/PREFIX, or leave it unset for the data directory`);
  return { bucket: m[1]!, prefix: m[2] ?? '' };
}

/** The longest a pre-signed blob URL stays valid, seconds. */
const REDIRECT_EXPIRY_MAX = 15 * 60;

/**
 * How long a redirected pull's pre-signed URL stays valid: at most the blob
 * grace period. The GET that hands out the URL renews the blob's grace, so
 * GC keeps its bytes at least that long, and the URL never outlives them.
 */
export function redirectExpiry(config: Config): number {
  return Math.min(REDIRECT_EXPIRY_MAX, Math.floor(config.gc.blobGrace / 1000));
}

function checkRedirect(config: Config): void {
  if (config.storage.redirect && redirectExpiry(config) < 1) {
    throw new ConfigError(
      'storage.redirect needs gc.blobGrace of at least 1s: a pre-signed URL is valid for at most the blob grace period, so that GC never deletes bytes a URL still points at',
    );
  }
}

function checkStorage(storage: StorageConfig): void {
  if (storage.url === undefined || storage.url === '') {
    storage.url = undefined;
    if (storage.redirect) throw new ConfigError('storage.redirect needs S3 storage (storage: s3://BUCKET/PREFIX)');
    return;
  }
  parseS3Url(storage.url);
  if (storage.partSize < 5 * 1024 * 1024) throw new ConfigError(`storage.partSize must be at least 5MiB (S3's smallest part)`);
}
