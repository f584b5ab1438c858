/** The time and connection limits and the audit log: from the file, the environment and flags, in that order; bad values refused. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';

function file(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-limits-'));
  writeFileSync(join(dir, 'c.yaml'), text);
  return join(dir, 'c.yaml');
}

describe('limits and audit log settings', () => {
  it('have explicit defaults', () => {
    const c = loadConfig({}, {});
    assert.equal(c.limits.headerTimeout, 30_000);
    assert.equal(c.limits.idleTimeout, 60_000);
    assert.equal(c.limits.connectionsPerClient, 128);
    assert.equal(c.limits.uploadSessionsPerUser, 1000);
    assert.equal(c.auditLog, undefined);
  });

  it('are read from the file, then the environment, then flags', () => {
    const config = file('log:\n  audit: /var/log/berth-audit.log\nlimits:\n  headerTimeout: 10s\n  idleTimeout: 2m\n  connectionsPerClient: 50\n  uploadSessionsPerUser: 20\n');
    const c = loadConfig({ config }, {});
    assert.deepEqual([c.limits.headerTimeout, c.limits.idleTimeout, c.limits.connectionsPerClient, c.limits.uploadSessionsPerUser, c.auditLog], [10_000, 120_000, 50, 20, '/var/log/berth-audit.log']);
    const e = loadConfig({ config }, { BERTH_HEADER_TIMEOUT: '5s', BERTH_IDLE_TIMEOUT: '0', BERTH_CONNECTIONS_PER_CLIENT: '0', BERTH_UPLOAD_SESSIONS_PER_USER: '7', BERTH_AUDIT_LOG: 'stderr' });
    assert.deepEqual([e.limits.headerTimeout, e.limits.idleTimeout, e.limits.connectionsPerClient, e.limits.uploadSessionsPerUser, e.auditLog], [5000, 0, 0, 7, 'stderr']);
    const f = loadConfig({ config, headerTimeout: '1s', idleTimeout: '3s', connectionsPerClient: '9', uploadSessionsPerUser: '0', auditLog: 'stdout' }, { BERTH_HEADER_TIMEOUT: '5s' });
    assert.deepEqual([f.limits.headerTimeout, f.limits.idleTimeout, f.limits.connectionsPerClient, f.limits.uploadSessionsPerUser, f.auditLog], [1000, 3000, 9, 0, 'stdout']);
  });

  it('refuse values that are not durations or counts', () => {
    assert.throws(() => loadConfig({ idleTimeout: 'soon' }, {}), ConfigError);
    assert.throws(() => loadConfig({ connectionsPerClient: '-1' }, {}), ConfigError);
    assert.throws(() => loadConfig({}, { BERTH_UPLOAD_SESSIONS_PER_USER: 'many' }), ConfigError);
    assert.throws(() => loadConfig({ config: file('limits:\n  headerTimeout: forever\n') }, {}), ConfigError);
    assert.throws(() => loadConfig({ config: file('limits:\n  connectionsPerClient: 1.5\n') }, {}), ConfigError);
  });
});

describe('client key of the per-client limits', () => {
  it('is the IPv4 address, and the /64 network for IPv6', async () => {
    const { clientKey } = await import('../../src/http/client-address.js');
    assert.equal(clientKey('203.0.113.9'), '203.0.113.9');
    assert.equal(clientKey('::ffff:203.0.113.9'), '203.0.113.9');
    assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(clientKey('2001:0DB8:0000:0000:ffff::2'), '2001:db8:0:0::/64');
    assert.equal(clientKey('2001:db8:0:1::2'), '2001:db8:0:1::/64');
    assert.equal(clientKey('::1'), '0:0:0:0::/64');
  });
});
