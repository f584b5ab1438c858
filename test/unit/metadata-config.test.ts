/** Choosing the metadata store: config key `metadata`, BERTH_METADATA, --metadata; and what is never printed. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import { createPool, redactUrl } from '../../src/metadata/postgres/postgres-store.js';

describe('metadata store configuration', () => {
  it('defaults to SQLite in the data directory (no URL)', () => {
    assert.equal(loadConfig({}, {}).metadata, undefined);
  });

  it('file, then BERTH_METADATA, then --metadata, each overriding the one before', () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-cfg-'));
    try {
      const file = join(dir, 'berth.yaml');
      writeFileSync(file, 'metadata: postgres://file@db:5432/berth\n');
      assert.equal(loadConfig({ config: file }, {}).metadata, 'postgres://file@db:5432/berth');
      assert.equal(loadConfig({ config: file }, { BERTH_METADATA: 'postgresql://env@db/berth' }).metadata, 'postgresql://env@db/berth');
      assert.equal(
        loadConfig({ config: file, metadata: 'postgres://flag@db/berth' }, { BERTH_METADATA: 'postgres://env@db/berth' }).metadata,
        'postgres://flag@db/berth',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('anything but a postgres:// URL is a configuration error that does not echo the value', () => {
    for (const bad of ['mysql://u:secret@db/x', '/var/lib/berth/metadata.db', 'postgres://has space:secret@db']) {
      assert.throws(() => loadConfig({ metadata: bad }, {}), (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.doesNotMatch((e as Error).message, /secret/);
        return true;
      });
    }
  });

  it('a password never appears in what Berth prints about the URL', () => {
    assert.equal(redactUrl('postgres://berth:s3cr%40t@db:5432/berth?pool=4'), 'postgres://berth:***@db:5432/berth?pool=4');
    assert.equal(redactUrl('postgres://berth@db/berth'), 'postgres://berth@db/berth');
    assert.equal(redactUrl('not a url'), '(invalid URL)');
  });

  it('?pool=N sizes the connection pool (default 10)', async () => {
    const sized = createPool('postgres://berth@127.0.0.1:1/berth?pool=3');
    const plain = createPool('postgres://berth@127.0.0.1:1/berth');
    assert.equal(sized.options.max, 3);
    assert.equal(plain.options.max, 10);
    await Promise.all([sized.end(), plain.end()]);
    assert.throws(() => createPool('postgres://berth@127.0.0.1:1/berth?pool=0'), /pool size/);
  });
});
