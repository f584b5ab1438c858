/**
 * Upstream registries of the pull-through cache: the `mirrors:` section of
 * the config file, and `berth serve --proxy URL` (one default mirror). The
 * section is called `mirrors` because `proxy:` already names the trusted
 * reverse proxies in front of Berth.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, parseBoolean, parseDuration } from '../config-values.js';

export interface UpstreamConfig {
  /** A name for logs and metrics (default: the URL's host). */
  name: string;
  /** e.g. https://registry-1.docker.io */
  url: string;
  /**
   * Local names under `prefix/` are cached from this upstream, without the
   * prefix. '' is the default mirror: every name no other prefix claims,
   * unchanged (what `dockerd --registry-mirror` sends).
   */
  prefix: string;
  /** Docker Hub's rule: a one-component name means `library/NAME`. Default: on for Docker Hub's hosts. */
  libraryPrefix: boolean;
  username?: string;
  password?: string;
  /** PEM CA bundle to trust for this upstream (in addition to the system's). */
  ca?: string;
  /** Skip TLS verification (tests and lab setups only). */
  insecure: boolean;
  /** How long a cached tag is served before it is re-checked upstream (one HEAD), ms. */
  tagTtl: number;
  /** How long a tag re-check may take before the cached manifest is served stale, ms. */
  checkTimeout: number;
  /** A cached tag not pulled for this long is untagged (GC then collects what only it held), ms; 0: never. */
  expireAfter: number;
}

const DOCKER_HUB_HOSTS = new Set(['registry-1.docker.io', 'index.docker.io', 'docker.io', 'registry.hub.docker.com']);

type Doc = Record<string, unknown>;

/** An upstream with defaults for what was not given. */
export function upstream(url: string, settings: Partial<UpstreamConfig> = {}): UpstreamConfig {
  let host: string;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http');
    if (u.username || u.password) throw new ConfigError(`mirror URL ${u.origin}: put credentials in username/passwordFile or the environment, not in the URL`);
    host = u.hostname;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`invalid mirror URL "${url}": use http(s)://HOST[:PORT]`);
  }
  const prefix = (settings.prefix ?? '').replace(/\/+$/, '');
  if (prefix !== '' && !/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/.test(prefix)) {
    throw new ConfigError(`invalid mirror prefix "${prefix}": use a repository name component such as docker.io or ghcr`);
  }
  return {
    name: settings.name ?? (prefix || host),
    url: url.replace(/\/+$/, ''),
    prefix,
    libraryPrefix: settings.libraryPrefix ?? DOCKER_HUB_HOSTS.has(host),
    username: settings.username,
    password: settings.password,
    ca: settings.ca,
    insecure: settings.insecure ?? false,
    tagTtl: settings.tagTtl ?? 5 * 60_000,
    checkTimeout: settings.checkTimeout ?? 5_000,
    expireAfter: settings.expireAfter ?? 0,
  };
}

/** The `mirrors:` list of a config file. */
export function parseMirrors(value: unknown, env: NodeJS.ProcessEnv = process.env): UpstreamConfig[] {
  if (!Array.isArray(value)) throw new ConfigError('mirrors must be a list of upstreams (each with at least url)');
  const list = value.map((entry, i) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`mirrors[${i}] must be a mapping`);
    const m = entry as Doc;
    const known = ['name', 'url', 'prefix', 'libraryPrefix', 'username', 'passwordFile', 'passwordEnv', 'ca', 'insecure', 'tagTtl', 'checkTimeout', 'expireAfter'];
    for (const key of Object.keys(m)) if (!known.includes(key)) throw new ConfigError(`mirrors[${i}]: unknown setting "${key}" (known: ${known.join(', ')})`);
    if (typeof m.url !== 'string') throw new ConfigError(`mirrors[${i}] needs url`);
    const what = (k: string) => `mirrors[${i}].${k}`;
    let password: string | undefined;
    if (m.passwordFile !== undefined) password = readSecret(String(m.passwordFile), what('passwordFile'));
    if (m.passwordEnv !== undefined) {
      password = env[String(m.passwordEnv)];
      if (password === undefined) throw new ConfigError(`${what('passwordEnv')}: environment variable ${String(m.passwordEnv)} is not set`);
    }
    if (password !== undefined && m.username === undefined) throw new ConfigError(`mirrors[${i}]: a password needs a username`);
    return upstream(m.url, {
      ...(m.name !== undefined ? { name: String(m.name) } : {}),
      prefix: m.prefix === undefined || m.prefix === null ? '' : String(m.prefix),
      ...(m.libraryPrefix !== undefined ? { libraryPrefix: parseBoolean(m.libraryPrefix as string, what('libraryPrefix')) } : {}),
      ...(m.username !== undefined ? { username: String(m.username), password: password ?? '' } : {}),
      ...(m.ca !== undefined ? { ca: readSecret(String(m.ca), what('ca')) } : {}),
      ...(m.insecure !== undefined ? { insecure: parseBoolean(m.insecure as string, what('insecure')) } : {}),
      ...(m.tagTtl !== undefined ? { tagTtl: parseDuration(m.tagTtl as string, what('tagTtl')) } : {}),
      ...(m.checkTimeout !== undefined ? { checkTimeout: parseDuration(m.checkTimeout as string, what('checkTimeout')) } : {}),
      ...(m.expireAfter !== undefined ? { expireAfter: parseDuration(m.expireAfter as string, what('expireAfter')) } : {}),
    });
  });
  checkPrefixes(list);
  return list;
}

/**
 * `--proxy URL` / BERTH_PROXY: one default mirror, credentials from
 * BERTH_PROXY_USERNAME and BERTH_PROXY_PASSWORD or BERTH_PROXY_PASSWORD_FILE
 * (never a flag: flags show in `ps`).
 */
export function mirrorFromFlag(url: string, env: NodeJS.ProcessEnv): UpstreamConfig {
  const username = env.BERTH_PROXY_USERNAME;
  let password = env.BERTH_PROXY_PASSWORD;
  if (env.BERTH_PROXY_PASSWORD_FILE) password = readSecret(env.BERTH_PROXY_PASSWORD_FILE, 'BERTH_PROXY_PASSWORD_FILE');
  if (password !== undefined && username === undefined) throw new ConfigError('BERTH_PROXY_PASSWORD needs BERTH_PROXY_USERNAME');
  const ttl = env.BERTH_PROXY_TAG_TTL;
  return upstream(url, {
    ...(username !== undefined ? { username, password: password ?? '' } : {}),
    ...(ttl !== undefined ? { tagTtl: parseDuration(ttl, 'BERTH_PROXY_TAG_TTL') } : {}),
  });
}

/** At most one default mirror, and no prefix given twice. */
export function checkPrefixes(list: UpstreamConfig[]): void {
  const seen = new Set<string>();
  for (const u of list) {
    if (seen.has(u.prefix)) throw new ConfigError(u.prefix === '' ? 'more than one default mirror (an upstream without prefix)' : `mirror prefix "${u.prefix}" is given twice`);
    seen.add(u.prefix);
  }
}

function readSecret(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new ConfigError(`${what}: cannot read ${file}: ${(e as Error).message}`);
  }
}
