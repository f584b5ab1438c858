/** `berth policy check FILE`: validates a file's policies and shows which repositories each matches today. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { policyConfig } from '../helpers/policy.js';
import { makeImage, RegistryClient } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

describe('berth policy check', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } });
    const client = new RegistryClient(server.url);
    for (const repo of ['ci/app', 'ci/tools/lint', 'team-a/web', 'other']) await client.pushImage(repo, makeImage({ layers: 1 }), 'v1');
  });
  after(() => server.stop());

  it('a valid file: each policy described, with the repositories it matches today', async () => {
    const file = policyConfig(`
policies:
  - repositories: ["ci/**"]
    retention: { keepLast: 10, keepTags: ["v*"], untaggedAfter: 7d, pulledWithin: 30d }
  - repositories: ["team-a/**"]
    quota: 50GiB
    immutableTags: ["v*", "release-*"]
`);
    const r = await berth(['policy', 'check', file, '--data', server.dataDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /2 policies, valid/);
    assert.match(r.stdout, /policy 0: repositories ci\/\*\*\n  retention: keep the last 10 pushed; keep tags v\*; keep tags pulled within 30d; delete untagged manifests after 7d\n  matches 2 repositories today:\n    ci\/app\n    ci\/tools\/lint\n/);
    assert.match(r.stdout, /policy 1: repositories team-a\/\*\*\n  quota 50 GiB .*\n  immutable tags: v\*, release-\*\n  matches 1 repository today:\n    team-a\/web\n/);
  });

  it('an invalid file: exit status 2 and the reason, naming the rule', async () => {
    for (const [yaml, reason] of [
      ['policies:\n  - repositories: ["a/**"]\n    quota: lots\n', /policies\[0\]\.quota "lots"/],
      ['policies:\n  - repositories: []\n    quota: 1GiB\n', /policies\[0\]\.repositories must be a non-empty list/],
      ['policies:\n  - repositories: ["a"]\n    retention: { keepLast: 3, keepForever: true }\n', /policies\[0\]\.retention: unknown setting "keepForever"/],
      ['policies:\n  - repositories: ["a"]\n', /policies\[0\] sets none of quota, immutableTags, retention/],
      ['policies: {}\n', /policies must be a list/],
    ] as const) {
      const r = await berth(['policy', 'check', policyConfig(yaml)]);
      assert.equal(r.code, 2, `${yaml}: ${r.stdout}`);
      assert.match(r.stderr, reason);
    }
  });
});
