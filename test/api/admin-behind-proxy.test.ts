/**
 * Finding 4 of the security review: behind a trusted proxy, the client of
 * /admin/* and /metrics is the forwarded address (the right-most hop the
 * proxy rules do not trust), not the proxy's socket. A request relayed from
 * anywhere must not count as a loopback client.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { authDir, writeHtpasswd } from '../helpers/auth.js';
import { startServer } from '../helpers/server.js';

const remote = { 'x-forwarded-for': '203.0.113.9' };

describe('admin endpoints behind a trusted proxy', () => {
  it('without auth: /admin/gc refuses a client forwarded from elsewhere, and serves a loopback one', async () => {
    const server = await startServer({ args: ['--trusted-proxies', '127.0.0.1'], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const relayed = await fetch(`${server.url}/admin/gc?grace=0`, { method: 'POST', headers: remote });
      assert.equal(relayed.status, 403, await relayed.text());
      // A spoofed loopback hop before the real client changes nothing: the proxy appended the real one.
      const spoofed = await fetch(`${server.url}/admin/gc?dryRun=1`, { method: 'POST', headers: { 'x-forwarded-for': '127.0.0.1, 203.0.113.9' } });
      assert.equal(spoofed.status, 403);
      // The proxy relaying a client on its own machine, and a direct local call, are loopback.
      assert.equal((await fetch(`${server.url}/admin/gc?dryRun=1`, { method: 'POST', headers: { 'x-forwarded-for': '127.0.0.1' } })).status, 200);
      assert.equal((await fetch(`${server.url}/admin/gc?dryRun=1`, { method: 'POST' })).status, 200);
    } finally {
      await server.stop();
    }
  });

  it('with auth and no admins: /admin/gc and /metrics refuse a forwarded remote client', async () => {
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw' });
    writeFileSync(join(dir, 'berth.yaml'), `auth:\n  htpasswd: ${join(dir, 'htpasswd')}\nproxy:\n  trusted: [127.0.0.1]\n`);
    const server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      assert.equal((await fetch(`${server.url}/admin/gc?grace=0`, { method: 'POST', headers: remote })).status, 403);
      assert.equal((await fetch(`${server.url}/metrics`, { headers: remote })).status, 403);
      assert.equal((await fetch(`${server.url}/metrics`)).status, 200, 'a direct loopback client still reads /metrics');
    } finally {
      await server.stop();
    }
  });
});
