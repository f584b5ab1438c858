/** Units of src/auth/: patterns and rules, scopes, the login limiter, htpasswd, config validation. */
import assert from 'node:assert/strict';
import { hashSync } from '@node-rs/bcrypt';
import { generateKeyPairSync } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { defaultAuth } from '../../src/auth/config.js';
import { Htpasswd } from '../../src/auth/htpasswd.js';
import type { Logger } from '../../src/log.js';
import { addressKey, LoginLimiter } from '../../src/auth/login-limiter.js';
import { PasswordChecks, PasswordChecksBusy } from '../../src/auth/password-checks.js';
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
  const attempts = (l: LoginLimiter, client: string, user: string, n: number, now: number) => {
    let admitted = 0;
    for (let i = 0; i < n; i++) if (l.begin(client, user, now).admitted) admitted++;
    return admitted;
  };

  it('counts an attempt when it starts: of many at once, exactly max pass, per (client, user), until the score decays', () => {
    const l = new LoginLimiter(3, 100, 1000);
    const t0 = 1_000_000;
    // 200 attempts before any has finished: the finding's parallel guesses.
    assert.equal(attempts(l, '1.1.1.1', 'u', 200, t0), 3);
    const refused = l.begin('1.1.1.1', 'u', t0);
    assert.ok(!refused.admitted && refused.retryAfter > 0 && refused.by === 'user' && !refused.first, 'reported once, at the first refusal');
    assert.equal(attempts(l, '2.2.2.2', 'u', 1, t0), 1, 'another client');
    assert.equal(attempts(l, '1.1.1.1', 'v', 1, t0), 1, 'another user');
    assert.equal(attempts(l, '1.1.1.1', 'u', 1, t0 + 3000), 1, 'decayed');
  });

  it('a success clears the user and gives the address its attempt back; a cancelled check counts nothing', () => {
    const l = new LoginLimiter(3, 3, 60_000);
    const t0 = Date.now();
    for (let i = 0; i < 10; i++) {
      const a = l.begin('1.1.1.1', 'w', t0);
      assert.ok(a.admitted, `login ${i}`);
      a.attempt.succeeded();
    }
    for (let i = 0; i < 10; i++) {
      const a = l.begin('1.1.1.1', 'x', t0);
      assert.ok(a.admitted, `busy ${i}`);
      a.attempt.cancelled();
    }
  });

  it('limits an address whatever the user names, an IPv6 client by its /64', () => {
    const l = new LoginLimiter(5, 10, 60_000);
    const t0 = 1_000_000;
    let admitted = 0;
    for (let i = 0; i < 100; i++) if (l.begin('10.0.0.9', `random-${i}`, t0).admitted) admitted++;
    assert.equal(admitted, 10);
    const r = l.begin('10.0.0.9', 'alice', t0);
    assert.ok(!r.admitted && r.by === 'address' && !r.first, 'the lockout was reported at its first refusal, inside the loop');
    admitted = 0;
    for (let i = 0; i < 100; i++) if (l.begin(`2001:db8:1:2:${i.toString(16)}::1`, `u${i}`, t0).admitted) admitted++;
    assert.equal(admitted, 10, 'every address of one /64 shares the limit');
    assert.ok(l.begin('2001:db8:1:3::1', 'u', t0).admitted, 'the next /64 does not');
    assert.equal(addressKey('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(addressKey('2001:db8:0:0:1::5'), '2001:db8:0:0::/64');
  });
});

describe('password checks', () => {
  it('run at most `concurrent` at once, queue at most `queued`, and refuse the rest at once', async () => {
    const c = new PasswordChecks(2, 3);
    let running = 0;
    let peak = 0;
    const check = async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
      return true;
    };
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => c.run(check)));
    assert.equal(peak, 2);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 5);
    assert.ok(results.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason instanceof PasswordChecksBusy));
    assert.equal(await c.run(check), true, 'slots are given back');
  });
});

describe('htpasswd', () => {
  it('accepts bcrypt entries only, and checks unknown users against a dummy hash of the same cost', async () => {
    const dir = authDir();
    const file = join(dir, 'htpasswd');
    const hash = hashSync('pw', 8).replace(/^\$2b\$/, '$2y$');
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

  it('with users of different costs, an unknown name costs what some user costs, the same every time, and weak costs are warned about', async () => {
    const dir = authDir();
    const file = join(dir, 'htpasswd');
    // The finding: a cost-5 user answered in 7 ms, an unknown one in 416 ms (the highest cost).
    writeFileSync(file, `weak:${hashSync('pw', 4)}\nstrong:${hashSync('pw', 10)}\n`);
    const warnings: string[] = [];
    const logger = { warn: (_o: unknown, msg: string) => warnings.push(msg), error: () => {}, info: () => {} } as unknown as Logger;
    const h = new Htpasswd(file, logger);
    try {
      assert.ok(warnings.some((w) => /cost below 10/.test(w)), 'a cost below 10 is warned about at load');
      const ms = async (user: string) => {
        const samples: number[] = [];
        for (let i = 0; i < 3; i++) {
          const t = performance.now();
          await h.verify(user, 'wrong');
          samples.push(performance.now() - t);
        }
        return samples.sort((a, b) => a - b)[1]!;
      };
      const weak = await ms('weak');
      const strong = await ms('strong');
      assert.ok(strong > weak * 4, `the two costs differ measurably (${weak.toFixed(1)} ms, ${strong.toFixed(1)} ms)`);
      const threshold = Math.sqrt(weak * strong);
      let cheap = 0;
      for (let i = 0; i < 12; i++) {
        const name = `nobody-${i}`;
        const first = (await ms(name)) < threshold;
        assert.equal((await ms(name)) < threshold, first, `${name} costs the same on every try`);
        if (first) cheap++;
      }
      // Half the users are cheap: 12 unknown names all dear would have 1 chance in 4096.
      assert.ok(cheap > 0 && cheap < 12, `unknown names take both users' times (${cheap} of 12 cheap)`);
    } finally {
      h.close();
    }
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
  it('trusts a JWKS only over https (http on loopback only, for tests)', () => {
    const jwks = (url: string) => `auth:\n  token:\n    trusted:\n      - { issuer: https://sso.example.com, jwks: "${url}" }\n`;
    assert.throws(() => load(jwks('http://sso.example.com/jwks.json')), /https/);
    assert.throws(() => load(jwks('ftp://sso.example.com/jwks.json')), ConfigError);
    assert.equal(load(jwks('https://sso.example.com/jwks.json')).auth?.token.trusted[0]?.jwks, 'https://sso.example.com/jwks.json');
    assert.ok(load(jwks('http://127.0.0.1:8080/jwks.json')).auth);
    assert.ok(load(jwks('http://[::1]:8080/jwks.json')).auth);
    assert.ok(load(jwks('/etc/berth/jwks.json')).auth);
  });
  it('binds the plain listener beside TLS to loopback only', () => {
    const tls = (addr: string) => `tls:\n  cert: a\n  key: b\n  plainAddr: "${addr}"\n`;
    for (const addr of ['0.0.0.0:5080', '10.0.0.5:5080', ':5080', '[::]:5080']) assert.throws(() => load(tls(addr)), /loopback/, addr);
    for (const addr of ['127.0.0.1:5080', '[::1]:5080', 'localhost:5080']) assert.equal(load(tls(addr)).tls?.plainAddr, addr);
  });
  it('reads the login limits', () => {
    const c = load('auth:\n  htpasswd: x\n  failedLoginsPerAddress: 7\n  passwordChecks: 3\n  passwordCheckQueue: 0\n');
    assert.equal(c.auth?.failedLoginsPerAddress, 7);
    assert.equal(c.auth?.passwordChecks, 3);
    assert.equal(c.auth?.passwordCheckQueue, 0);
    assert.throws(() => load('auth:\n  htpasswd: x\n  passwordChecks: many\n'), ConfigError);
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
