/** `berth policy check FILE`: validates the policies of a config file and shows what each rule matches today. */
import { openMetadata } from '../backends.js';
import { DEFAULT_CONFIG, type Config } from '../config.js';
import type { MetadataStore } from '../metadata/store.js';
import { readPolicyFile, type PolicyRule } from '../policy/config.js';
import { formatBytes } from '../format-bytes.js';
import { compilePattern } from '../repository-pattern.js';
import { duration } from '../policy/retention.js';

export interface PolicyCheckFlags {
  data?: string;
  metadata?: string;
  json?: boolean;
}

const SHOWN = 20;

function describe(rule: PolicyRule): string[] {
  const out: string[] = [];
  if (rule.quota !== undefined) out.push(`quota ${formatBytes(rule.quota)} (each blob counted once across these repositories)`);
  if (rule.immutableTags) out.push(`immutable tags: ${rule.immutableTags.join(', ')}`);
  const r = rule.retention;
  if (r) {
    const parts: string[] = [];
    if (r.keepLast !== undefined) parts.push(`keep the last ${r.keepLast} pushed`);
    if (r.keepTags) parts.push(`keep tags ${r.keepTags.join(', ')}`);
    if (r.pushedWithin !== undefined) parts.push(`keep tags pushed within ${duration(r.pushedWithin)}`);
    if (r.pulledWithin !== undefined) parts.push(`keep tags pulled within ${duration(r.pulledWithin)}`);
    if (r.untaggedAfter !== undefined) parts.push(`delete untagged manifests after ${duration(r.untaggedAfter)}`);
    out.push(`retention: ${parts.join('; ')}`);
  }
  return out;
}

async function allRepositories(metadata: MetadataStore): Promise<string[]> {
  const names: string[] = [];
  let last: string | undefined;
  for (;;) {
    const page = await metadata.listRepositories(last, 1000);
    names.push(...page.items);
    if (!page.more || page.items.length === 0) return names;
    last = page.items.at(-1);
  }
}

export async function policyCheckCommand(file: string, flags: PolicyCheckFlags): Promise<number> {
  const rules = readPolicyFile(file); // a ConfigError names what is wrong (exit 2)
  let repositories: string[] | undefined;
  if (flags.data || flags.metadata) {
    const config: Config = { ...structuredClone(DEFAULT_CONFIG), data: flags.data ?? DEFAULT_CONFIG.data, metadata: flags.metadata };
    const metadata = await openMetadata(config);
    try {
      repositories = await allRepositories(metadata);
    } finally {
      await metadata.close();
    }
  }
  const matched = rules.map((rule) => {
    const patterns = rule.repositories.map(compilePattern);
    return repositories?.filter((r) => patterns.some((p) => p.test(r)));
  });
  if (flags.json) {
    process.stdout.write(JSON.stringify({ valid: true, policies: rules.map((rule, i) => ({ ...rule, matches: matched[i] })) }, null, 2) + '\n');
    return 0;
  }
  process.stdout.write(`${file}: ${rules.length} ${rules.length === 1 ? 'policy' : 'policies'}, valid\n`);
  rules.forEach((rule, i) => {
    process.stdout.write(`policy ${i}: repositories ${rule.repositories.join(', ')}\n`);
    for (const line of describe(rule)) process.stdout.write(`  ${line}\n`);
    const m = matched[i];
    if (m) {
      process.stdout.write(`  matches ${m.length} ${m.length === 1 ? 'repository' : 'repositories'} today${m.length > 0 ? ':' : ''}\n`);
      for (const r of m.slice(0, SHOWN)) process.stdout.write(`    ${r}\n`);
      if (m.length > SHOWN) process.stdout.write(`    … and ${m.length - SHOWN} more\n`);
    }
  });
  if (!repositories) process.stdout.write('(give --data or --metadata to see which repositories each policy matches today)\n');
  return 0;
}
