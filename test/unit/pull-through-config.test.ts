/** The pull-through cache's settings (`mirrors:`, `--proxy`) and its namespace routing. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import { Routing } from '../../src/proxy/routing.js';
import { parseChallenge } from '../../src/proxy/upstream-client.js';

function configFile(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'berth-mirrors-')), 'berth.yml');
  writeFileSync(file, text);
  return file;
}

describe('pull-through configuration', () => {
  it('reads any number of upstreams, with credentials from a file or an environment variable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-mirrors-'));
    writeFileSync(join(dir, 'pw'), 'from-file\n');
    const c = loadConfig(
      {
        config: configFile(
          `mirrors:\n  - { url: "https://registry-1.docker.io", prefix: docker.io, username: me, passwordFile: ${join(dir, 'pw')}, tagTtl: 10m, expireAfter: 30d }\n` +
            `  - { url: "https://ghcr.io", prefix: ghcr, username: bot, passwordEnv: GHCR_TOKEN }\n  - { url: "http://127.0.0.1:5001" }\n`,
        ),
      },
      { GHCR_TOKEN: 'from-env' },
    );
    assert.equal(c.mirrors.length, 3);
    const [hub, ghcr, def] = c.mirrors;
    assert.equal(hub!.password, 'from-file');
    assert.equal(hub!.libraryPrefix, true, "Docker Hub's library/ rule is on for its hosts");
    assert.equal(hub!.tagTtl, 600_000);
    assert.equal(hub!.expireAfter, 30 * 86_400_000);
    assert.equal(ghcr!.password, 'from-env');
    assert.equal(ghcr!.libraryPrefix, false);
    assert.equal(def!.prefix, '');
  });

  it('--proxy adds a default mirror with credentials from the environment only', () => {
    const c = loadConfig({ proxy: 'https://mirror.example' }, { BERTH_PROXY_USERNAME: 'u', BERTH_PROXY_PASSWORD: 'p' });
    assert.deepEqual([c.mirrors[0]!.url, c.mirrors[0]!.prefix, c.mirrors[0]!.username, c.mirrors[0]!.password], ['https://mirror.example', '', 'u', 'p']);
    assert.equal(loadConfig({}, { BERTH_PROXY: 'http://127.0.0.1:1' }).mirrors.length, 1);
  });

  it('refuses bad settings with a clear error', () => {
    const bad = [
      'mirrors: {url: x}',
      'mirrors:\n  - {prefix: a}',
      'mirrors:\n  - {url: "ftp://x"}',
      'mirrors:\n  - {url: "https://u:p@x"}',
      'mirrors:\n  - {url: "https://x", prefix: "Bad Prefix"}',
      'mirrors:\n  - {url: "https://x", colour: blue}',
      'mirrors:\n  - {url: "https://x"}\n  - {url: "https://y"}',
      'mirrors:\n  - {url: "https://x", prefix: a}\n  - {url: "https://y", prefix: a}',
      'mirrors:\n  - {url: "https://x", passwordEnv: NOT_SET_ANYWHERE, username: u}',
      'mirrors:\n  - {url: "https://x", tagTtl: soon}',
    ];
    for (const text of bad) assert.throws(() => loadConfig({ config: configFile(text) }, {}), ConfigError, text);
    assert.throws(() => loadConfig({ proxy: 'not a url' }, {}), ConfigError);
    assert.throws(() => loadConfig({ proxy: 'https://x' }, { BERTH_PROXY_PASSWORD: 'p' }), ConfigError, 'a password needs a user');
  });
});

describe('pull-through routing', () => {
  const routing = new Routing(
    loadConfig({ config: configFile('mirrors:\n  - {url: "https://registry-1.docker.io", prefix: docker.io}\n  - {url: "https://q.example", prefix: q/team}\n') }, {}).mirrors,
  );

  it("maps a prefix away, with Docker Hub's library/ rule for one-component names", () => {
    assert.equal(routing.route('docker.io/alpine')?.remote, 'library/alpine');
    assert.equal(routing.route('docker.io/bitnami/redis')?.remote, 'bitnami/redis');
    assert.equal(routing.route('q/team/app')?.remote, 'app');
    assert.equal(routing.route('q/team/app')?.upstream.libraryPrefix, false);
  });

  it('leaves other names hosted, and a prefix must be a whole component', () => {
    assert.equal(routing.route('mine/app'), undefined);
    assert.equal(routing.route('docker.iox/alpine'), undefined);
    assert.equal(routing.route('docker.io'), undefined);
  });

  it('sends every other name to the default mirror, longest prefix first', () => {
    const r = new Routing(loadConfig({ config: configFile('mirrors:\n  - {url: "https://a.example"}\n  - {url: "https://b.example", prefix: b}\n') }, {}).mirrors);
    assert.equal(r.route('b/x')?.upstream.url, 'https://b.example');
    assert.equal(r.route('b/x')?.remote, 'x');
    assert.equal(r.route('library/alpine')?.upstream.url, 'https://a.example');
    assert.equal(r.route('library/alpine')?.remote, 'library/alpine');
  });

  it('parses WWW-Authenticate parameters', () => {
    assert.deepEqual(parseChallenge('realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'), {
      realm: 'https://auth.docker.io/token',
      service: 'registry.docker.io',
      scope: 'repository:library/alpine:pull',
    });
  });
});
