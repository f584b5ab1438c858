/** The storage settings: s3:// URLs, endpoint, part size, redirect, from file, environment and flags. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, parseS3Url, parseSize } from '../../src/config.js';

describe('storage configuration', () => {
  it('defaults to the data directory', () => {
    const c = loadConfig({}, {});
    assert.equal(c.storage.url, undefined);
    assert.equal(c.storage.redirect, false);
  });

  it('parses s3://BUCKET/PREFIX and refuses anything else', () => {
    assert.deepEqual(parseS3Url('s3://registry/berth/prod'), { bucket: 'registry', prefix: 'berth/prod' });
    assert.deepEqual(parseS3Url('s3://registry'), { bucket: 'registry', prefix: '' });
    for (const bad of ['registry/x', 'http://registry/x', 's3://', 's3://Bad_Bucket/x']) assert.throws(() => parseS3Url(bad), ConfigError, bad);
    assert.throws(() => loadConfig({ storage: 'gs://b/p' }, {}), ConfigError);
  });

  it('takes the URL and endpoint from flags over the environment, and the endpoint from AWS_ENDPOINT_URL_S3', () => {
    const env = { BERTH_STORAGE: 's3://from-env/p', AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9000' };
    assert.equal(loadConfig({}, env).storage.url, 's3://from-env/p');
    assert.equal(loadConfig({}, env).storage.endpoint, 'http://127.0.0.1:9000');
    const c = loadConfig({ storage: 's3://from-flag/q', s3Endpoint: 'http://s3.local' }, env);
    assert.equal(c.storage.url, 's3://from-flag/q');
    assert.equal(c.storage.endpoint, 'http://s3.local');
  });

  it('reads the short and the long form from the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-config-'));
    try {
      const short = join(dir, 'short.yaml');
      writeFileSync(short, 'storage: s3://bucket/short\n');
      assert.equal(loadConfig({ config: short }, {}).storage.url, 's3://bucket/short');
      const long = join(dir, 'long.yaml');
      writeFileSync(long, 'storage:\n  url: s3://bucket/long\n  endpoint: http://e\n  region: eu-west-1\n  pathStyle: false\n  partSize: 8MiB\n  redirect: true\n');
      const c = loadConfig({ config: long }, {});
      assert.deepEqual(c.storage, { url: 's3://bucket/long', endpoint: 'http://e', region: 'eu-west-1', pathStyle: false, partSize: 8 * 1024 * 1024, redirect: true });
      const small = join(dir, 'small.yaml');
      writeFileSync(small, 'storage:\n  url: s3://bucket/x\n  partSize: 1MiB\n');
      assert.throws(() => loadConfig({ config: small }, {}), /at least 5MiB/);
      const redirect = join(dir, 'redirect.yaml');
      writeFileSync(redirect, 'storage:\n  redirect: true\n');
      assert.throws(() => loadConfig({ config: redirect }, {}), /needs S3 storage/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parses sizes', () => {
    assert.equal(parseSize('16MiB'), 16 * 1024 * 1024);
    assert.equal(parseSize('5m'), 5 * 1024 * 1024);
    assert.equal(parseSize('1g'), 1024 ** 3);
    assert.equal(parseSize('123'), 123);
    assert.throws(() => parseSize('lots'), ConfigError);
  });
});
