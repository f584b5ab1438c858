/**
 * Findings 2 and 3 of the security review: a flood of bad Basic logins must
 * not stall the server, and parallel guesses must not escape the limit.
 * Clients are told apart by X-Forwarded-For from a trusted proxy (loopback),
 * as behind a load balancer. The user in the file has cost 12, as in the
 * finding (40 parallel requests held /healthz for 11.6 s).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { authDir, basic, writeHtpasswd } from '../helpers/auth.js';
import { startServer, type TestServer } from '../helpers/server.js';

const PER_USER = 5;
const PER_ADDRESS = 20;

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

describe('a flood of bad logins', () => {
  let server: TestServer;
  let auditFile: string;
  const login = (address: string, user: string, password: string) =>
    fetch(`${server.url}/v2/`, { headers: { 'x-forwarded-for': address, authorization: basic(user, password) } }).then(async (r) => {
      await r.arrayBuffer();
      return r.status;
    });
  const count = (statuses: number[]) => statuses.reduce<Record<number, number>>((m, s) => ((m[s] = (m[s] ?? 0) + 1), m), {});

  before(async () => {
    const dir = authDir();
    auditFile = join(dir, 'audit.log');
    writeHtpasswd(join(dir, 'htpasswd'), { alice: 'alice-pw' }, 12);
    writeFileSync(
      join(dir, 'berth.yaml'),
      `log:
  audit: ${auditFile}
auth:
  htpasswd: ${join(dir, 'htpasswd')}
  failedLogins: ${PER_USER}
  failedLoginsPerAddress: ${PER_ADDRESS}
  failedLoginDecay: 10m
proxy:
  trusted: [127.0.0.1]
`,
    );
    // Failed logins are logged at info (lockouts at warn).
    server = await startServer({ args: ['--config', join(dir, 'berth.yaml'), '--log-level', 'info'], env: { BERTH_GC_ENABLED: 'false' } });
  });
  after(async () => {
    assert.deepEqual(server.loggedErrors(), []);
    await server.stop();
  });

  it(`lets no more than ${PER_USER} of 200 parallel guesses for one user from one address reach the password check`, async (t) => {
    const statuses = await Promise.all(Array.from({ length: 200 }, (_, i) => login('198.51.100.1', 'alice', `guess-${i}`)));
    const c = count(statuses);
    t.diagnostic(`200 parallel guesses: ${JSON.stringify(c)}`);
    assert.equal(c[401], PER_USER, `checked guesses: ${JSON.stringify(c)}`);
    assert.equal(c[429], 200 - PER_USER);
    const lockouts = server.output().split('\n').filter((l) => l.includes('"event":"login-lockout"') && l.includes('198.51.100.1'));
    assert.equal(lockouts.length, 1, 'one lockout line, with the user and the client');
    assert.match(lockouts[0]!, /"user":"alice"/);
    await new Promise((r) => setTimeout(r, 200)); // the log is written asynchronously
    const failures = server.output().split('\n').filter((l) => l.includes('"event":"login-failed"') && l.includes('"client":"198.51.100.1"'));
    assert.equal(failures.length, PER_USER, 'one line per checked failure');
    const audit = readFileSync(auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.client === '198.51.100.1');
    assert.equal(audit.filter((l) => l.event === 'login-failed' && l.user === 'alice').length, PER_USER, 'the audit log has each failure');
    assert.equal(audit.filter((l) => l.event === 'login-locked' && l.outcome === 'locked' && l.user === 'alice').length, 1, 'and the lockout, once');
  });

  it(`lets no more than ${PER_ADDRESS} guesses with random user names from one address (or one IPv6 /64) through`, async (t) => {
    // In waves of 10 parallel logins: fewer than the password-check queue holds, so
    // every refusal here is the address limit's, none the busy server's.
    const waves = async (address: (i: number) => string) => {
      const out: number[] = [];
      for (let w = 0; w < 12; w++) out.push(...(await Promise.all(Array.from({ length: 10 }, (_, j) => login(address(w * 10 + j), `random-${w * 10 + j}`, 'x')))));
      return out;
    };
    const v4 = await waves(() => '198.51.100.2');
    const v6 = await waves((i) => `2001:db8:5:6::${(i + 1).toString(16)}`);
    t.diagnostic(`random users, one IPv4 address: ${JSON.stringify(count(v4))}; one IPv6 /64, 120 addresses: ${JSON.stringify(count(v6))}`);
    assert.equal(count(v4)[401], PER_ADDRESS);
    assert.equal(count(v6)[401], PER_ADDRESS);
  });

  /** /healthz latencies, sampled every 10 ms for `ms`, from this thread (the flood runs in another). */
  async function healthz(ms: number): Promise<number[]> {
    const latencies: number[] = [];
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const t0 = performance.now();
      const res = await fetch(`${server.url}/healthz`);
      await res.arrayBuffer();
      latencies.push(performance.now() - t0);
      assert.equal(res.status, 200);
      await new Promise((r) => setTimeout(r, 10));
    }
    return latencies;
  }

  /**
   * 40 concurrent attackers, in a worker thread so that their traffic does
   * not delay this thread's probe: each login from a fresh address with a
   * random user name, so no failed-login limit holds them back, only the
   * bound on password checks. (An attacker refused with 429 pauses 200 ms:
   * this measures password checks, not a flood of requests.)
   */
  function startFlood(first: number): { stop(): Promise<Record<number, number>> } {
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
      let stop = false, next = workerData.first;
      const statuses = {};
      parentPort.on('message', () => { stop = true; });
      const attacker = async () => {
        while (!stop) {
          const n = next++;
          const res = await fetch(workerData.url + '/v2/', { headers: { 'x-forwarded-for': '203.' + ((n >> 16) & 255) + '.' + ((n >> 8) & 255) + '.' + (n & 255), authorization: 'Basic ' + Buffer.from('user-' + n + ':guess').toString('base64') } });
          await res.arrayBuffer();
          statuses[res.status] = (statuses[res.status] ?? 0) + 1;
          if (res.status === 429) await new Promise((r) => setTimeout(r, 200));
        }
      };
      Promise.all(Array.from({ length: 40 }, attacker)).then(() => parentPort.postMessage(statuses));`,
      { eval: true, workerData: { url: server.url, first } },
    );
    return {
      async stop() {
        worker.postMessage('stop');
        const statuses = await new Promise<Record<number, number>>((resolve) => worker.once('message', resolve));
        await worker.terminate();
        return statuses;
      },
    };
  }

  it('keeps /healthz p99 under 50 ms while logins flood in from many addresses', async (t) => {
    // The machine is shared with other jobs, whose load comes and goes: each
    // try measures the probe without a flood, then with one, and the bound
    // is 50 ms over the quiet p99. Up to three tries; on the code before the
    // fix (bcrypt on the event loop) every try took seconds.
    const results: string[] = [];
    let passed = false;
    for (let attempt = 0; attempt < 3 && !passed; attempt++) {
      const quiet = percentile(await healthz(3000), 99);
      const flood = startFlood(attempt * 100_000);
      await new Promise((r) => setTimeout(r, 300));
      const latencies = await healthz(5000);
      const statuses = await flood.stop();
      const p99 = percentile(latencies, 99);
      results.push(
        `try ${attempt + 1}: ${latencies.length} samples, p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms ` +
          `(quiet p99 ${quiet.toFixed(1)} ms); logins ${JSON.stringify(statuses)}`,
      );
      // The flood must have run at full strength: at least 100 logins answered.
      passed = p99 < 50 + quiet && (statuses[401] ?? 0) + (statuses[429] ?? 0) >= 100;
    }
    for (const r of results) t.diagnostic(`/healthz during the flood, ${r}`);
    assert.ok(passed, results.join('; '));
    // A user from her own address still gets in: the flood did not lock her out.
    assert.equal(await login('192.0.2.44', 'alice', 'alice-pw'), 200);
  });
});
