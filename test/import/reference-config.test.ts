/**
 * `berth serve --config` and `berth import --config` with the reference
 * registry's own config.yml: serve refuses to start over storage not yet
 * imported (saying what to run), import takes its source from the file,
 * then serve starts with one warning naming every ignored key; `berth
 * config check` prints the mapping key by key.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { berth } from '../helpers/berth-cli.js';
import { ReferenceTree } from '../helpers/reference-tree.js';
import { startServer } from '../helpers/server.js';

describe('the reference registry config.yml', () => {
  const work = mkdtempSync(join(tmpdir(), 'berth-refconfig-'));
  const root = join(work, 'registry');
  const data = `${root}-berth`;
  const tree = new ReferenceTree(root);
  const image = tree.image('team/app', 'v1', ['layer\n']);
  const config = join(work, 'config.yml');
  writeFileSync(
    config,
    `version: 0.1
log:
  level: info
  formatter: text
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: ${root}
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
`,
  );
  after(() => rmSync(work, { recursive: true, force: true }));

  it('config check prints each key with its Berth setting or why it is ignored', async () => {
    const res = await berth(['config', 'check', config]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /storage\.filesystem\.rootdirectory: \S+ +-> import source \S+; Berth's data directory \S+-berth/);
    assert.match(res.stdout, /http\.addr: :5000 +-> addr 0\.0\.0\.0:5000/);
    assert.match(res.stdout, /storage\.cache\.blobdescriptor: inmemory +IGNORED: Berth answers existence from its metadata store/);
    assert.match(res.stdout, /storage\.delete\.enabled: \(not set\) +-> deletes false \(the reference's default\)/);
    assert.match(res.stdout, /^3 keys ignored/m);
  });

  it('serve refuses to start before the import and says what to run', async () => {
    const res = await berth(['serve', '--config', config, '--data', data, '--addr', '127.0.0.1:0']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, new RegExp(`run \`berth import --config ${config}\` first`));
  });

  it('import takes its source from the file; then serve starts, warning once about every ignored key', async () => {
    const imported = await berth(['import', '--config', config, '--data', data, '--json']);
    assert.equal(imported.code, 0, imported.stderr);
    assert.equal(JSON.parse(imported.stdout).manifests.imported, 1);
    const server = await startServer({ dataDir: data, args: ['--config', config] });
    try {
      const warnings = server.output().split('\n').filter((l) => l.includes('keys ignored'));
      assert.equal(warnings.length, 1, server.output());
      const warning = JSON.parse(warnings[0]!) as { msg: string; ignored: Record<string, string> };
      assert.deepEqual(Object.keys(warning.ignored).sort(), ['http.headers.X-Content-Type-Options', 'log.formatter', 'storage.cache.blobdescriptor']);
      const m = await fetch(`${server.url}/v2/team/app/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(m.status, 200);
      assert.equal(m.headers.get('docker-content-digest'), image.digest);
      const del = await fetch(`${server.url}/v2/team/app/manifests/${image.digest}`, { method: 'DELETE' });
      assert.equal(del.status, 405, 'deletes are off, as the reference has them by default');
    } finally {
      await server.stop({ keepData: true });
    }
  });
});
