/**
 * The security settings: authentication and authorization (`auth:`), TLS
 * (`tls:`), trusted proxies (`proxy:`) and request limits (`limits:`), read
 * from the YAML file, BERTH_* environment variables and flags. Secrets (the
 * token signing key, TLS keys, password hashes) are only ever named by file
 * or given in the environment, never on the command line.
 */
import { availableParallelism } from 'node:os';
import { ConfigError, parseAddr, parseBoolean, parseDuration } from '../config-values.js';

export type Action = 'pull' | 'push' | 'delete';
export const ACTIONS: readonly Action[] = ['pull', 'push', 'delete'];

export interface RuleConfig {
  /** Repository name patterns: `*` matches within one path component, `**` across them. */
  repositories: string[];
  users: string[];
  groups: string[];
  /** Whether requests without credentials get these actions too. */
  anonymous: boolean;
  actions: Action[];
}

export interface TrustedIssuerConfig {
  issuer: string;
  /** A PEM file with the issuer's public key or certificate. */
  publicKey?: string;
  /** A JWKS: https URL or file path. */
  jwks?: string;
}

export interface TokenConfig {
  /** Berth's own token endpoint (/auth/token). */
  enabled: boolean;
  /**
   * Realm advertised in challenges. Unset: loopback clients are sent to
   * <scheme>://<Host>/auth/token of their request, other clients get a Basic
   * challenge (a realm built from a request header could send their
   * credentials elsewhere).
   */
  realm?: string;
  /** The `service` (and token audience). */
  service: string;
  /** `iss` of the tokens Berth signs. */
  issuer: string;
  /** PEM file with the signing key (EC P-256/P-384, RSA or Ed25519); default <data>/auth/token-signing-key.pem, generated. */
  key?: string;
  /** Lifetime of issued tokens, ms. */
  ttl: number;
  /** External token services whose tokens are accepted. */
  trusted: TrustedIssuerConfig[];
}

export interface AuthConfig {
  htpasswd?: string;
  groups: Record<string, string[]>;
  rules: RuleConfig[];
  admins: { users: string[]; groups: string[] };
  /** Who may read /metrics: admins (default) or anyone. */
  metrics: 'admin' | 'public';
  token: TokenConfig;
  /** Login attempts per (client address, user) before 429; each decays with `failedLoginDecay`. */
  failedLogins: number;
  /** Login attempts per client address (IPv6: per /64), whatever the user names, before 429. */
  failedLoginsPerAddress: number;
  failedLoginDecay: number;
  /** Password checks (bcrypt) running at once. */
  passwordChecks: number;
  /** Password checks waiting for a slot; beyond, logins get 429 (Retry-After: 1). */
  passwordCheckQueue: number;
}

export interface TlsConfig {
  cert: string;
  key: string;
  /** An extra plain-HTTP listener, HOST:PORT on a loopback address (passwords must not cross a network in clear). */
  plainAddr?: string;
  /** Strict-Transport-Security max-age in seconds; 0 turns the header off. */
  hstsMaxAge: number;
}

export interface LimitsConfig {
  /** Largest request head (request line + headers), bytes. */
  maxHeaderBytes: number;
  /** Concurrent requests carrying upload bodies per client (address + user); 0 = unlimited. */
  uploadsPerClient: number;
  /** Time to receive a request head, ms (slowloris); 0 = none. */
  headerTimeout: number;
  /** Time a request body may go without a byte, ms; 0 = none. There is no total request time. */
  idleTimeout: number;
  /** Open connections per client address (IPv6: per /64), trusted proxies exempt; 0 = unlimited. */
  connectionsPerClient: number;
  /** Open upload sessions per user, with auth on (anonymous pushers share one count); 0 = unlimited. */
  uploadSessionsPerUser: number;
}

export interface SecurityConfig {
  auth?: AuthConfig;
  tls?: TlsConfig;
  /** Addresses or CIDRs whose X-Forwarded-For/-Proto/-Host are believed. */
  trustedProxies: string[];
  limits: LimitsConfig;
}

/** Node's own limit on a request head, which Berth keeps by default. */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

/** The rule `berth serve --htpasswd FILE` starts with: every user may do everything, anonymous nobody. */
export const QUICK_START_RULE: RuleConfig = { repositories: ['**'], users: ['*'], groups: [], anonymous: false, actions: ['pull', 'push', 'delete'] };

export function defaultAuth(): AuthConfig {
  return {
    groups: {},
    rules: [],
    admins: { users: [], groups: [] },
    metrics: 'admin',
    token: { enabled: true, service: 'berth', issuer: 'berth', ttl: 5 * 60_000, trusted: [] },
    failedLogins: 10,
    failedLoginsPerAddress: 30,
    failedLoginDecay: 60_000,
    // bcrypt takes a core per check: leave one to the event loop.
    passwordChecks: Math.max(1, Math.min(4, availableParallelism() - 1)),
    passwordCheckQueue: 16,
  };
}

type Doc = Record<string, unknown>;

function mapping(value: unknown, what: string): Doc {
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${what} must be a mapping`);
  return value as Doc;
}

function onlyKeys(d: Doc, what: string, keys: string[]): void {
  for (const k of Object.keys(d)) if (!keys.includes(k)) throw new ConfigError(`${what}: unknown setting "${k}"`);
}

function strings(value: unknown, what: string): string[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  for (const v of list) if (typeof v !== 'string' || v === '') throw new ConfigError(`${what} must be a list of names`);
  return list as string[];
}

function actions(value: unknown, what: string): Action[] {
  const out = new Set<Action>();
  for (const a of strings(value, what)) {
    if (a === '*') ACTIONS.forEach((x) => out.add(x));
    else if ((ACTIONS as string[]).includes(a)) out.add(a as Action);
    else throw new ConfigError(`${what}: unknown action "${a}" (pull, push, delete or *)`);
  }
  if (out.size === 0) throw new ConfigError(`${what}: a rule needs at least one action`);
  return [...out];
}

function positiveInt(value: unknown, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`${what} must be a whole number`);
  return n;
}

function isLoopbackHost(host: string): boolean {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === '::1' || host === 'localhost';
}

/**
 * The plain listener beside TLS: on loopback only. Credentials sent to it
 * cross no network; elsewhere they would travel in clear, which no setting
 * should make easy (a TLS-terminating proxy on another host talks to the
 * TLS listener, or runs Berth without `tls:`).
 */
function loopbackAddr(addr: string): string {
  if (!isLoopbackHost(parseAddr(addr).host)) throw new ConfigError(`tls.plainAddr "${addr}" must be a loopback address (127.0.0.1:PORT or [::1]:PORT): passwords sent to it would cross the network in clear`);
  return addr;
}

/** A JWKS location: a file, or an https URL (http only on loopback, for tests). */
function jwksLocation(value: string, what: string): string {
  if (/^https:\/\//i.test(value)) return value;
  if (/^http:\/\//i.test(value)) {
    let host = '';
    try {
      host = new URL(value).hostname.replace(/^\[|\]$/g, '');
    } catch {
      throw new ConfigError(`${what}: invalid URL "${value}"`);
    }
    if (isLoopbackHost(host)) return value;
    throw new ConfigError(`${what}: a JWKS must be fetched over https (anyone on the path could swap the keys of an http one)`);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) throw new ConfigError(`${what}: a JWKS is an https URL or a file path`);
  return value;
}

/** Applies the `auth:`, `tls:`, `proxy:` and `limits:` sections of a config file. */
export function applySecurityFile(config: SecurityConfig, d: Doc): void {
  if (d.auth !== undefined) config.auth = parseAuth(mapping(d.auth, 'auth'), config.auth ?? defaultAuth());
  if (d.tls !== undefined) {
    const t = mapping(d.tls, 'tls');
    onlyKeys(t, 'tls', ['cert', 'key', 'plainAddr', 'hstsMaxAge']);
    if (typeof t.cert !== 'string' || typeof t.key !== 'string') throw new ConfigError('tls needs cert and key (PEM file paths)');
    config.tls = { cert: t.cert, key: t.key, plainAddr: t.plainAddr === undefined ? undefined : loopbackAddr(String(t.plainAddr)), hstsMaxAge: t.hstsMaxAge === undefined ? 31_536_000 : positiveInt(t.hstsMaxAge, 'tls.hstsMaxAge') };
  }
  if (d.proxy !== undefined) {
    const p = mapping(d.proxy, 'proxy');
    onlyKeys(p, 'proxy', ['trusted']);
    config.trustedProxies = strings(p.trusted, 'proxy.trusted');
  }
  if (d.limits !== undefined) {
    const l = mapping(d.limits, 'limits');
    onlyKeys(l, 'limits', ['maxHeaderBytes', 'uploadsPerClient', 'headerTimeout', 'idleTimeout', 'connectionsPerClient', 'uploadSessionsPerUser']);
    if (l.maxHeaderBytes !== undefined) config.limits.maxHeaderBytes = Math.max(1024, positiveInt(l.maxHeaderBytes, 'limits.maxHeaderBytes'));
    if (l.uploadsPerClient !== undefined) config.limits.uploadsPerClient = positiveInt(l.uploadsPerClient, 'limits.uploadsPerClient');
    if (l.headerTimeout !== undefined) config.limits.headerTimeout = parseDuration(l.headerTimeout as string, 'limits.headerTimeout');
    if (l.idleTimeout !== undefined) config.limits.idleTimeout = parseDuration(l.idleTimeout as string, 'limits.idleTimeout');
    if (l.connectionsPerClient !== undefined) config.limits.connectionsPerClient = positiveInt(l.connectionsPerClient, 'limits.connectionsPerClient');
    if (l.uploadSessionsPerUser !== undefined) config.limits.uploadSessionsPerUser = positiveInt(l.uploadSessionsPerUser, 'limits.uploadSessionsPerUser');
  }
}

function parseAuth(a: Doc, auth: AuthConfig): AuthConfig {
  onlyKeys(a, 'auth', ['htpasswd', 'groups', 'rules', 'admins', 'metrics', 'token', 'failedLogins', 'failedLoginsPerAddress', 'failedLoginDecay', 'passwordChecks', 'passwordCheckQueue']);
  if (a.htpasswd !== undefined) auth.htpasswd = String(a.htpasswd);
  const groups = mapping(a.groups, 'auth.groups');
  for (const [name, members] of Object.entries(groups)) auth.groups[name] = strings(members, `auth.groups.${name}`);
  if (a.rules !== undefined) {
    if (!Array.isArray(a.rules)) throw new ConfigError('auth.rules must be a list');
    auth.rules = a.rules.map((r, i) => {
      const what = `auth.rules[${i}]`;
      const rule = mapping(r, what);
      onlyKeys(rule, what, ['repositories', 'users', 'groups', 'anonymous', 'actions']);
      const repositories = strings(rule.repositories, `${what}.repositories`);
      if (repositories.length === 0) throw new ConfigError(`${what}: a rule needs repositories (e.g. "team-a/*" or "**")`);
      const parsed: RuleConfig = {
        repositories,
        users: strings(rule.users, `${what}.users`),
        groups: strings(rule.groups, `${what}.groups`),
        anonymous: rule.anonymous === undefined ? false : parseBoolean(rule.anonymous as string, `${what}.anonymous`),
        actions: actions(rule.actions, `${what}.actions`),
      };
      for (const g of parsed.groups) if (!(g in auth.groups)) throw new ConfigError(`${what}: unknown group "${g}"`);
      return parsed;
    });
  }
  if (a.admins !== undefined) {
    const ad = mapping(a.admins, 'auth.admins');
    onlyKeys(ad, 'auth.admins', ['users', 'groups']);
    auth.admins = { users: strings(ad.users, 'auth.admins.users'), groups: strings(ad.groups, 'auth.admins.groups') };
    for (const g of auth.admins.groups) if (!(g in auth.groups)) throw new ConfigError(`auth.admins: unknown group "${g}"`);
  }
  if (a.metrics !== undefined) {
    if (a.metrics !== 'admin' && a.metrics !== 'public') throw new ConfigError('auth.metrics must be admin or public');
    auth.metrics = a.metrics;
  }
  if (a.failedLogins !== undefined) auth.failedLogins = Math.max(1, positiveInt(a.failedLogins, 'auth.failedLogins'));
  if (a.failedLoginsPerAddress !== undefined) auth.failedLoginsPerAddress = Math.max(1, positiveInt(a.failedLoginsPerAddress, 'auth.failedLoginsPerAddress'));
  if (a.passwordChecks !== undefined) auth.passwordChecks = Math.max(1, positiveInt(a.passwordChecks, 'auth.passwordChecks'));
  if (a.passwordCheckQueue !== undefined) auth.passwordCheckQueue = positiveInt(a.passwordCheckQueue, 'auth.passwordCheckQueue');
  if (a.failedLoginDecay !== undefined) auth.failedLoginDecay = Math.max(1000, parseDuration(a.failedLoginDecay as string, 'auth.failedLoginDecay'));
  if (a.token !== undefined) {
    const t = mapping(a.token, 'auth.token');
    onlyKeys(t, 'auth.token', ['enabled', 'realm', 'service', 'issuer', 'key', 'ttl', 'trusted']);
    if (t.enabled !== undefined) auth.token.enabled = parseBoolean(t.enabled as string, 'auth.token.enabled');
    if (t.realm !== undefined) auth.token.realm = String(t.realm);
    if (t.service !== undefined) auth.token.service = String(t.service);
    if (t.issuer !== undefined) auth.token.issuer = String(t.issuer);
    if (t.key !== undefined) auth.token.key = String(t.key);
    if (t.ttl !== undefined) auth.token.ttl = parseDuration(t.ttl as string, 'auth.token.ttl');
    if (t.trusted !== undefined) {
      if (!Array.isArray(t.trusted)) throw new ConfigError('auth.token.trusted must be a list');
      auth.token.trusted = t.trusted.map((x, i) => {
        const what = `auth.token.trusted[${i}]`;
        const e = mapping(x, what);
        onlyKeys(e, what, ['issuer', 'publicKey', 'jwks']);
        if (typeof e.issuer !== 'string' || !e.issuer) throw new ConfigError(`${what} needs an issuer`);
        if ((e.publicKey === undefined) === (e.jwks === undefined)) throw new ConfigError(`${what} needs exactly one of publicKey (PEM file) or jwks (URL or file)`);
        return { issuer: e.issuer, publicKey: e.publicKey as string | undefined, jwks: e.jwks === undefined ? undefined : jwksLocation(String(e.jwks), what) };
      });
    }
  }
  return auth;
}

/** Settings from BERTH_* variables and flags, applied after the file. */
export interface SecurityOverrides {
  htpasswd?: string;
  tlsCert?: string;
  tlsKey?: string;
  trustedProxies?: string;
}

export function applySecurityOverrides(config: SecurityConfig, flags: SecurityOverrides, env: NodeJS.ProcessEnv): void {
  const htpasswd = flags.htpasswd ?? env.BERTH_HTPASSWD;
  if (htpasswd) {
    config.auth ??= defaultAuth();
    config.auth.htpasswd = htpasswd;
  }
  const cert = flags.tlsCert ?? env.BERTH_TLS_CERT;
  const key = flags.tlsKey ?? env.BERTH_TLS_KEY;
  if (cert || key) {
    if (!(cert ?? config.tls?.cert) || !(key ?? config.tls?.key)) throw new ConfigError('TLS needs both a certificate and a key (--tls-cert and --tls-key)');
    config.tls = { hstsMaxAge: 31_536_000, ...config.tls, cert: cert ?? config.tls!.cert, key: key ?? config.tls!.key };
  }
  const proxies = flags.trustedProxies ?? env.BERTH_TRUSTED_PROXIES;
  if (proxies) config.trustedProxies = proxies.split(',').map((s) => s.trim()).filter(Boolean);
  // Auth with users but no rules: the quick start's one rule.
  if (config.auth && config.auth.rules.length === 0 && config.auth.htpasswd) config.auth.rules = [QUICK_START_RULE];
  if (config.auth && !config.auth.htpasswd && config.auth.token.trusted.length === 0 && !config.auth.rules.some((r) => r.anonymous)) {
    throw new ConfigError('auth is on but nobody can ever be granted anything: give auth.htpasswd, auth.token.trusted or an anonymous rule');
  }
}
