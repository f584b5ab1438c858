/**
 * The project's own test S3 store (scripts/s3/): it must come back after a
 * stop from the state directory it kept, which is what a CI run finds on a
 * machine where an earlier session ran the tests (a restart once failed there,
 * reading Swift's config from /etc/swift). Runs its own store on other ports.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const scripts = join(import.meta.dirname, '..', '..', '..', 'scripts', 's3');
const swiftInstalled =
  spawnSync('dpkg-query', ['-W', '-f=${db:Status-Abbrev}', 'python3-swift'], { encoding: 'utf8' }).stdout === 'ii ';

function run(script: string, env: NodeJS.ProcessEnv, ...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync('bash', [join(scripts, script), ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('scripts/s3 test store', { skip: !swiftInstalled && 'python3-swift is not installed' }, () => {
  it('starts, stops, starts again from the kept state, and answers S3', async () => {
    const state = mkdtempSync(join(tmpdir(), 'berth-s3-restart-'));
    const env = { S3_PORT: '5520', S3_STATE_DIR: state, S3_BUCKET: 'restart-check' };
    try {
      const first = run('start.sh', env);
      assert.equal(first.code, 0, first.err);
      assert.match(first.out, /^export S3_ENDPOINT=http:\/\/127\.0\.0\.1:5520$/m);
      const stop = run('stop.sh', env);
      assert.equal(stop.code, 0, stop.err);
      assert.match(stop.err, /stopped 5 process/);
      const again = run('start.sh', env);
      assert.equal(again.code, 0, again.err);
      assert.doesNotMatch(again.err, /No such file|Traceback/);
      const health = await fetch('http://127.0.0.1:5520/healthcheck');
      assert.equal(await health.text(), 'OK');
      // The bucket made by the first start is still there (S3 answers 403/200 for it, not 404).
      const bucket = await fetch('http://127.0.0.1:5520/restart-check', { method: 'HEAD' });
      assert.notEqual(bucket.status, 404);
    } finally {
      run('stop.sh', env, '--purge');
      rmSync(state, { recursive: true, force: true });
    }
  });
});
