/**
 * Bearer tokens Berth must refuse: expired, not yet valid, without expiry,
 * wrong signature, wrong audience, unknown issuer, scope for another
 * repository, `alg: none`, HMAC keyed with the public key, tampered claims.
 * Tokens from trusted external services (by public key and by JWKS) are
 * accepted for exactly what they grant.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, createHmac, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, SignJWT } from 'jose';
import { authDir, basic, getToken, writeHtpasswd } from '../helpers/auth.js';
import { makeImage, RegistryClient } from '../helpers/registry-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

const REPO = 'team/app';
const PULL = [{ type: 'repository', name: REPO, actions: ['pull'] }];

function ecKey() {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

async function sign(key: KeyObject, alg: string, claims: Record<string, unknown>, opts: { iss?: string; aud?: string; exp?: number | null; nbf?: number } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).setIssuer(opts.iss ?? 'berth').setAudience(opts.aud ?? 'berth').setSubject('alice').setIssuedAt(now);
  if (opts.exp !== null) jwt = jwt.setExpirationTime(opts.exp ?? now + 300);
  if (opts.nbf !== undefined) jwt = jwt.setNotBefore(opts.nbf);
  return jwt.sign(key);
}

function b64(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

describe('bad tokens', () => {
  let server: TestServer;
  const own = ecKey();
  const external = ecKey();
  const jwksIssuer = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const stranger = ecKey();

  before(async () => {
    const dir = authDir();
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'pw', root: 'root-pw' });
    writeFileSync(join(dir, 'own.pem'), own.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(dir, 'external.pub.pem'), external.publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(jwksIssuer.publicKey)), alg: 'RS256', kid: 'k1' }] }));
    writeFileSync(
      join(dir, 'berth.yaml'),
      `auth:
  htpasswd: ${join(dir, 'htpasswd')}
  rules:
    - { repositories: ["team/*"], users: [alice], actions: [pull] }
    - { repositories: ["**"], users: [root], actions: ["*"] }
  token:
    key: ${join(dir, 'own.pem')}
    trusted:
      - { issuer: https://auth.example.com, publicKey: ${join(dir, 'external.pub.pem')} }
      - { issuer: https://jwks.example.com, jwks: ${join(dir, 'jwks.json')} }
`,
    );
    server = await startServer({ args: ['--config', join(dir, 'berth.yaml')], env: { BERTH_GC_ENABLED: 'false' } });
    const root = new RegistryClient(server.url);
    root.fetch = (path, init = {}) => fetch(server.url + path, { redirect: 'manual', ...init, headers: { authorization: basic('root', 'root-pw'), ...((init.headers as Record<string, string>) ?? {}) } });
    await root.pushImage(REPO, makeImage(), 'v1');
    await root.pushImage('other/app', makeImage(), 'v1');
  });
  after(async () => {
    assert.deepEqual(server.loggedErrors(), []);
    await server.stop();
  });

  const tags = (token: string, repo = REPO) => fetch(`${server.url}/v2/${repo}/tags/list`, { headers: { authorization: `Bearer ${token}` } });

  async function refused(token: string, error: 'invalid_token' | 'insufficient_scope' | undefined, what: string, status = 401): Promise<void> {
    const res = await tags(token);
    const text = await res.text();
    assert.equal(res.status, status, `${what}: ${res.status} ${text}`);
    assert.equal((JSON.parse(text) as { errors: { code: string }[] }).errors[0]!.code, status === 401 ? 'UNAUTHORIZED' : 'DENIED', what);
    if (status === 401) {
      const challenge = res.headers.get('www-authenticate') ?? '';
      assert.match(challenge, new RegExp(`^Bearer realm="[^"]+",service="berth",scope="repository:${REPO}:pull"`), what);
      if (error) assert.match(challenge, new RegExp(`error="${error}"`), what);
    }
  }

  it('accepts the valid ones (controls)', async () => {
    assert.equal((await tags(await getToken(server.url, basic('alice', 'pw'), [`repository:${REPO}:pull`]))).status, 200, 'token from the endpoint');
    assert.equal((await tags(await sign(own.privateKey, 'ES256', { access: PULL }))).status, 200, 'own key');
    assert.equal((await tags(await sign(external.privateKey, 'ES256', { access: PULL }, { iss: 'https://auth.example.com' }))).status, 200, 'external by public key');
    assert.equal((await tags(await sign(jwksIssuer.privateKey, 'RS256', { access: PULL }, { iss: 'https://jwks.example.com' }))).status, 200, 'external by JWKS');
  });

  it('refuses expired, premature and expiry-less tokens', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refused(await sign(own.privateKey, 'ES256', { access: PULL }, { exp: now - 120 }), 'invalid_token', 'expired');
    await refused(await sign(own.privateKey, 'ES256', { access: PULL }, { nbf: now + 600 }), 'invalid_token', 'not yet valid');
    await refused(await sign(own.privateKey, 'ES256', { access: PULL }, { exp: null }), 'invalid_token', 'no exp');
  });

  it('refuses a wrong signature, an unknown issuer and a wrong audience', async () => {
    await refused(await sign(stranger.privateKey, 'ES256', { access: PULL }), 'invalid_token', 'signed by another key as berth');
    await refused(await sign(stranger.privateKey, 'ES256', { access: PULL }, { iss: 'https://auth.example.com' }), 'invalid_token', 'signed by another key as the external issuer');
    await refused(await sign(stranger.privateKey, 'ES256', { access: PULL }, { iss: 'https://evil.example.com' }), 'invalid_token', 'unknown issuer');
    await refused(await sign(own.privateKey, 'ES256', { access: PULL }, { aud: 'another-registry' }), 'invalid_token', 'wrong audience');
    await refused(await sign(external.privateKey, 'ES256', { access: PULL }, { iss: 'https://auth.example.com', aud: 'x' }), 'invalid_token', 'external, wrong audience');
  });

  it('refuses alg none, HMAC with the public key, tampered claims and garbage', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'berth', aud: 'berth', sub: 'alice', exp: now + 300, access: PULL };
    await refused(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`, 'invalid_token', 'alg none');
    await refused(`${b64({ alg: 'none' })}.${b64(claims)}`, 'invalid_token', 'alg none, two parts');
    const pub = own.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const hsInput = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
    await refused(`${hsInput}.${createHmac('sha256', pub).update(hsInput).digest('base64url')}`, 'invalid_token', 'HS256 keyed with the public key');
    // Tampered: a valid pull token whose payload is swapped for one granting more, signature kept.
    const valid = await sign(own.privateKey, 'ES256', { access: [{ type: 'repository', name: 'other/app', actions: ['pull'] }] });
    const [h, , s] = valid.split('.');
    await refused(`${h}.${b64({ ...claims, access: [{ type: 'repository', name: REPO, actions: ['*'] }] })}.${s}`, 'invalid_token', 'tampered claims');
    const [h2, p2, s2] = (await sign(own.privateKey, 'ES256', { access: PULL })).split('.');
    await refused(`${h2}.${p2}.${s2!.slice(0, -4)}AAAA`, 'invalid_token', 'flipped signature bytes');
    await refused(`${h2}.${p2}`, 'invalid_token', 'signature stripped');
    for (const junk of ['', 'x', 'a.b.c', '....', `${h2}.${p2}.${s2}.extra`, 'eyJ'.repeat(50)]) await refused(junk, 'invalid_token', `garbage "${junk.slice(0, 20)}"`);
  });

  it('refuses a token for another repository or action', async () => {
    // alice may pull team/*: a token without it asks for a new one (401 insufficient_scope)…
    await refused(await sign(own.privateKey, 'ES256', { access: [{ type: 'repository', name: 'team/other', actions: ['pull'] }] }), 'insufficient_scope', 'scope for another repository');
    await refused(await sign(own.privateKey, 'ES256', { access: [{ type: 'repository', name: REPO, actions: 'pull' }] }), 'insufficient_scope', 'malformed access claim grants nothing');
    await refused(await sign(external.privateKey, 'ES256', { access: [{ type: 'repository', name: 'other/app', actions: ['pull'] }] }, { iss: 'https://auth.example.com' }), 'insufficient_scope', 'external, another repository');
    // …while what Berth's rules never grant her is DENIED.
    const token = await sign(own.privateKey, 'ES256', { access: [{ type: 'repository', name: 'other/app', actions: ['pull'] }].slice(0, 0) });
    const res = await tags(token, 'other/app');
    assert.equal(res.status, 403, 'alice may never pull other/app');
    const push = await fetch(`${server.url}/v2/${REPO}/blobs/uploads/`, { method: 'POST', headers: { authorization: `Bearer ${await sign(own.privateKey, 'ES256', { access: PULL })}` } });
    assert.equal(push.status, 403, 'a pull token does not push, and the rules never let alice push');
    const extPush = await fetch(`${server.url}/v2/${REPO}/blobs/uploads/`, { method: 'POST', headers: { authorization: `Bearer ${await sign(external.privateKey, 'ES256', { access: PULL }, { iss: 'https://auth.example.com' })}` } });
    assert.equal(extPush.status, 401, 'an external pull token does not push');
    const catalog = await fetch(`${server.url}/v2/_catalog`, { headers: { authorization: `Bearer ${await sign(own.privateKey, 'ES256', { access: PULL })}` } });
    assert.equal(catalog.status, 401, 'the catalog needs registry:catalog:*');
  });

  it('the token endpoint refuses another service', async () => {
    const res = await fetch(`${server.url}/auth/token?service=other&scope=repository:${REPO}:pull`, { headers: { authorization: basic('alice', 'pw') } });
    assert.equal(res.status, 400);
  });
});
