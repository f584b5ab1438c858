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

  /**
   * `apply` readies what the new policies need before they take effect (the
   * store's quota namespaces); when it fails, the previous ones stay.
   */
  constructor(
    rules: PolicyRule[],
    private readonly file: string | undefined,
    private readonly apply: (p: Policies) => Promise<void> = async () => {},
    now = Date.now(),
  ) {
    this.current = new Policies(rules);
    this.loadedAt = now;
  }

  get source(): string | undefined {
    return this.file;
  }

  /** Readies the policies given at start (before the server listens). */
  async start(): Promise<void> {
    await this.apply(this.current);
  }

  async reload(now = Date.now()): Promise<ReloadOutcome> {
    if (!this.file) return { ok: false, rules: this.current.rules.length, error: 'no config file to reload (start with --config)' };
    try {
      const next = new Policies(readPolicyFile(this.file));
      await this.apply(next);
      this.current = next;
      this.loadedAt = now;
      return { ok: true, rules: this.current.rules.length };
    } catch (e) {
      return { ok: false, rules: this.current.rules.length, error: (e as Error).message };
    }
  }
}
