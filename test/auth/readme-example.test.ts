/**
 * The configuration shown in README's "Securing Berth" loads, and a server
 * started with it behaves as the README says.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { authDir, basic, getToken, writeHtpasswd } from '../helpers/auth.js';
import { makeImage, RegistryClient } from '../helpers/registry-client.js';
import { startServer } from '../helpers/server.js';

const README = fileURLToPath(new URL('../../../README.md', import.meta.url));

/** The YAML block after the `<!-- securing-example -->` marker, with its paths moved under `dir`. */
function example(dir: string): string {
  const text = readFileSync(README, 'utf8');
  const m = /<!-- securing-example -->\n```yaml\n([\s\S]*?)```/.exec(text);
  assert.ok(m, 'README has the securing example');
  return m[1]!.replaceAll('/etc/berth/', `${dir}/`).replace('127.0.0.1:5080', '127.0.0.1:0');
}

function client(url: string, auth?: string): RegistryClient {
  const c = new RegistryClient(url);
  c.fetch = (path, init = {}) => fetch(url + path, { redirect: 'manual', ...init, headers: { ...(auth ? { authorization: auth } : {}), ...((init.headers as Record<string, string>) ?? {}) } });
  return c;
}

describe('README: Securing Berth example', () => {
  it('parses into the settings it describes', () => {
    const dir = authDir();
    writeFileSync(join(dir, 'berth.yaml'), example(dir));
    const config = loadConfig({ config: join(dir, 'berth.yaml') }, {});
    assert.equal(config.auth?.htpasswd, join(dir, 'htpasswd'));
    assert.equal(config.auth?.rules.length, 4);
    assert.deepEqual(config.auth?.rules[3]!.actions.sort(), ['delete', 'pull', 'push']);
    assert.equal(config.auth?.token.service, 'registry.example.com');
    assert.equal(config.auth?.token.ttl, 5 * 60_000);
    assert.equal(config.auth?.failedLoginDecay, 60_000);
    assert.deepEqual(config.auth?.admins, { users: [], groups: ['ops'] });
    assert.equal(config.tls?.cert, join(dir, 'tls.crt'));
    assert.deepEqual(config.trustedProxies, ['127.0.0.1']);
    assert.deepEqual(config.limits, { maxHeaderBytes: 16384, uploadsPerClient: 16, headerTimeout: 30_000, idleTimeout: 60_000, connectionsPerClient: 128, uploadSessionsPerUser: 1000 });
  });

  it('runs as the README says', async () => {
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'a-pw', bob: 'b-pw', root: 'r-pw', carol: 'c-pw' });
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt')], { stdio: 'ignore' });
    writeFileSync(join(dir, 'berth.yaml'), example(dir));
    const server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      // Over the plain loopback listener (the main one speaks TLS).
      const url = `http://${/"plainAddr":"([^"]+)"/.exec(server.output())![1]}`;
      const image = makeImage();
      await client(url, basic('root', 'r-pw')).pushImage('public/app', image, 'v1');
      await client(url, basic('alice', 'a-pw')).pushImage('team-a/app', image, 'v1');
      const res = await client(url).fetch('/v2/public/app/manifests/v1', { headers: { accept: image.mediaType } });
      assert.equal(res.status, 200, 'anonymous pulls public/**');
      assert.equal((await client(url).fetch('/v2/team-a/app/tags/list')).status, 401, 'anonymous does not pull team-a/**');
      assert.equal((await client(url, basic('carol', 'c-pw')).fetch('/v2/team-a/app/tags/list')).status, 200, 'any user pulls **');
      assert.equal((await client(url, basic('carol', 'c-pw')).fetch('/v2/team-a/app/blobs/uploads/', { method: 'POST' })).status, 403, 'but does not push');
      const challenge = (await client(url).fetch('/v2/')).headers.get('www-authenticate') ?? '';
      assert.match(challenge, /service="registry\.example\.com"/);
      const token = await getToken(url, basic('bob', 'b-pw'), ['repository:team-a/app:push,pull'], 'registry.example.com');
      assert.equal((await client(url, `Bearer ${token}`).fetch('/v2/team-a/app/blobs/uploads/', { method: 'POST' })).status, 202, 'team-a pushes with a token');
      assert.equal((await client(url, basic('alice', 'a-pw')).fetch('/metrics')).status, 403);
      assert.equal((await client(url, basic('root', 'r-pw')).fetch('/metrics')).status, 200);
    } finally {
      await server.stop();
    }
  });
});
