/**
 * Retention decisions: which tags of a repository the matching retention
 * rules keep, and why each other tag would go. Pure: GC supplies the tags as
 * the store listed them and deletes each doomed one only if it is still
 * exactly as listed (deleteTagIfUnchanged), so a push or tag made meanwhile
 * is never undone by a decision taken before it.
 */
import type { RetentionTag } from '../metadata/store.js';
import type { RetentionRule } from './config.js';
import { compileKeepTags } from './keep-tags.js';

export interface RetentionVerdict {
  detail: RetentionTag;
  /** Why no rule keeps it. */
  reason: string;
}

/** Whether a rule says anything about tags (a rule with only untaggedAfter deletes no tag). */
export function decidesTags(rule: RetentionRule): boolean {
  return rule.keepLast !== undefined || rule.keepTags !== undefined || rule.pushedWithin !== undefined || rule.pulledWithin !== undefined;
}

/** cosign's tag for a signature, attestation or SBOM of a manifest: `sha256-<hex>.sig`. */
const COSIGN_TAG = /^(sha256|sha512)-([0-9a-f]{64}|[0-9a-f]{128})\.[a-z]+$/;

/** The manifest a tag's content refers to (an OCI subject, or cosign's tag scheme), if any. */
function subjectOf(d: RetentionTag): string | undefined {
  if (d.subject) return d.subject;
  const m = COSIGN_TAG.exec(d.tag);
  return m ? `${m[1]}:${m[2]}` : undefined;
}

function ago(ms: number): string {
  const days = ms / 86_400_000;
  if (days >= 1) return `${Math.floor(days)}d`;
  const hours = ms / 3_600_000;
  if (hours >= 1) return `${Math.floor(hours)}h`;
  return `${Math.max(0, Math.floor(ms / 60_000))}m`;
}

export function duration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0 && ms >= size) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * The tags that none of `rules` keeps. A tag is kept when any rule keeps it
 * (one of the keepLast most recently pushed, pushed or pulled within the
 * duration, matching a keepTags pattern or semantic version form), when `immutable` says so, or when
 * it names a referrer (a signature, an SBOM) of a manifest a kept tag names:
 * referrers follow their subject, never outliving it nor going before it.
 */
export function decideRetention(rules: RetentionRule[], tags: RetentionTag[], now: number, immutable: (tag: string) => boolean): RetentionVerdict[] {
  const deciding = rules.filter(decidesTags);
  if (deciding.length === 0) return [];
  const referrers = tags.filter((t) => subjectOf(t) !== undefined);
  const images = tags.filter((t) => subjectOf(t) === undefined);
  const byPush = [...images].sort((a, b) => b.pushedAt - a.pushedAt || (a.tag < b.tag ? -1 : 1));
  const rank = new Map(byPush.map((t, i) => [t.tag, i]));
  const compiled = deciding.map((r) => ({ rule: r, keepTags: r.keepTags === undefined ? undefined : compileKeepTags(r.keepTags) }));

  const kept = new Set<string>();
  const doomed: RetentionVerdict[] = [];
  for (const t of images) {
    if (immutable(t.tag)) {
      kept.add(t.tag);
      continue;
    }
    const why: string[] = [];
    let keep = false;
    for (const { rule, keepTags } of compiled) {
      if (rule.keepLast !== undefined) {
        if (rank.get(t.tag)! < rule.keepLast) keep = true;
        else why.push(`not among the ${rule.keepLast} most recently pushed`);
      }
      if (rule.pushedWithin !== undefined) {
        if (now - t.pushedAt <= rule.pushedWithin) keep = true;
        else why.push(`pushed ${ago(now - t.pushedAt)} ago (keeps ${duration(rule.pushedWithin)})`);
      }
      if (rule.pulledWithin !== undefined) {
        if (t.pulledAt !== undefined && now - t.pulledAt <= rule.pulledWithin) keep = true;
        else why.push(t.pulledAt === undefined ? `never pulled (keeps pulled within ${duration(rule.pulledWithin)})` : `pulled ${ago(now - t.pulledAt)} ago (keeps ${duration(rule.pulledWithin)})`);
      }
      if (keepTags !== undefined) {
        if (keepTags.keeps(t.tag)) keep = true;
        else why.push(...keepTags.whyNot(t.tag));
      }
    }
    if (keep) kept.add(t.tag);
    else doomed.push({ detail: t, reason: [...new Set(why)].join('; ') });
  }
  const keptDigests = new Set(images.filter((t) => kept.has(t.tag)).map((t) => t.digest));
  for (const r of referrers) {
    if (immutable(r.tag) || keptDigests.has(subjectOf(r)!)) continue;
    doomed.push({ detail: r, reason: `follows its subject ${subjectOf(r)}, which no kept tag names` });
  }
  return doomed;
}
