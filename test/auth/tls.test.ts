/**
 * TLS: HTTPS with the configured certificate (reloaded when the files
 * change), HSTS on TLS responses, a plain-HTTP listener beside it for
 * loopback, and X-Forwarded-Proto/-Host believed from a trusted proxy when
 * Berth advertises its token realm.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authDir, basic, writeHtpasswd } from '../helpers/auth.js';
import { startServer, type TestServer } from '../helpers/server.js';

function makeCert(dir: string, name: string): void {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`)], { stdio: 'ignore' });
}

function httpsGet(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers, agent: false }, (res) => {
      const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, fingerprint }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TLS', () => {
  let server: TestServer;
  let dir: string;
  let plain: string;

  before(async () => {
    dir = authDir();
    makeCert(dir, 'one');
    makeCert(dir, 'two');
    writeFileSync(join(dir, 'tls.crt'), readFileSync(join(dir, 'one.crt')));
    writeFileSync(join(dir, 'tls.key'), readFileSync(join(dir, 'one.key')));
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw' });
    writeFileSync(join(dir, 'berth.yaml'), `auth:\n  htpasswd: ${join(dir, 'htpasswd')}\ntls:\n  cert: ${join(dir, 'tls.crt')}\n  key: ${join(dir, 'tls.key')}\n  plainAddr: 127.0.0.1:0\nproxy:\n  trusted: [127.0.0.1]\n`);
    server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    plain = /"plainAddr":"([^"]+)"/.exec(server.output())![1]!;
  });
  after(async () => {
    assert.deepEqual(server.loggedErrors(), []);
    await server.stop();
  });

  it('serves HTTPS with HSTS, and the challenge names the https realm', async () => {
    const ca = Buffer.concat([readFileSync(join(dir, 'one.crt')), readFileSync(join(dir, 'two.crt'))]);
    const res = await httpsGet(`https://${server.host}/v2/`, ca);
    assert.equal(res.status, 401);
    assert.equal(res.headers['strict-transport-security'], 'max-age=31536000');
    assert.match(String(res.headers['www-authenticate']), new RegExp(`^Bearer realm="https://${server.host}/auth/token"`));
    const ok = await httpsGet(`https://${server.host}/v2/`, ca, { authorization: basic('alice', 'alice-pw') });
    assert.equal(ok.status, 200);
  });

  it('reloads the certificate when the files change', async () => {
    const ca = Buffer.concat([readFileSync(join(dir, 'one.crt')), readFileSync(join(dir, 'two.crt'))]);
    const before = (await httpsGet(`https://${server.host}/healthz`, ca)).fingerprint;
    writeFileSync(join(dir, 'tls.key'), readFileSync(join(dir, 'two.key')));
    writeFileSync(join(dir, 'tls.crt'), readFileSync(join(dir, 'two.crt')));
    const deadline = Date.now() + 10_000;
    let now = before;
    while (now === before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      now = (await httpsGet(`https://${server.host}/healthz`, ca)).fingerprint;
    }
    assert.notEqual(now, before, 'a new connection gets the new certificate');
  });

  it('keeps plain HTTP on the extra listener, and believes X-Forwarded-* from a trusted proxy', async () => {
    const res = await fetch(`http://${plain}/v2/`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('strict-transport-security'), null, 'no HSTS over plain HTTP');
    assert.match(res.headers.get('www-authenticate') ?? '', new RegExp(`^Bearer realm="http://${plain}/auth/token"`));
    const proxied = await fetch(`http://${plain}/v2/`, { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'registry.example.com' } });
    assert.match(proxied.headers.get('www-authenticate') ?? '', /^Bearer realm="https:\/\/registry\.example\.com\/auth\/token"/);
  });
});
