/**
 * The configured policies, compiled: pure decisions about a repository or
 * tag name. registry/ and gc/ ask them, and hand the answers to the
 * metadata store, which applies them inside the transaction that acts.
 * With no policy configured every question answers "nothing applies" and
 * costs a length check.
 */
import type { WriteGuard } from '../metadata/store.js';
import { RegistryError } from '../registry/errors.js';
import { compilePattern } from '../repository-pattern.js';
import type { PolicyRule } from './config.js';

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

export class Policies {
  readonly rules: readonly PolicyRule[];
  private readonly compiled: CompiledRule[];
  private readonly immutable: CompiledRule[];

  constructor(rules: PolicyRule[] = []) {
    this.rules = rules;
    this.compiled = rules.map((rule, index) => ({
      index,
      rule,
      repositories: rule.repositories.map(compilePattern),
      immutableTags: (rule.immutableTags ?? []).map(compilePattern),
    }));
    this.immutable = this.compiled.filter((c) => c.immutableTags.length > 0);
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
    const rules = this.immutable.filter((c) => c.repositories.some((p) => p.test(repository)));
    if (rules.length === 0) return undefined;
    return {
      refuseTagChange: (tag, action) => (rules.some((c) => c.immutableTags.some((p) => p.test(tag))) ? immutableTagError(repository, tag, action) : undefined),
    };
  }
}
