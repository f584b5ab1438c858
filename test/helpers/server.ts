/**
 * Starts a real `berth serve` process on a random loopback port with a
 * temporary data directory, the way an operator runs it.
 *
 * With BERTH_TEST_METADATA=postgres, every data directory also gets a fresh
 * PostgreSQL database (see helpers/postgres.ts) passed as --metadata: the
 * whole API suite then runs against the PostgreSQL store. The database lives
 * as long as the data directory: dropped when a server stops and removes its
 * directory, otherwise when the test process ends.
 *
 * With BERTH_TEST_STORAGE=s3 its blobs go to the S3 endpoint of S3_ENDPOINT
 * (see test/helpers/s3-env.ts), under a prefix named after the data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from './postgres.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { S3BlobStore } from '../../src/storage/s3.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { s3TestEnv } from './s3-env.js';

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

/** Which metadata store test servers use: 'sqlite' (default) or 'postgres'. */
export const TEST_METADATA = process.env.BERTH_TEST_METADATA === 'postgres' ? 'postgres' : 'sqlite';

const databases = new Map<string, Promise<TestDatabase>>();
let dropAllRegistered = false;

/** The PostgreSQL database of a data directory (created on first use), in postgres mode. */
function databaseFor(dataDir: string): Promise<TestDatabase> {
  let db = databases.get(dataDir);
  if (!db) {
    db = createTestDatabase();
    databases.set(dataDir, db);
    if (!dropAllRegistered) {
      dropAllRegistered = true;
      // Databases of data directories a test kept (restarts, crash tests) go when the test process ends.
      process.once('beforeExit', () => void Promise.all([...databases.values()].map(async (d) => (await d).drop())).catch(() => undefined));
    }
  }
  return db;
}

async function dropDatabaseFor(dataDir: string): Promise<void> {
  const db = databases.get(dataDir);
  if (!db) return;
  databases.delete(dataDir);
  await (await db).drop();
}

/**
 * `--metadata URL` for a command run on `dataDir` (`berth gc --data DIR`...)
 * in postgres mode; nothing in SQLite mode, where the database is in DIR.
 */
export async function metadataArgs(dataDir: string): Promise<string[]> {
  if (TEST_METADATA !== 'postgres') return [];
  return ['--metadata', (await databaseFor(dataDir)).url];
}

/** Where test servers keep blobs: 'fs' (their data directory) or 's3' (BERTH_TEST_STORAGE=s3). */
export const TEST_STORAGE: 'fs' | 's3' = process.env.BERTH_TEST_STORAGE === 's3' ? 's3' : 'fs';

function s3Settings(dataDir: string) {
  const env = s3TestEnv();
  if (!env) throw new Error('BERTH_TEST_STORAGE=s3 needs an S3 endpoint: set S3_ENDPOINT (eval "$(bash scripts/s3/start.sh)")');
  return { ...env, prefix: `test/server-${basename(dataDir)}/` };
}

/** The flags and environment that point a berth process at the test storage of a data directory. */
export function storageArgs(dataDir: string): { args: string[]; env: Record<string, string> } {
  if (TEST_STORAGE === 'fs') return { args: [], env: {} };
  const s3 = s3Settings(dataDir);
  return { args: ['--storage', `s3://${s3.bucket}/${s3.prefix}`], env: s3.awsEnv };
}

/** A BlobStore over the same storage as a test server of this data directory (to look at what it stored). */
export function testStore(dataDir: string): BlobStore {
  let store = testStores.get(dataDir);
  if (!store) {
    if (TEST_STORAGE === 'fs') store = new FilesystemBlobStore(dataDir);
    else {
      const s3 = s3Settings(dataDir);
      for (const [k, v] of Object.entries(s3.awsEnv)) process.env[k] ??= v;
      store = new S3BlobStore({ bucket: s3.bucket, prefix: s3.prefix, endpoint: s3.endpoint, region: s3.region });
    }
    testStores.set(dataDir, store);
  }
  return store;
}
const testStores = new Map<string, BlobStore>();

/** Removes what test servers of this data directory stored outside it (the S3 prefix). */
export async function removeStorage(dataDir: string): Promise<void> {
  if (TEST_STORAGE === 'fs') return;
  const store = testStore(dataDir) as S3BlobStore;
  testStores.delete(dataDir);
  await store.deleteEverything();
  store.close();
}

export function makeDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'berth-test-'));
}

export async function startServer(opts: StartOptions = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? makeDataDir();
  const who = opts.name ? `berth (${opts.name})` : 'berth';
  const metadata = await metadataArgs(dataDir);
  const storage = storageArgs(dataDir);
  const child = spawn(
    process.execPath,
    [BERTH_BIN, 'serve', '--addr', opts.addr ?? '127.0.0.1:0', '--data', dataDir, ...metadata, '--log-level', 'warn', ...storage.args, ...(opts.args ?? [])],
    { env: { ...process.env, ...storage.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  // Debugging aid: BERTH_TEST_SERVER_LOG=FILE appends every test server's output to FILE.
  const tee = process.env.BERTH_TEST_SERVER_LOG;
  if (tee) for (const s of [child.stdout!, child.stderr!]) s.on('data', (d) => appendFileSync(tee, d));
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
      if (!keepData && !opts.dataDir) {
        rmSync(dataDir, { recursive: true, force: true });
        await dropDatabaseFor(dataDir);
        await removeStorage(dataDir);
      }
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
