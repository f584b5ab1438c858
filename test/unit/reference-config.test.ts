/** The reference registry's config.yml read as Berth's configuration: what each key maps to, what is ignored, what is refused. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-refconfig-'));
let n = 0;
function file(text: string): string {
  const f = join(dir, `config-${n++}.yml`);
  writeFileSync(f, text);
  return f;
}

describe('reference registry config.yml', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('maps http, filesystem storage, delete, maintenance and log; names every other key as ignored', () => {
    const config = loadConfig(
      {
        config: file(`version: 0.1
log:
  level: debug
  formatter: text
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
    readonly:
      enabled: true
http:
  addr: :5000
  secret: s3cret
  tls:
    certificate: /etc/certs/domain.crt
    key: /etc/certs/domain.key
notifications:
  endpoints:
    - name: listener
      url: https://example.com/event
`),
      },
      {},
    );
    assert.equal(config.addr, '0.0.0.0:5000');
    assert.equal(config.data, '/var/lib/registry-berth', "Berth's data beside the reference's, never inside it");
    assert.equal(config.deletes, true);
    assert.equal(config.readOnly, true);
    assert.equal(config.gc.uploadTimeout, 168 * 3_600_000);
    assert.equal(config.logLevel, 'debug');
    assert.deepEqual(config.tls, { cert: '/etc/certs/domain.crt', key: '/etc/certs/domain.key', hstsMaxAge: 31_536_000 });
    assert.equal(config.storage.url, undefined);
    assert.equal(config.reference?.referenceRoot, '/var/lib/registry');
    assert.deepEqual(config.reference?.ignored.map((m) => m.key).sort(), [
      'http.secret',
      'log.formatter',
      'storage.cache.blobdescriptor',
      'storage.maintenance.uploadpurging.enabled',
      'storage.maintenance.uploadpurging.interval',
    ]);
    assert.equal(config.reference?.mappings.find((m) => m.key === 'http.secret')?.value, '(secret)', 'secrets are never shown');
    assert.deepEqual(config.notifications?.endpoints.map((e) => [e.name, e.url]), [['listener', 'https://example.com/event']], 'notifications are taken as they are');
  });

  it("keeps the reference's default of refusing deletes; flags still override the file", () => {
    const config = loadConfig({ config: file('version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/reg\n'), data: '/tmp/elsewhere', addr: '127.0.0.1:6000' }, {});
    assert.equal(config.deletes, false);
    assert.equal(config.data, '/tmp/elsewhere');
    assert.equal(config.addr, '127.0.0.1:6000');
    assert.deepEqual(config.reference?.mappings.find((m) => m.key === 'storage.delete.enabled'), {
      key: 'storage.delete.enabled',
      value: '(not set)',
      berth: 'deletes false',
      note: "the reference's default",
    });
  });

  it('maps the s3 driver: Berth objects beside the rootdirectory, endpoint, region, path style, part size', () => {
    const before = { ...process.env };
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    try {
      const config = loadConfig(
        {
          config: file(`version: 0.1
storage:
  s3:
    accesskey: AKID
    secretkey: SECRET
    region: us-east-1
    regionendpoint: 127.0.0.1:9000
    secure: false
    v4auth: true
    forcepathstyle: true
    bucket: images
    rootdirectory: /registry
    chunksize: 10485760
`),
        },
        {},
      );
      assert.equal(config.storage.url, 's3://images/registry-berth');
      assert.equal(config.storage.endpoint, 'http://127.0.0.1:9000');
      assert.equal(config.storage.region, 'us-east-1');
      assert.equal(config.storage.pathStyle, true);
      assert.equal(config.storage.partSize, 10 * 1024 * 1024);
      assert.equal(config.reference?.referenceRoot, 's3://images/registry');
      assert.equal(process.env.AWS_ACCESS_KEY_ID, 'AKID');
      assert.deepEqual(config.reference?.ignored, []);
    } finally {
      process.env = before;
    }
  });

  it('maps htpasswd and token auth (a trusted external issuer)', () => {
    const config = loadConfig(
      {
        config: file(`version: 0.1
storage:
  filesystem:
    rootdirectory: /r
auth:
  token:
    realm: https://auth.example.com/token
    service: registry.example.com
    issuer: auth-service
    rootcertbundle: /certs/bundle.pem
`),
      },
      {},
    );
    assert.deepEqual(config.auth?.token.trusted, [{ issuer: 'auth-service', publicKey: '/certs/bundle.pem' }]);
    assert.equal(config.auth?.token.realm, 'https://auth.example.com/token');
    assert.equal(config.auth?.token.service, 'registry.example.com');
    assert.equal(config.auth?.token.enabled, false, "the realm is the external service: Berth's own token endpoint stays off");
    const basic = loadConfig({ config: file('version: 0.1\nstorage:\n  filesystem: {}\nauth:\n  htpasswd:\n    realm: basic\n    path: /auth/htpasswd\n') }, {});
    assert.equal(basic.auth?.htpasswd, '/auth/htpasswd');
    assert.deepEqual(basic.auth?.rules.map((r) => r.actions), [['pull', 'push', 'delete']]);
  });

  it('maps proxy (pull-through cache) to a default mirror: remoteurl, credentials (redacted), ttl as expireAfter', () => {
    const config = loadConfig(
      {
        config: file(`version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
proxy:
  remoteurl: https://registry-1.docker.io
  username: me
  password: hub-token-123
  ttl: 72h
`),
      },
      {},
    );
    assert.equal(config.mirrors.length, 1);
    const [mirror] = config.mirrors;
    assert.equal(mirror?.url, 'https://registry-1.docker.io');
    assert.equal(mirror?.prefix, '', 'the default mirror: every name, as the reference in proxy mode');
    assert.equal(mirror?.libraryPrefix, true);
    assert.equal(mirror?.username, 'me');
    assert.equal(mirror?.password, 'hub-token-123');
    assert.equal(mirror?.expireAfter, 72 * 3_600_000);
    assert.deepEqual(config.reference?.ignored, []);
    const password = config.reference?.mappings.find((m) => m.key === 'proxy.password');
    assert.equal(password?.value, '(secret)');
    assert.ok(!JSON.stringify(config.reference?.mappings).includes('hub-token-123'), 'the password is shown nowhere');
    assert.match(config.reference?.mappings.find((m) => m.key === 'proxy.ttl')?.note ?? '', /not pulled/, 'the note says how the semantics differ');

    // No ttl: the reference's default (168h); ttl 0: no expiry, in both.
    const byDefault = loadConfig({ config: file('version: 0.1\nstorage:\n  filesystem: {}\nproxy:\n  remoteurl: https://mirror.example.com\n') }, {});
    assert.equal(byDefault.mirrors[0]?.expireAfter, 168 * 3_600_000);
    assert.equal(byDefault.mirrors[0]?.username, undefined, 'anonymous without credentials');
    assert.equal(byDefault.mirrors[0]?.libraryPrefix, false);
    assert.deepEqual(byDefault.reference?.mappings.find((m) => m.key === 'proxy.ttl')?.value, '(not set)');
    const never = loadConfig({ config: file('version: 0.1\nstorage:\n  filesystem: {}\nproxy:\n  remoteurl: https://mirror.example.com\n  ttl: 0s\n') }, {});
    assert.equal(never.mirrors[0]?.expireAfter, 0);

    // No remoteurl: no cache, in the reference as in Berth; the keys are named as ignored.
    const hosted = loadConfig({ config: file('version: 0.1\nstorage:\n  filesystem: {}\nproxy:\n  username: me\n') }, {});
    assert.deepEqual(hosted.mirrors, []);
    assert.deepEqual(hosted.reference?.ignored.filter((m) => m.key.startsWith('proxy')).map((m) => [m.key, m.note]), [['proxy.username', 'no proxy.remoteurl: the reference is no cache without it, and neither is Berth']]);

    // The flag still replaces the file's default mirror.
    const flag = loadConfig({ config: file('version: 0.1\nstorage:\n  filesystem: {}\nproxy:\n  remoteurl: https://mirror.example.com\n'), proxy: 'https://other.example.com' }, {});
    assert.deepEqual(flag.mirrors.map((m) => m.url), ['https://other.example.com']);

    for (const [text, message] of [
      ['version: 0.1\nstorage:\n  filesystem: {}\nproxy:\n  remoteurl: ftp://x\n', /proxy.remoteurl: invalid mirror URL/],
      ['version: 0.1\nstorage:\n  filesystem: {}\nproxy:\n  remoteurl: https://x.example.com\n  password: p\n', /proxy.password needs proxy.username/],
    ] as const) {
      assert.throws(() => loadConfig({ config: file(text) }, {}), (e: Error) => e instanceof ConfigError && message.test(e.message));
    }
  });

  it('refuses what it cannot honour safely: other storage drivers, other auth schemes, unknown versions', () => {
    for (const [text, message] of [
      ['version: 0.1\nstorage:\n  azure:\n    accountname: a\n', /storage driver "azure" is not supported/],
      ['version: 0.1\nstorage:\n  filesystem: {}\n  inmemory: {}\n', /exactly one driver/],
      ['version: 0.1\nstorage:\n  filesystem: {}\nauth:\n  silly:\n    realm: x\n', /auth.silly is not supported/],
      ['version: 0.2\nstorage:\n  filesystem: {}\n', /version "0.2"/],
    ] as const) {
      assert.throws(() => loadConfig({ config: file(text) }, {}), (e: Error) => e instanceof ConfigError && message.test(e.message));
    }
  });
});
