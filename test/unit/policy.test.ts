/** Policy decisions as pure functions: parsing, immutability, quota guards, retention verdicts. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePolicies } from '../../src/policy/config.js';
import { Policies } from '../../src/policy/policies.js';
import { decideRetention } from '../../src/policy/retention.js';
import type { RetentionTag } from '../../src/metadata/store.js';

const H = 3_600_000;

describe('policies', () => {
  it('parses the example of the issue', () => {
    const rules = parsePolicies([
      { repositories: ['ci/**'], retention: { keepLast: 10, keepTags: ['v*'], untaggedAfter: '7d', pulledWithin: '30d' } },
      { repositories: ['team-a/**'], quota: '50GiB', immutableTags: ['v*', 'release-*'] },
    ]);
    assert.deepEqual(rules, [
      { repositories: ['ci/**'], retention: { keepLast: 10, keepTags: ['v*'], untaggedAfter: 7 * 24 * H, pulledWithin: 30 * 24 * H } },
      { repositories: ['team-a/**'], quota: 50 * 1024 ** 3, immutableTags: ['v*', 'release-*'] },
    ]);
  });

  it('with no policy, no request gets a guard (nothing to check, nothing paid)', () => {
    const none = new Policies([]);
    assert.equal(none.writeGuard('team-a/app'), undefined);
    assert.equal(none.tracksPulls('team-a/app'), false);
    const some = new Policies(parsePolicies([{ repositories: ['team-a/**'], immutableTags: ['v*'] }]));
    assert.equal(some.writeGuard('team-b/app'), undefined, 'a repository no rule matches gets none either');
  });

  it('immutability and quotas per repository pattern, with the auth rules\' * and **', () => {
    const p = new Policies(parsePolicies([{ repositories: ['team-a/*'], immutableTags: ['v*'], quota: 1024 }]));
    assert.equal(p.isImmutable('team-a/app', 'v1.2'), true);
    assert.equal(p.isImmutable('team-a/app', 'latest'), false);
    assert.equal(p.isImmutable('team-a/x/y', 'v1'), false, '* stays within one component');
    const guard = p.writeGuard('team-a/app')!;
    assert.match(guard.refuseTagChange!('v1', 'move')!.message, /tag team-a\/app:v1 is immutable/);
    assert.equal(guard.refuseTagChange!('latest', 'move'), undefined);
    assert.deepEqual(guard.quotas!.map((q) => [q.namespace, q.limit]), [['team-a/*', 1024]]);
    assert.equal(guard.quotas![0]!.refuse(1000, 100).message, 'quota exceeded for namespace team-a/*: usage 1000 B + 100 B would exceed the quota of 1 KiB');
  });

  it('retention: a tag kept by any rule stays; the others go with every reason; referrers follow their subject', () => {
    const now = 100 * H;
    const tag = (t: string, digest: string, pushedAgo: number, extra: Partial<RetentionTag> = {}): RetentionTag => ({ tag: t, digest, pushedAt: now - pushedAgo, ...extra });
    const tags = [
      tag('a', 'sha256:aa', 50 * H),
      tag('b', 'sha256:bb', 40 * H, { pulledAt: now - H }),
      tag('v1', 'sha256:cc', 60 * H),
      tag('c', 'sha256:dd', 2 * H),
      tag('d', 'sha256:ee', 1 * H),
      tag('sig-a', 'sha256:ff', 0, { subject: 'sha256:aa' }),
      tag('sha256-' + 'e'.repeat(64) + '.sig', 'sha256:99', 0),
      tag('rel', 'sha256:11', 70 * H),
    ];
    const verdicts = decideRetention([{ keepLast: 2, keepTags: ['v*'] }, { pulledWithin: 2 * H }], tags, now, (t) => t === 'rel');
    assert.deepEqual(verdicts.map((v) => v.detail.tag), ['a', 'sig-a', 'sha256-' + 'e'.repeat(64) + '.sig']);
    assert.equal(verdicts[0]!.reason, 'not among the 2 most recently pushed; matches none of v*; never pulled (keeps pulled within 2h)');
    assert.match(verdicts[1]!.reason, /follows its subject sha256:aa/);
    assert.deepEqual(decideRetention([{ untaggedAfter: H }], tags, now, () => false), [], 'a rule with only untaggedAfter deletes no tag');
  });

  it('retention keepTags: "semver" keeps any semantic version (optional leading v), "semver:RANGE" those in the range; reasons name the form', () => {
    const now = 100 * H;
    const tags = ['v1.2.3', '2.0.0', '2.5.1', 'v3.0.0', '2.1.0-rc.1', 'latest', '1.2', 'v1.2.3.4'].map((t, i): RetentionTag => ({ tag: t, digest: `sha256:${i}`, pushedAt: now - (i + 1) * H }));
    const dropped = (keepTags: string[]) => decideRetention([parsePolicies([{ repositories: ['**'], retention: { keepTags } }])[0]!.retention!], tags, now, () => false);

    const any = dropped(['semver']);
    assert.deepEqual(any.map((v) => v.detail.tag), ['latest', '1.2', 'v1.2.3.4']);
    assert.equal(any[0]!.reason, 'not a semantic version (keepTags semver)');

    const range = dropped(['semver:>=2.0.0 <3']);
    assert.deepEqual(range.map((v) => v.detail.tag), ['v1.2.3', 'v3.0.0', '2.1.0-rc.1', 'latest', '1.2', 'v1.2.3.4'], 'a prerelease satisfies a range as in npm: only when the range names one');
    assert.equal(range[0]!.reason, 'version 1.2.3 outside semver:>=2.0.0 <3');
    assert.equal(range[3]!.reason, 'not a semantic version (keepTags semver:>=2.0.0 <3)');

    const mixed = dropped(['release-*', 'semver:^2.1.0-0']);
    assert.deepEqual(mixed.map((v) => v.detail.tag), ['v1.2.3', '2.0.0', 'v3.0.0', 'latest', '1.2', 'v1.2.3.4']);
    assert.equal(mixed[0]!.reason, 'matches none of release-*; version 1.2.3 outside semver:^2.1.0-0');
  });

  it('keepTags semver forms are checked when the file is read: a bad range is a clear error', () => {
    assert.deepEqual(parsePolicies([{ repositories: ['ci/**'], retention: { keepTags: ['semver', 'semver:>=2.0.0 <3', 'v*'] } }])[0]!.retention, { keepTags: ['semver', 'semver:>=2.0.0 <3', 'v*'] });
    for (const [entry, message] of [
      ['semver:>=banana', /policies\[0\]\.retention\.keepTags: "semver:>=banana" is not a valid semantic version range/],
      ['semver:', /policies\[0\]\.retention\.keepTags: "semver:" names no range/],
    ] as const) {
      assert.throws(() => parsePolicies([{ repositories: ['ci/**'], retention: { keepTags: [entry] } }]), (e: Error) => message.test(e.message), entry);
    }
  });
});
