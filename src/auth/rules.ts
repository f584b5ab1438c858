/**
 * Authorization rules: who (users, groups, any user, anonymous) may do what
 * (pull, push, delete) on which repositories (name patterns). Grants are the
 * union of every matching rule; nothing is granted unless a rule says so.
 */
import type { Action, AuthConfig } from './config.js';

interface CompiledRule {
  patterns: RegExp[];
  users: Set<string>;
  anyUser: boolean;
  groups: string[];
  anonymous: boolean;
  actions: Action[];
}

// Shared with policy/: one meaning of `*` and `**` everywhere.
import { compilePattern } from '../repository-pattern.js';
export { compilePattern };

export class Policy {
  private readonly rules: CompiledRule[];
  private readonly memberOf = new Map<string, Set<string>>();
  private readonly adminUsers: Set<string>;
  private readonly adminGroups: string[];
  readonly hasAnonymousRules: boolean;

  constructor(auth: Pick<AuthConfig, 'groups' | 'rules' | 'admins'>) {
    for (const [group, members] of Object.entries(auth.groups)) {
      for (const user of members) {
        const set = this.memberOf.get(user) ?? new Set<string>();
        set.add(group);
        this.memberOf.set(user, set);
      }
    }
    this.rules = auth.rules.map((r) => ({
      patterns: r.repositories.map(compilePattern),
      users: new Set(r.users.filter((u) => u !== '*')),
      anyUser: r.users.includes('*'),
      groups: r.groups,
      anonymous: r.anonymous,
      actions: r.actions,
    }));
    this.hasAnonymousRules = this.rules.some((r) => r.anonymous);
    this.adminUsers = new Set(auth.admins.users);
    this.adminGroups = auth.admins.groups;
  }

  /** Whether admins are configured at all (else the admin API stays loopback-only). */
  get hasAdmins(): boolean {
    return this.adminUsers.size > 0 || this.adminGroups.length > 0;
  }

  private applies(rule: CompiledRule, user: string | null): boolean {
    if (user === null) return rule.anonymous;
    if (rule.anyUser || rule.anonymous || rule.users.has(user)) return true;
    const groups = this.memberOf.get(user);
    return groups !== undefined && rule.groups.some((g) => groups.has(g));
  }

  /** The actions `user` (null: anonymous) may take on `repository`. */
  allowed(user: string | null, repository: string): Set<Action> {
    const out = new Set<Action>();
    for (const rule of this.rules) {
      if (!this.applies(rule, user) || !rule.patterns.some((p) => p.test(repository))) continue;
      for (const a of rule.actions) out.add(a);
    }
    return out;
  }

  can(user: string | null, repository: string, action: Action): boolean {
    for (const rule of this.rules) {
      if (rule.actions.includes(action) && this.applies(rule, user) && rule.patterns.some((p) => p.test(repository))) return true;
    }
    return false;
  }

  isAdmin(user: string): boolean {
    if (this.adminUsers.has(user)) return true;
    const groups = this.memberOf.get(user);
    return groups !== undefined && this.adminGroups.some((g) => groups.has(g));
  }
}
