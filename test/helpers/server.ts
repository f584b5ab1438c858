/**
 * Starts a real `berth serve` process on a random loopback port with a
 * temporary data directory, the way an operator runs it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BERTH_BIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface TestServer {
  /** e.g. http://127.0.0.1:40123 */
  url: string;
  /** e.g. 127.0.0.1:40123, for image references */
  host: string;
  dataDir: string;
  process: ChildProcess;
  /** Everything the server wrote to stdout/stderr so far (JSON log lines). */
  output(): string;
  /** Log lines at error level or above: a test that expects none asserts this is empty. */
  loggedErrors(): string[];
  /** Graceful stop (SIGTERM); removes the data directory unless keepData. */
  stop(opts?: { keepData?: boolean }): Promise<void>;
  /** kill -9, keeping the data directory (for crash tests). */
  kill(): Promise<void>;
}

export interface StartOptions {
  dataDir?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Keep the same port as a previous server (restart tests). */
  addr?: string;
  /** Names the server in error messages (several servers in one test, e.g. scale-out nodes). */
  name?: string;
  /** How long to wait for "listening" (default 15 s). */
  startTimeoutMs?: number;
}

export function makeDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'berth-test-'));
}

export async function startServer(opts: StartOptions = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? makeDataDir();
  const who = opts.name ? `berth (${opts.name})` : 'berth';
  const child = spawn(
    process.execPath,
    [BERTH_BIN, 'serve', '--addr', opts.addr ?? '127.0.0.1:0', '--data', dataDir, '--log-level', 'warn', ...(opts.args ?? [])],
    { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const addr = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${who} did not start in time:\n${out}`)), opts.startTimeoutMs ?? 15000);
    const onData = () => {
      const m = /"addr":"([^"]+)"[^\n]*"msg":"listening"/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${who} exited with ${code} before listening:\n${out}`));
    });
  });
  return {
    url: `http://${addr}`,
    host: addr,
    dataDir,
    process: child,
    output: () => out,
    loggedErrors: () => out.split('\n').filter((l) => /"level":(50|60)/.test(l)),
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      if (!keepData && !opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
