/** The notifications settings: the reference registry's section as it is, Berth's keys, --notify, bad input. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import { accepts, outboxOptions, pullsWanted } from '../../src/events/config.js';
import { backoffDelay } from '../../src/events/dispatcher.js';
import { sign, verify } from '../../src/events/signing.js';

function withFile(yaml: string, fn: (file: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'berth-notify-conf-'));
  try {
    const file = join(dir, 'berth.yml');
    writeFileSync(file, yaml);
    fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// The notifications section of a reference registry config, as its documentation shows it.
const REFERENCE = `
notifications:
  events:
    includereferences: true
  endpoints:
    - name: alistener
      disabled: false
      url: https://my.listener.com/event
      headers:
        Authorization: [Bearer abc123]
      timeout: 1s
      threshold: 10
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream
      ignore:
        mediatypes:
           - application/octet-stream
        actions:
           - pull
    - name: off
      disabled: true
      url: http://nowhere
`;

describe('notifications configuration', () => {
  it("takes the reference registry's notifications section as it is", () => {
    withFile(REFERENCE, (file) => {
      const n = loadConfig({ config: file }, {}).notifications!;
      assert.equal(n.endpoints.length, 1, 'a disabled endpoint is left out');
      const e = n.endpoints[0]!;
      assert.equal(e.name, 'alistener');
      assert.equal(e.url, 'https://my.listener.com/event');
      assert.deepEqual(e.headers, { Authorization: ['Bearer abc123'] });
      assert.equal(e.timeout, 1000);
      assert.equal(e.threshold, 10);
      assert.equal(e.backoff, 1000);
      assert.ok(!accepts(e, { action: 'push', mediaType: 'application/octet-stream' }));
      assert.ok(!accepts(e, { action: 'pull', mediaType: 'application/vnd.oci.image.manifest.v1+json' }));
      assert.ok(accepts(e, { action: 'push', mediaType: 'application/vnd.oci.image.manifest.v1+json' }));
      assert.ok(accepts(e, { action: 'delete' }));
      assert.equal(pullsWanted(n), false, 'no endpoint takes pulls');
    });
  });

  it('--notify adds endpoints (repeatable); none configured means no outbox at all', () => {
    assert.equal(outboxOptions(loadConfig({}, {}).notifications), undefined);
    const c = loadConfig({ notify: ['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b'] }, {});
    assert.deepEqual(c.notifications!.endpoints.map((e) => e.name), ['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b']);
    assert.equal(outboxOptions(c.notifications)!.endpoints.length, 2);
    assert.equal(pullsWanted(c.notifications), true);
    assert.equal(pullsWanted(loadConfig({ notify: ['http://127.0.0.1:9/a'], notifyPulls: false }, {}).notifications), false);
  });

  it('refuses bad settings with a clear error', () => {
    const bad: [string, RegExp][] = [
      ['notifications: { endpoints: [{ name: a, url: "ftp://x" }] }', /http/],
      ['notifications: { endpoints: [{ name: a, url: "not a url" }] }', /invalid url/],
      ['notifications: { endpoints: [{ url: "http://x" }] }', /name is required/],
      ['notifications: { endpoints: [{ name: a, url: "http://x", colour: red }] }', /unknown setting "colour"/],
      ['notifications: { endpoints: [{ name: a, url: "http://x" }, { name: a, url: "http://y" }] }', /used twice/],
      ['notifications: { endpoints: [{ name: a, url: "http://x", timeout: soon }] }', /timeout/],
      ['notifications: { endpoints: [{ name: a, url: "http://x", batch: 0 }] }', /batch/],
      ['notifications: { endpoints: [{ name: a, url: "http://x", ignore: { actions: push } }] }', /list of strings/],
      ['notifications: { endpoint: [] }', /unknown setting "endpoint"/],
      ['notifications: [1]', /mapping/],
    ];
    for (const [yaml, message] of bad) withFile(yaml, (file) => assert.throws(() => loadConfig({ config: file }, {}), (e: unknown) => e instanceof ConfigError && message.test(e.message), yaml));
    assert.throws(() => loadConfig({ notify: ['nope'] }, {}), ConfigError);
  });

  it('backs off after threshold failures, doubling up to maxbackoff', () => {
    const e = { threshold: 2, backoff: 1000, maxBackoff: 5000 };
    assert.deepEqual([1, 2, 3, 4, 5].map((f) => backoffDelay(e, f)), [50, 1000, 2000, 4000, 5000]);
  });

  it('signs the timestamp and the body', () => {
    const now = Date.UTC(2026, 0, 1);
    const header = sign('k', '{"events":[]}', now);
    assert.match(header, /^t=\d+,v1=[0-9a-f]{64}$/);
    assert.ok(verify('k', '{"events":[]}', header, 300, now));
    assert.ok(!verify('k', '{"events":[1]}', header, 300, now), 'another body');
    assert.ok(!verify('k', '{"events":[]}', header, 300, now + 3_600_000), 'too old');
    assert.ok(!verify('k', '{"events":[]}', 'garbage', 300, now));
  });
});
