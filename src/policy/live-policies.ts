/**
 * The policies a running server applies, and their reload: the config file
 * is read again and, only when its `policies:` section is valid as a whole,
 * replaces them for every request that starts afterwards. A bad file keeps
 * the previous policies (and says why).
 */
import type { PolicyRule } from './config.js';
import { readPolicyFile } from './config.js';
import { Policies } from './policies.js';

export interface ReloadOutcome {
  ok: boolean;
  rules: number;
  error?: string;
}

export class LivePolicies {
  current: Policies;
  loadedAt: number;

  constructor(rules: PolicyRule[], private readonly file: string | undefined, now = Date.now()) {
    this.current = new Policies(rules);
    this.loadedAt = now;
  }

  get source(): string | undefined {
    return this.file;
  }

  reload(now = Date.now()): ReloadOutcome {
    if (!this.file) return { ok: false, rules: this.current.rules.length, error: 'no config file to reload (start with --config)' };
    try {
      this.current = new Policies(readPolicyFile(this.file));
      this.loadedAt = now;
      return { ok: true, rules: this.current.rules.length };
    } catch (e) {
      return { ok: false, rules: this.current.rules.length, error: (e as Error).message };
    }
  }
}
