/**
 * The forms of a retention rule's `keepTags` entry: a tag name pattern
 * (`v*`, `release-*`, as src/repository-pattern.ts), `semver` (any semantic
 * version, with an optional leading `v`) or `semver:RANGE` (a version within
 * an npm-style range, e.g. `semver:>=2.0.0 <3`). Tags cannot contain `:`, so
 * `semver:…` never was a tag pattern; `semver` alone now means the form.
 */
import semver from 'semver';
import { ConfigError } from '../config-values.js';
import { compilePattern } from '../repository-pattern.js';

const SEMVER = 'semver';
const SEMVER_RANGE = 'semver:';

/** Throws a ConfigError saying what is wrong with a `semver:` entry; patterns are always valid. */
export function checkKeepTag(entry: string, what: string): void {
  if (!entry.startsWith(SEMVER_RANGE)) return;
  const range = entry.slice(SEMVER_RANGE.length).trim();
  if (range === '') throw new ConfigError(`${what}: "${entry}" names no range (use semver alone for any semantic version)`);
  if (semver.validRange(range) === null) throw new ConfigError(`${what}: "${entry}" is not a valid semantic version range (e.g. semver:>=2.0.0 <3, semver:^1.4)`);
}

/** The tags a retention rule's keepTags keeps, and why it keeps none of the others. */
export interface KeepTags {
  keeps(tag: string): boolean;
  /** For a tag `keeps` refused: one reason per form, e.g. "matches none of v*; version 1.2.3 outside semver:^2". */
  whyNot(tag: string): string[];
}

export function compileKeepTags(entries: string[]): KeepTags {
  const patterns = entries.filter((e) => e !== SEMVER && !e.startsWith(SEMVER_RANGE));
  const compiled = patterns.map(compilePattern);
  const anyVersion = entries.includes(SEMVER);
  const ranges = entries.filter((e) => e.startsWith(SEMVER_RANGE)).map((e) => ({ entry: e, range: new semver.Range(e.slice(SEMVER_RANGE.length).trim()) }));
  // Strict parsing: `1.2.3` or `v1.2.3`, with prerelease and build; not `1.2` nor `v1.2.3.4`.
  const version = (tag: string) => semver.valid(tag);
  return {
    keeps(tag) {
      if (compiled.some((p) => p.test(tag))) return true;
      if (!anyVersion && ranges.length === 0) return false;
      const v = version(tag);
      if (v === null) return false;
      // npm's rule: a prerelease satisfies a range only if the range names a prerelease of the same version.
      return anyVersion || ranges.some((r) => r.range.test(v));
    },
    whyNot(tag) {
      const why: string[] = [];
      if (patterns.length > 0) why.push(`matches none of ${patterns.join(', ')}`);
      const forms = [...(anyVersion ? [SEMVER] : []), ...ranges.map((r) => r.entry)];
      if (forms.length === 0) return why;
      const v = version(tag);
      if (v === null) why.push(`not a semantic version (keepTags ${forms.join(', ')})`);
      else why.push(`version ${v} outside ${ranges.map((r) => r.entry).join(', ')}`);
      return why;
    },
  };
}
