/**
 * The configured policies, compiled: pure decisions about a repository or
 * tag name. registry/ and gc/ ask them, and hand the answers to the
 * metadata store, which applies them inside the transaction that acts.
 * With no policy configured every question answers "nothing applies" and
 * costs a length check.
 */
import type { QuotaCheck, WriteGuard } from '../metadata/store.js';
import { RegistryError } from '../registry/errors.js';
import { compilePattern } from '../repository-pattern.js';
import type { PolicyRule, RetentionRule } from './config.js';
import { formatBytes } from '../format-bytes.js';

interface CompiledRule {
  index: number;
  rule: PolicyRule;
  repositories: RegExp[];
  immutableTags: RegExp[];
}

/**
 * Moving or deleting an immutable tag: DENIED, as Harbor and Docker Hub
 * answer (clients print "denied: <message>"), with 409 Conflict like Berth's
 * other refusals of a change that conflicts with what is stored.
 */
export function immutableTagError(repository: string, tag: string, action: 'move' | 'delete'): RegistryError {
  return new RegistryError(
    'DENIED',
    `tag ${repository}:${tag} is immutable: it cannot be ${action === 'move' ? 'moved to another manifest (push under a new tag)' : 'deleted'}; an admin can lift this`,
    { status: 409, detail: { repository, tag, policy: 'immutableTags' } },
  );
}


/**
 * A push over quota: DENIED (403), the spec's code for a refused
 * operation, which docker, podman and skopeo print with its message.
 */
export function quotaError(namespace: string, limit: number, usage: number, adding: number): RegistryError {
  const message =
    adding > 0
      ? `quota exceeded for namespace ${namespace}: usage ${formatBytes(usage)} + ${formatBytes(adding)} would exceed the quota of ${formatBytes(limit)}`
      : `quota exceeded for namespace ${namespace}: usage ${formatBytes(usage)} is over the quota of ${formatBytes(limit)}`;
  return new RegistryError('DENIED', message, { detail: { namespace, quota: limit, usage, adding } });
}

/** The namespace a quota rule defines: the repositories its patterns match, named by them. */
export function namespaceOf(rule: PolicyRule): string {
  return rule.repositories.join(',');
}

export class Policies {
  readonly rules: readonly PolicyRule[];
  private readonly compiled: CompiledRule[];
  private readonly immutable: CompiledRule[];
  private readonly quotas: CompiledRule[];
  private readonly retention: CompiledRule[];
  private readonly pullRules: CompiledRule[];

  constructor(rules: PolicyRule[] = []) {
    this.rules = rules;
    this.compiled = rules.map((rule, index) => ({
      index,
      rule,
      repositories: rule.repositories.map(compilePattern),
      immutableTags: (rule.immutableTags ?? []).map(compilePattern),
    }));
    this.immutable = this.compiled.filter((c) => c.immutableTags.length > 0);
    this.quotas = this.compiled.filter((c) => c.rule.quota !== undefined);
    this.retention = this.compiled.filter((c) => c.rule.retention !== undefined);
    this.pullRules = this.retention.filter((c) => c.rule.retention!.pulledWithin !== undefined);
  }

  get hasRetention(): boolean {
    return this.retention.length > 0;
  }

  /** The retention rules, with their index in the policies list (how reports name them). */
  retentionRules(): { index: number; repositories: string[]; retention: RetentionRule; matches(repository: string): boolean }[] {
    return this.retention.map((c) => ({
      index: c.index,
      repositories: c.rule.repositories,
      retention: c.rule.retention!,
      matches: (r: string) => c.repositories.some((p) => p.test(r)),
    }));
  }

  /** Whether pulls of the repository's tags must be recorded (a "pulled within" rule applies). */
  tracksPulls(repository: string): boolean {
    return this.pullRules.length > 0 && this.pullRules.some((c) => c.repositories.some((p) => p.test(repository)));
  }

  /** The quota namespaces: each quota rule's name, limit and repository patterns. */
  quotaNamespaces(): { name: string; limit: number; matches(repository: string): boolean }[] {
    return this.quotas.map((c) => ({ name: namespaceOf(c.rule), limit: c.rule.quota!, matches: (r: string) => c.repositories.some((p) => p.test(r)) }));
  }

  get empty(): boolean {
    return this.compiled.length === 0;
  }

  /** The rules (by index in the list) that apply to a repository. */
  matching(repository: string): PolicyRule[] {
    return this.compiled.filter((c) => c.repositories.some((p) => p.test(repository))).map((c) => c.rule);
  }

  /** Whether `tag` of `repository` is immutable once it exists. */
  isImmutable(repository: string, tag: string): boolean {
    return this.immutable.some((c) => c.repositories.some((p) => p.test(repository)) && c.immutableTags.some((p) => p.test(tag)));
  }

  /**
   * What a tag write or delete in `repository` must respect, for the store
   * to check inside its transaction; undefined when no rule applies (the
   * store then checks nothing).
   */
  writeGuard(repository: string): WriteGuard | undefined {
    if (this.compiled.length === 0) return undefined;
    const rules = this.immutable.filter((c) => c.repositories.some((p) => p.test(repository)));
    const quotas: QuotaCheck[] = this.quotas
      .filter((c) => c.repositories.some((p) => p.test(repository)))
      .map((c) => {
        const namespace = namespaceOf(c.rule);
        const limit = c.rule.quota!;
        return { namespace, limit, refuse: (usage: number, adding: number) => quotaError(namespace, limit, usage, adding) };
      });
    if (rules.length === 0 && quotas.length === 0) return undefined;
    const guard: WriteGuard = {};
    if (rules.length > 0) {
      guard.refuseTagChange = (tag, action) => (rules.some((c) => c.immutableTags.some((p) => p.test(tag))) ? immutableTagError(repository, tag, action) : undefined);
    }
    if (quotas.length > 0) guard.quotas = quotas;
    return guard;
  }
}
