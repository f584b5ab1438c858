/** A config file holding the given YAML (policies for a test server). */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function policyConfig(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'berth-policy-')), 'berth.yaml');
  writeFileSync(file, yaml);
  return file;
}
