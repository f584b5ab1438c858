/**
 * The `policies:` section of the config file: a list of rules, each for the
 * repositories its patterns match, with any of a quota, immutable tag
 * patterns and retention. Parsed and checked whole before anything uses it,
 * so a bad file (at start or at a reload) changes nothing.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { ConfigError, parseDuration, parseSize } from '../config.js';
import { checkKeepTag } from './keep-tags.js';

export interface RetentionRule {
  /** Keep the N most recently pushed tags of each repository. */
  keepLast?: number;
  /** Keep tags matching any of these: patterns, `semver` (any semantic version) or `semver:RANGE` (src/policy/keep-tags.ts). */
  keepTags?: string[];
  /** Keep tags pushed within this long, ms. */
  pushedWithin?: number;
  /** Keep tags pulled within this long, ms. */
  pulledWithin?: number;
  /** Delete manifests without tag (and not held by an index or subject) after this long, ms. */
  untaggedAfter?: number;
}

export interface PolicyRule {
  /** Repository name patterns (`*`: within one component, `**`: any). */
  repositories: string[];
  /** Bytes the repositories this rule matches may hold together, each blob counted once. */
  quota?: number;
  /** Tag patterns that, once pushed, cannot be moved or deleted. */
  immutableTags?: string[];
  retention?: RetentionRule;
}

const RULE_KEYS = new Set(['repositories', 'quota', 'immutableTags', 'retention']);
const RETENTION_KEYS = new Set(['keepLast', 'keepTags', 'pushedWithin', 'pulledWithin', 'untaggedAfter']);

function patterns(value: unknown, what: string): string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0 || list.some((p) => typeof p !== 'string' || p === '')) {
    throw new ConfigError(`${what} must be a non-empty list of patterns (e.g. ["team-a/**"])`);
  }
  return list as string[];
}

function mapping(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${what} must be a mapping`);
  return value as Record<string, unknown>;
}

function parseRetention(value: unknown, what: string): RetentionRule {
  const r = mapping(value, what);
  for (const key of Object.keys(r)) if (!RETENTION_KEYS.has(key)) throw new ConfigError(`${what}: unknown setting "${key}" (one of ${[...RETENTION_KEYS].join(', ')})`);
  const out: RetentionRule = {};
  if (r.keepLast !== undefined) {
    if (!Number.isInteger(r.keepLast) || (r.keepLast as number) < 0) throw new ConfigError(`${what}.keepLast must be a whole number`);
    out.keepLast = r.keepLast as number;
  }
  if (r.keepTags !== undefined) {
    out.keepTags = patterns(r.keepTags, `${what}.keepTags`);
    for (const entry of out.keepTags) checkKeepTag(entry, `${what}.keepTags`);
  }
  for (const key of ['pushedWithin', 'pulledWithin', 'untaggedAfter'] as const) {
    if (r[key] !== undefined) out[key] = parseDuration(r[key] as string, `${what}.${key}`);
  }
  if (Object.keys(out).length === 0) throw new ConfigError(`${what} names no rule`);
  return out;
}

/** The `policies:` value of a config file; ConfigError naming the rule when it is wrong. */
export function parsePolicies(value: unknown): PolicyRule[] {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) throw new ConfigError('policies must be a list of rules');
  return value.map((item, i) => {
    const what = `policies[${i}]`;
    const r = mapping(item, what);
    for (const key of Object.keys(r)) if (!RULE_KEYS.has(key)) throw new ConfigError(`${what}: unknown setting "${key}" (one of ${[...RULE_KEYS].join(', ')})`);
    const rule: PolicyRule = { repositories: patterns(r.repositories, `${what}.repositories`) };
    if (r.quota !== undefined) rule.quota = parseSize(r.quota as string, `${what}.quota`);
    if (r.immutableTags !== undefined) rule.immutableTags = patterns(r.immutableTags, `${what}.immutableTags`);
    if (r.retention !== undefined) rule.retention = parseRetention(r.retention, `${what}.retention`);
    if (rule.quota === undefined && rule.immutableTags === undefined && rule.retention === undefined) {
      throw new ConfigError(`${what} sets none of quota, immutableTags, retention`);
    }
    return rule;
  });
}

/** The policies of a config file (for a reload and `berth policy check`). */
export function readPolicyFile(file: string): PolicyRule[] {
  let doc: unknown;
  try {
    doc = (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return [];
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${file} must be a YAML mapping`);
  try {
    return parsePolicies((doc as Record<string, unknown>).policies);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`config file ${file}: ${e.message}`);
    throw e;
  }
}
