/**
 * The reference registry's configuration file (CNCF distribution
 * `config.yml`, `version: 0.1`) read as Berth's: every key is either mapped
 * onto a Berth setting or named as ignored, with the reason. `berth serve
 * --config` uses the mapping and warns once about everything ignored;
 * `berth config check FILE` prints it key by key.
 */
import { dirname, basename, join } from 'node:path';
import type { Config } from './config.js';
import { ConfigError, parseBoolean, parseDuration, parseSize } from './config.js';
import { defaultAuth } from './auth/config.js';
import { DEFAULT_NOTIFICATIONS, parseNotifications } from './events/config.js';
import { upstream } from './proxy/config.js';

export interface KeyMapping {
  /** Dotted path of the key in the reference file. */
  key: string;
  /** Its value as shown (secrets redacted). */
  value: string;
  /** What it became in Berth; undefined when ignored. */
  berth?: string;
  /** Why it is ignored (or a note on how it is mapped). */
  note?: string;
}

export interface ReferenceConfigResult {
  mappings: KeyMapping[];
  /** Keys Berth ignores or cannot honour: named in one warning at start. */
  ignored: KeyMapping[];
  /** Where the reference registry's storage is: `berth import`'s default source. */
  referenceRoot: string;
}

type Doc = Record<string, unknown>;

export function isReferenceConfig(doc: Doc): boolean {
  return doc.version !== undefined;
}

const SECRET_KEYS = /(^|\.)(secretkey|accesskey|secret|password|keyid)$/;

/** Every leaf of the document as [dotted key, value]. */
function leaves(value: unknown, prefix = ''): [string, unknown][] {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Doc);
    if (entries.length === 0) return [[prefix, value]];
    return entries.flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k));
  }
  return [[prefix, value]];
}

function show(key: string, value: unknown): string {
  if (SECRET_KEYS.test(key)) return '(secret)';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Keys ignored, by prefix, with why: the rest of the reference's settings Berth has no use for. */
const IGNORED: [string, string][] = [
  ['log.formatter', 'Berth logs JSON lines (pino)'],
  ['log.fields', 'Berth logs its own fields'],
  ['log.hooks', 'no log hooks in Berth'],
  ['log.accesslog', 'the request log follows log.level (info logs requests, warn and above does not)'],
  ['http.net', 'Berth listens on TCP only'],
  ['http.prefix', 'Berth serves /v2/ at the root; put a proxy in front to add a prefix'],
  ['http.host', 'Berth builds URLs from the request (and trusted X-Forwarded-* headers)'],
  ['http.secret', 'upload state is kept in metadata, not in signed URLs'],
  ['http.relativeurls', 'Berth answers relative Location headers'],
  ['http.draintimeout', 'Berth drains connections on SIGTERM by itself'],
  ['http.headers', 'Berth sets its own response headers'],
  ['http.http2', 'Berth speaks HTTP/1.1'],
  ['http.debug', 'Berth serves /metrics and /healthz on its main address'],
  ['http.tls.clientcas', 'client certificates are not supported'],
  ['http.tls.letsencrypt', "ACME is not built in: use a proxy or certbot's files with http.tls.certificate/key"],
  ['http.tls.minimumtls', "Node's TLS defaults apply (TLS 1.2 or newer)"],
  ['http.tls.ciphersuites', "Node's TLS defaults apply"],
  ['storage.cache', 'Berth answers existence from its metadata store, never from a cache (invariant 1)'],
  ['storage.redirect', 'set storage.redirect in a Berth config file to redirect blob GETs on S3'],
  ['storage.maintenance.uploadpurging.enabled', 'Berth always purges abandoned uploads (in GC)'],
  ['storage.maintenance.uploadpurging.interval', 'purging runs with each GC pass'],
  ['storage.maintenance.uploadpurging.dryrun', 'use berth gc --dry-run'],
  ['storage.tag', 'tag concurrency is the metadata store\'s'],
  ['auth.htpasswd.realm', 'the realm of Basic challenges is "berth"'],
  ['auth.token.autoredirect', 'the realm is used as given'],
  ['auth.token.jwks', 'give the issuer\'s JWKS as auth.token.trusted[].jwks in a Berth config file'],
  ['auth.token.signingalgorithms', 'Berth accepts the asymmetric algorithms of the key it is given'],
  ['proxy.exec', 'credential helpers are not run: give proxy.username and proxy.password, or use mirrors[].passwordFile in a Berth config file'],
  ['redis', 'Berth uses no Redis'],
  ['health', 'Berth serves /healthz'],
  ['reporting', 'no error reporting services'],
  ['middleware', 'no middleware: storage redirects are storage.redirect in a Berth config file'],
  ['validation', 'Berth validates manifests itself (foreign layers are never fetched)'],
  ['compatibility', 'schema 1 manifests are refused'],
  ['catalog', 'the catalog pages by the n parameter'],
  ['loglevel', ''],
];

/**
 * Applies a reference config to `config`. Storage drivers other than
 * filesystem and s3, and auth schemes other than htpasswd and token, are
 * errors: running with the wrong storage or without auth would be worse
 * than not starting.
 */
export function applyReferenceConfig(config: Config, doc: Doc, file: string): ReferenceConfigResult {
  if (String(doc.version) !== '0.1') throw new ConfigError(`${file}: reference registry configuration version "${String(doc.version)}" (only 0.1 exists)`);
  const mappings: KeyMapping[] = [];
  const mapped = new Map<string, string>();
  const note = new Map<string, string>();
  const map = (key: string, berth: string, why?: string) => {
    mapped.set(key, berth);
    if (why) note.set(key, why);
  };
  const get = (path: string): unknown => path.split('.').reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Doc)[k] : undefined), doc);
  const str = (path: string): string | undefined => {
    const v = get(path);
    return v === undefined || v === null ? undefined : String(v);
  };

  map('version', '(format: reference registry 0.1)');

  // log
  const level = str('log.level') ?? str('loglevel');
  if (level !== undefined) {
    const berthLevel = level === 'panic' ? 'fatal' : level;
    config.logLevel = berthLevel as Config['logLevel'];
    map(str('log.level') !== undefined ? 'log.level' : 'loglevel', `log.level ${berthLevel}`);
  }

  // http
  const addr = str('http.addr');
  if (addr !== undefined) {
    config.addr = addr.startsWith(':') ? `0.0.0.0${addr}` : addr;
    map('http.addr', `addr ${config.addr}`);
  }
  const cert = str('http.tls.certificate');
  const key = str('http.tls.key');
  if (cert !== undefined || key !== undefined) {
    if (!cert || !key) throw new ConfigError(`${file}: http.tls needs both certificate and key`);
    config.tls = { cert, key, hstsMaxAge: 31_536_000 };
    map('http.tls.certificate', `tls.cert ${cert}`);
    map('http.tls.key', `tls.key ${key}`);
  }

  // storage
  const storage = (get('storage') ?? {}) as Doc;
  const drivers = Object.keys(storage).filter((k) => !['delete', 'maintenance', 'cache', 'redirect', 'tag'].includes(k));
  if (drivers.length !== 1) throw new ConfigError(`${file}: storage needs exactly one driver (filesystem or s3), found ${drivers.join(', ') || 'none'}`);
  const driver = drivers[0]!;
  let referenceRoot: string;
  if (driver === 'filesystem') {
    const root = str('storage.filesystem.rootdirectory') ?? '/var/lib/registry';
    referenceRoot = root;
    // Beside the reference's storage, never inside it: both can stay side by side until the old one is retired.
    config.data = join(dirname(root), `${basename(root)}-berth`);
    map('storage.filesystem.rootdirectory', `import source ${root}; Berth's data directory ${config.data}`, 'run `berth import` first');
    if (get('storage.filesystem.maxthreads') !== undefined) note.set('storage.filesystem.maxthreads', 'Node uses its own thread pool');
  } else if (driver === 's3') {
    const bucket = str('storage.s3.bucket');
    if (!bucket) throw new ConfigError(`${file}: storage.s3.bucket is missing`);
    const root = (str('storage.s3.rootdirectory') ?? '').replace(/^\/+|\/+$/g, '');
    referenceRoot = `s3://${bucket}/${root}`;
    const prefix = root ? `${root}-berth` : 'berth';
    config.storage.url = `s3://${bucket}/${prefix}`;
    map('storage.s3.bucket', `storage s3://${bucket}/${prefix} (import source ${referenceRoot})`);
    map('storage.s3.rootdirectory', `Berth's objects under ${prefix}/, beside the reference's`);
    const region = str('storage.s3.region');
    if (region) {
      config.storage.region = region;
      map('storage.s3.region', `storage.region ${region}`);
    }
    const endpoint = str('storage.s3.regionendpoint');
    if (endpoint) {
      const secure = get('storage.s3.secure') === undefined ? true : parseBoolean(get('storage.s3.secure') as string, 'storage.s3.secure');
      config.storage.endpoint = /^https?:\/\//.test(endpoint) ? endpoint : `${secure ? 'https' : 'http'}://${endpoint}`;
      map('storage.s3.regionendpoint', `storage.endpoint ${config.storage.endpoint}`);
      map('storage.s3.secure', 'the endpoint\'s scheme');
    }
    if (get('storage.s3.forcepathstyle') !== undefined) {
      config.storage.pathStyle = parseBoolean(get('storage.s3.forcepathstyle') as string, 'storage.s3.forcepathstyle');
      map('storage.s3.forcepathstyle', `storage.pathStyle ${config.storage.pathStyle}`);
    }
    const accessKey = str('storage.s3.accesskey');
    const secretKey = str('storage.s3.secretkey');
    if (accessKey && secretKey) {
      // The S3 client reads credentials from the environment; the file's are used unless the environment has its own.
      process.env.AWS_ACCESS_KEY_ID ??= accessKey;
      process.env.AWS_SECRET_ACCESS_KEY ??= secretKey;
      map('storage.s3.accesskey', 'AWS_ACCESS_KEY_ID (unless set in the environment)');
      map('storage.s3.secretkey', 'AWS_SECRET_ACCESS_KEY (unless set in the environment)');
    }
    const chunk = get('storage.s3.chunksize');
    if (chunk !== undefined) {
      const size = parseSize(chunk as string, 'storage.s3.chunksize');
      if (size >= 5 * 1024 * 1024) {
        config.storage.partSize = size;
        map('storage.s3.chunksize', `storage.partSize ${size}`);
      }
    }
    map('storage.s3.v4auth', 'always SigV4');
  } else {
    throw new ConfigError(`${file}: storage driver "${driver}" is not supported by Berth (filesystem and s3 are)`);
  }
  // The reference refuses deletes unless storage.delete.enabled: keep that default.
  const deletes = get('storage.delete.enabled');
  config.deletes = deletes === undefined ? false : parseBoolean(deletes as string, 'storage.delete.enabled');
  map('storage.delete.enabled', `deletes ${config.deletes}`);
  const readonly = get('storage.maintenance.readonly.enabled');
  if (readonly !== undefined) {
    config.readOnly = parseBoolean(readonly as string, 'storage.maintenance.readonly.enabled');
    map('storage.maintenance.readonly.enabled', `readOnly ${config.readOnly}`);
  }
  const age = get('storage.maintenance.uploadpurging.age');
  if (age !== undefined) {
    config.gc.uploadTimeout = parseGoDuration(age as string, 'storage.maintenance.uploadpurging.age');
    map('storage.maintenance.uploadpurging.age', `gc.uploadTimeout ${age}`);
  }

  // auth
  const auth = (get('auth') ?? {}) as Doc;
  for (const scheme of Object.keys(auth)) {
    if (scheme !== 'htpasswd' && scheme !== 'token') throw new ConfigError(`${file}: auth.${scheme} is not supported by Berth (htpasswd and token are)`);
  }
  const htpasswd = str('auth.htpasswd.path');
  if (htpasswd) {
    config.auth ??= defaultAuth();
    config.auth.htpasswd = htpasswd;
    map('auth.htpasswd.path', `auth.htpasswd ${htpasswd} (every user may pull, push and delete, as in the reference)`);
  }
  if (auth.token !== undefined) {
    const issuer = str('auth.token.issuer');
    const bundle = str('auth.token.rootcertbundle');
    if (!issuer || !bundle) throw new ConfigError(`${file}: auth.token needs issuer and rootcertbundle`);
    config.auth ??= defaultAuth();
    config.auth.token.trusted.push({ issuer, publicKey: bundle });
    const realm = str('auth.token.realm');
    if (realm) config.auth.token.realm = realm;
    const service = str('auth.token.service');
    if (service) config.auth.token.service = service;
    // The realm is the external token service: Berth's own endpoint would be a second one.
    if (!htpasswd) config.auth.token.enabled = false;
    map('auth.token.issuer', `auth.token.trusted[].issuer ${issuer}`);
    map('auth.token.rootcertbundle', `auth.token.trusted[].publicKey ${bundle}`, 'its first certificate verifies tokens');
    map('auth.token.realm', `auth.token.realm ${realm}`);
    map('auth.token.service', `auth.token.service ${service}`);
  }

  // notifications: Berth's section is the reference's (src/events/config.ts), delivered from a durable outbox.
  if (doc.notifications !== undefined && doc.notifications !== null) {
    const n = (config.notifications ??= structuredClone(DEFAULT_NOTIFICATIONS));
    parseNotifications(doc.notifications, n);
    map('notifications.endpoints', `notifications.endpoints ${n.endpoints.map((e) => e.name).join(', ') || '(all disabled)'}`);
    map('notifications.events.includereferences', 'notifications (manifest events always carry references)');
  }

  const proxyTtl = applyProxy(config, { get, str, map, note: (key, why) => note.set(key, why) }, file);

  for (const [key, value] of leaves(doc)) {
    const entry: KeyMapping = { key, value: show(key, value) };
    const exact = mapped.get(key);
    if (exact !== undefined) {
      entry.berth = exact;
      if (note.has(key)) entry.note = note.get(key);
    } else if (note.has(key)) {
      entry.note = note.get(key);
    } else {
      const rule = IGNORED.find(([prefix]) => key === prefix || key.startsWith(`${prefix}.`));
      entry.note = rule?.[1] || (rule ? 'superseded by log.level' : 'not a setting Berth knows');
    }
    mappings.push(entry);
  }
  if (proxyTtl) mappings.push(proxyTtl);
  if (deletes === undefined) mappings.push({ key: 'storage.delete.enabled', value: '(not set)', berth: 'deletes false', note: "the reference's default" });
  return { mappings, ignored: mappings.filter((m) => m.berth === undefined), referenceRoot };
}

/** Reading the reference document, and recording what each key became. */
interface ReferenceDoc {
  get(path: string): unknown;
  str(path: string): string | undefined;
  map(key: string, berth: string, why?: string): void;
  /** A note on a key that stays ignored. */
  note(key: string, why: string): void;
}

/** The reference's cache expiry when `proxy.ttl` is not set (distribution 2.x hard-codes it; 3.x defaults to it). */
const REFERENCE_PROXY_TTL = 168 * 3_600_000;

const TTL_NOTE =
  'the reference deletes cached content ttl after it was cached, even while it is pulled; ' +
  'Berth untags a cached tag not pulled for this long, then GC collects what only it held after gc.manifestGrace/gc.blobGrace, ' +
  'so content in use is never evicted and fetched again';

/**
 * `proxy`: the reference in proxy mode caches one upstream for every name,
 * which is Berth's default mirror (src/proxy/, docs/pull-through-cache.md).
 * Returns the `(not set)` line for `proxy.ttl` when the reference's default
 * was applied, so `berth config check` shows it.
 */
function applyProxy(config: Config, doc: ReferenceDoc, file: string): KeyMapping | undefined {
  const { get, str, map } = doc;
  const section = get('proxy');
  if (section === undefined || section === null) return undefined;
  const remote = str('proxy.remoteurl');
  if (!remote) {
    // As the reference: a proxy section without remoteurl makes no cache.
    for (const [key] of leaves(section, 'proxy')) doc.note(key, 'no proxy.remoteurl: the reference is no cache without it, and neither is Berth');
    return undefined;
  }
  const username = str('proxy.username');
  // Inline in the reference's file, as the operator already keeps it: used as is, shown nowhere (SECRET_KEYS).
  const password = str('proxy.password');
  if (password !== undefined && username === undefined) throw new ConfigError(`${file}: proxy.password needs proxy.username`);
  const ttl = get('proxy.ttl');
  const expireAfter = ttl === undefined || ttl === null ? REFERENCE_PROXY_TTL : parseGoDuration(ttl as string, 'proxy.ttl');
  let mirror;
  try {
    mirror = upstream(remote, { ...(username !== undefined ? { username, password: password ?? '' } : {}), expireAfter });
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${file}: proxy.remoteurl: ${e.message}`);
    throw e;
  }
  config.mirrors = [mirror];
  map(
    'proxy.remoteurl',
    `mirrors[0].url ${mirror.url} (the default mirror: every name is cached from it; pushes are refused)`,
    `a cached tag is re-checked upstream after mirrors[].tagTtl (${mirror.tagTtl / 60_000}m), where the reference asks upstream on every pull by tag`,
  );
  if (username !== undefined) map('proxy.username', 'mirrors[0].username');
  if (password !== undefined) map('proxy.password', 'mirrors[0] password (inline; a Berth config file would use passwordFile)');
  const berthTtl = `mirrors[0].expireAfter ${expireAfter === 0 ? '0 (never)' : `${expireAfter / 3_600_000}h`}`;
  if (ttl === undefined || ttl === null) return { key: 'proxy.ttl', value: '(not set)', berth: berthTtl, note: `the reference's default, 168h; ${TTL_NOTE}` };
  map('proxy.ttl', berthTtl, expireAfter === 0 ? 'no expiry, in both' : TTL_NOTE);
  return undefined;
}

/** Go durations as the reference writes them: 168h, 24h0m0s, 90m, 10s. */
function parseGoDuration(value: string | number, what: string): number {
  if (typeof value === 'number') return value / 1e6; // nanoseconds, as Go would read a bare number
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value.trim()) return parseDuration(value, what);
  const unit = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 } as const;
  return parts.reduce((ms, p) => ms + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}
