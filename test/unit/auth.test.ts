/** Units of src/auth/: patterns and rules, scopes, the login limiter, htpasswd, config validation. */
import assert from 'node:assert/strict';
import bcrypt from 'bcryptjs';
import { generateKeyPairSync } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { defaultAuth } from '../../src/auth/config.js';
import { Htpasswd } from '../../src/auth/htpasswd.js';
import { LoginLimiter } from '../../src/auth/login-limiter.js';
import { compilePattern, Policy } from '../../src/auth/rules.js';
import { bearerChallenge, parseScope } from '../../src/auth/scope.js';
import { loadSigningKey, TokenError, TokenService } from '../../src/auth/tokens.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { authDir } from '../helpers/auth.js';

describe('repository patterns', () => {
  const cases: [string, string, boolean][] = [
    ['team-a/*', 'team-a/app', true],
    ['team-a/*', 'team-a/app/sub', false],
    ['team-a/*', 'team-a', false],
    ['team-a/**', 'team-a/app/sub', true],
    ['**', 'anything/at/all', true],
    ['*', 'top', true],
    ['*', 'a/b', false],
    ['app.v1', 'appxv1', false],
    ['*/app', 'x/app', true],
    ['a/*/c', 'a/b/c', true],
  ];
  for (const [pattern, name, expected] of cases) {
    it(`${pattern} ${expected ? 'matches' : 'does not match'} ${name}`, () => assert.equal(compilePattern(pattern).test(name), expected));
  }
});

describe('policy', () => {
  const policy = new Policy({
    groups: { devs: ['ann'], ops: ['root'] },
    rules: [
      { repositories: ['dev/**'], users: [], groups: ['devs'], anonymous: false, actions: ['pull', 'push'] },
      { repositories: ['pub/*'], users: [], groups: [], anonymous: true, actions: ['pull'] },
      { repositories: ['**'], users: ['*'], groups: [], anonymous: false, actions: ['pull'] },
      { repositories: ['x'], users: ['bo'], groups: [], anonymous: false, actions: ['delete'] },
    ],
    admins: { users: [], groups: ['ops'] },
  });
  it('grants the union of matching rules and nothing else', () => {
    assert.deepEqual([...policy.allowed('ann', 'dev/a/b')].sort(), ['pull', 'push']);
    assert.deepEqual([...policy.allowed('bo', 'x')].sort(), ['delete', 'pull']);
    assert.deepEqual([...policy.allowed(null, 'pub/a')], ['pull']);
    assert.deepEqual([...policy.allowed(null, 'dev/a')], []);
    assert.equal(policy.can('bo', 'dev/a', 'push'), false);
    assert.equal(policy.isAdmin('root'), true);
    assert.equal(policy.isAdmin('ann'), false);
  });
});

describe('scopes and challenges', () => {
  it('parses repository and registry scopes, names with a port', () => {
    assert.deepEqual(parseScope('repository:a/b:pull,push'), { type: 'repository', name: 'a/b', actions: ['pull', 'push'] });
    assert.deepEqual(parseScope('repository:host:5000/a:pull'), { type: 'repository', name: 'host:5000/a', actions: ['pull'] });
    assert.deepEqual(parseScope('repository(plugin):a:pull'), { type: 'repository', name: 'a', actions: ['pull'] });
    assert.deepEqual(parseScope('registry:catalog:*'), { type: 'registry', name: 'catalog', actions: ['*'] });
    for (const bad of ['', 'repository', 'repository:a', ':a:pull', 'repository::pull', 'Repo!:a:pull', 'repository:a:']) assert.equal(parseScope(bad), undefined, bad);
  });
  it('formats a challenge without letting a value break out of its quotes', () => {
    assert.equal(bearerChallenge('https://r/auth/token', 'berth', 'repository:a:pull'), 'Bearer realm="https://r/auth/token",service="berth",scope="repository:a:pull"');
    assert.equal(bearerChallenge('x"y', 's\r\n'), 'Bearer realm="xy",service="s"');
  });
});

describe('login limiter', () => {
  it('blocks after max failures, per (client, user), until the score decays', () => {
    const l = new LoginLimiter(3, 1000);
    const t0 = 1_000_000;
    for (let i = 0; i < 3; i++) l.failed('1.1.1.1', 'u', t0);
    assert.ok(l.retryAfter('1.1.1.1', 'u', t0) > 0);
    assert.equal(l.retryAfter('2.2.2.2', 'u', t0), 0, 'another client');
    assert.equal(l.retryAfter('1.1.1.1', 'v', t0), 0, 'another user');
    assert.equal(l.retryAfter('1.1.1.1', 'u', t0 + 3000), 0, 'decayed');
    l.failed('1.1.1.1', 'w', t0);
    l.succeeded('1.1.1.1', 'w');
    assert.equal(l.retryAfter('1.1.1.1', 'w', t0), 0);
  });
});

describe('htpasswd', () => {
  it('accepts bcrypt entries only, and checks unknown users against a dummy hash of the same cost', async () => {
    const dir = authDir();
    const file = join(dir, 'htpasswd');
    const hash = bcrypt.hashSync('pw', 8).replace(/^\$2b\$/, '$2y$');
    writeFileSync(file, `# comment\nann:${hash}\nold:$apr1$abc$defghijklmnopqrstuvwx\nbad line\n\n`);
    const h = new Htpasswd(file);
    assert.equal(h.size, 1);
    assert.equal(await h.verify('ann', 'pw'), true);
    assert.equal(await h.verify('ann', 'nope'), false);
    assert.equal(await h.verify('old', 'x'), false);
    // Same work for a known and an unknown user: medians of a few checks within a factor of 3.
    const time = async (user: string) => {
      const samples: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t = process.hrtime.bigint();
        await h.verify(user, 'wrong');
        samples.push(Number(process.hrtime.bigint() - t));
      }
      return samples.sort((a, b) => a - b)[2]!;
    };
    const known = await time('ann');
    const unknown = await time('nobody');
    assert.ok(unknown > known / 3 && unknown < known * 3, `known ${known} ns, unknown ${unknown} ns`);
  });
});

describe('security config', () => {
  const load = (yaml: string, env: NodeJS.ProcessEnv = {}) => {
    const dir = authDir();
    writeFileSync(join(dir, 'c.yaml'), yaml);
    return loadConfig({ config: join(dir, 'c.yaml') }, env);
  };
  it('is off by default', () => {
    const c = loadConfig({}, {});
    assert.equal(c.auth, undefined);
    assert.equal(c.tls, undefined);
  });
  it('--htpasswd alone is the quick start rule', () => {
    const c = loadConfig({ htpasswd: '/x/htpasswd' }, {});
    assert.deepEqual(c.auth?.rules, [{ repositories: ['**'], users: ['*'], groups: [], anonymous: false, actions: ['pull', 'push', 'delete'] }]);
    assert.equal(c.auth?.token.enabled, true);
    assert.deepEqual(loadConfig({}, { BERTH_HTPASSWD: '/y' }).auth?.htpasswd, '/y');
  });
  it('refuses mistakes with a message', () => {
    const bad = [
      'auth:\n  htpasswd: x\n  rules:\n    - { repositories: ["a"], actions: [fly] }\n',
      'auth:\n  htpasswd: x\n  rules:\n    - { actions: [pull] }\n',
      'auth:\n  htpasswd: x\n  rules:\n    - { repositories: ["a"], groups: [nope], actions: [pull] }\n',
      'auth:\n  htpasswd: x\n  unknown: 1\n',
      'auth:\n  rules:\n    - { repositories: ["a"], users: [u], actions: [pull] }\n',
      'auth:\n  htpasswd: x\n  token:\n    trusted:\n      - { issuer: i }\n',
      'tls:\n  cert: a\n',
      'limits:\n  uploadsPerClient: -1\n',
    ];
    for (const yaml of bad) assert.throws(() => load(yaml), ConfigError, yaml);
    assert.throws(() => loadConfig({ tlsCert: 'a' }, {}), ConfigError);
  });
  it('has sane defaults', () => {
    const d = defaultAuth();
    assert.equal(d.token.ttl, 300_000);
    assert.equal(d.metrics, 'admin');
  });
});

describe('token signing keys', () => {
  it('come from BERTH_TOKEN_KEY, a file, or are generated once (0600) in the data directory', async () => {
    const dir = authDir();
    const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const fromEnv = await loadSigningKey(defaultAuth().token, dir, { BERTH_TOKEN_KEY: pem });
    assert.equal(fromEnv.asymmetricKeyType, 'ed25519');
    const generated = await loadSigningKey(defaultAuth().token, dir, {});
    const file = join(dir, 'auth', 'token-signing-key.pem');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const again = await loadSigningKey(defaultAuth().token, dir, {});
    assert.equal(again.export({ type: 'pkcs8', format: 'pem' }), generated.export({ type: 'pkcs8', format: 'pem' }), 'kept across restarts');
    await assert.rejects(loadSigningKey({ ...defaultAuth().token, key: join(dir, 'missing.pem') }, dir, {}));
  });
  for (const [type, opts] of [['ec', { namedCurve: 'P-384' }], ['rsa', { modulusLength: 2048 }], ['ed25519', {}]] as const) {
    it(`sign and verify with ${type}`, async () => {
      const key = generateKeyPairSync(type as 'ec', opts as { namedCurve: string }).privateKey;
      const service = await new TokenService(defaultAuth().token, key).init();
      const { token } = await service.issue('ann', [{ type: 'repository', name: 'a', actions: ['pull'] }]);
      const v = await service.verify(token);
      assert.equal(v.subject, 'ann');
      assert.equal(v.own, true);
      assert.deepEqual(v.access, [{ type: 'repository', name: 'a', actions: ['pull'] }]);
      // Expired by the verifier's clock (past the 30 s tolerance) once the cache no longer vouches for it.
      const fresh = await new TokenService(defaultAuth().token, key).init();
      await assert.rejects(fresh.verify(token, Date.now() + 10 * 60_000), TokenError);
      assert.equal((await fresh.jwks()).keys.length, 1);
    });
  }
});
