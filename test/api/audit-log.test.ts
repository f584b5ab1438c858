/**
 * The audit trail (issue 12): the request log names the client (as the
 * trusted-proxy rules define it) and the user, and security events — refused
 * credentials, denials, deletes, admin calls — go to a separate audit log
 * (`log.audit`), one JSON line each, while pulls and pushes write none.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { authDir, basic, writeHtpasswd } from '../helpers/auth.js';
import { makeImage, randomBlob, RegistryClient } from '../helpers/registry-client.js';
import { startServer } from '../helpers/server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function as(url: string, auth: string): RegistryClient {
  const c = new RegistryClient(url);
  c.fetch = (path, init = {}) => fetch(url + path, { redirect: 'manual', ...init, headers: { authorization: auth, 'x-forwarded-for': '198.51.100.7', ...((init.headers as Record<string, string>) ?? {}) } });
  return c;
}

describe('audit log', () => {
  it('records denials, deletes and admin calls with user, client, repository and request id; nothing for pulls', async () => {
    const dir = authDir();
    const auditFile = join(dir, 'logs', 'audit.log');
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw', bob: 'bob-pw' });
    writeFileSync(
      join(dir, 'berth.yaml'),
      `log:
  audit: ${auditFile}
auth:
  htpasswd: ${join(dir, 'htpasswd')}
  rules:
    - { repositories: ["**"], users: [alice], actions: [pull, push, delete] }
    - { repositories: ["**"], users: [bob], actions: [pull] }
proxy:
  trusted: [127.0.0.1]
`,
    );
    const server = await startServer({ args: ['--config', join(dir, 'berth.yaml'), '--log-level', 'info'], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const alice = as(server.url, basic('alice', 'alice-pw'));
      const bob = as(server.url, basic('bob', 'bob-pw'));
      const image = makeImage();
      await alice.pushImage('team/app', image, 'v1');
      await alice.pushImage('team/app', image, 'v2');
      // A blob no manifest references (a referenced one may not be deleted).
      const loose = randomBlob(512);
      assert.equal((await alice.pushBlob('team/app', loose)).status, 201);
      assert.equal((await bob.fetch('/v2/team/app/manifests/v1', { headers: { accept: image.mediaType } })).status, 200);
      assert.equal((await fetch(`${server.url}/v2/`)).status, 401, 'the anonymous challenge');
      const linesBefore = existsSync(auditFile) ? readFileSync(auditFile, 'utf8') : '';

      const denied = await bob.fetch('/v2/team/app/manifests/v1', { method: 'DELETE', headers: { 'x-request-id': 'bob-delete-1' } });
      assert.equal(denied.status, 403);
      assert.equal((await as(server.url, basic('alice', 'wrong')).fetch('/v2/team/app/tags/list')).status, 401);
      assert.equal((await alice.fetch('/v2/team/app/manifests/v2', { method: 'DELETE', headers: { 'x-request-id': 'alice-tag-1' } })).status, 202);
      assert.equal((await alice.fetch(`/v2/team/app/blobs/${loose.digest}`, { method: 'DELETE' })).status, 202);
      assert.equal((await fetch(`${server.url}/admin/gc?dryRun=1`, { method: 'POST', headers: { 'x-forwarded-for': '203.0.113.9' } })).status, 403);
      assert.equal((await fetch(`${server.url}/admin/gc?dryRun=1`, { method: 'POST' })).status, 200);
      await sleep(500);

      assert.equal(linesBefore, '', 'pushes, pulls and the anonymous challenge write no audit line');
      const lines = readFileSync(auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(lines.length, 7, JSON.stringify(lines, null, 1));
      for (const l of lines) assert.match(String(l.time), /^\d{4}-\d\d-\d\dT/);
      assert.deepEqual(
        lines.map((l) => [l.event, l.outcome, l.user, l.client]),
        [
          ['delete', 'denied', 'bob', '198.51.100.7'],
          // The authentication layer's own event, then the HTTP layer's refusal.
          ['login-failed', 'failure', 'alice', '198.51.100.7'],
          ['denied', 'denied', 'alice', '198.51.100.7'],
          ['delete', 'success', 'alice', '198.51.100.7'],
          ['delete', 'success', 'alice', '198.51.100.7'],
          ['admin', 'denied', undefined, '203.0.113.9'],
          ['admin', 'success', undefined, '127.0.0.1'],
        ],
      );
      assert.equal(lines[0]!.repository, 'team/app');
      assert.equal(lines[0]!.requestId, 'bob-delete-1');
      assert.equal(lines[0]!.target, 'tag');
      assert.equal(lines[3]!.target, 'tag');
      assert.equal(lines[3]!.requestId, 'alice-tag-1');
      assert.equal(lines[4]!.target, 'blob');
      assert.ok(!readFileSync(auditFile, 'utf8').includes('alice-pw') && !readFileSync(auditFile, 'utf8').includes('wrong'), 'no password in the audit log');

      // The request log names the client and the user too.
      const request = server
        .output()
        .split('\n')
        .filter((l) => l.includes('"msg":"request"') && l.includes('alice-tag-1'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(request.length, 1);
      assert.equal(request[0]!.client, '198.51.100.7');
      assert.equal(request[0]!.user, 'alice');
    } finally {
      await server.stop();
    }
  });

  it('without auth, deletes are recorded with the client; no audit log unless configured', async () => {
    const dir = authDir();
    const auditFile = join(dir, 'audit.log');
    const server = await startServer({ args: ['--audit-log', auditFile], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const c = new RegistryClient(server.url);
      await c.pushImage('open/app', makeImage(), 'v1');
      assert.equal((await c.fetch('/v2/open/app/manifests/v1', { method: 'DELETE' })).status, 202);
      await sleep(500);
      const lines = readFileSync(auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.deepEqual(
        lines.map((l) => [l.event, l.outcome, l.user, l.client, l.repository, l.target]),
        [['delete', 'success', undefined, '127.0.0.1', 'open/app', 'tag']],
      );
    } finally {
      await server.stop();
    }
  });
});
