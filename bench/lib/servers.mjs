// Start/stop the servers under test and watch their resident memory.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import http from 'node:http';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function getStatus(url, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

function readKb(pid, field) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** pid plus all of its descendants (servers may fork workers). */
function processTree(rootPid) {
  const children = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(d));
    } catch {
      /* gone */
    }
  }
  const out = [rootPid];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]) ?? []));
  return out;
}

/**
 * CPU accounting, to tell how much CPU went to processes that are neither
 * this harness nor its descendants (the servers, curl, wrk, ab). Kernel
 * threads are left out: page-cache writeback and loopback networking run
 * there on behalf of the workload itself.
 * @returns {{total: number, others: Map<number, number>}} total: all CPUs' ticks since boot;
 *   others: pid -> utime+stime+cutime+cstime of every other user process.
 */
/**
 * Processes that belong to the workload although this harness did not start
 * them: in S3 mode the S3 store and PostgreSQL serve the servers under test.
 * `pids` by process id, `comms` by command name (PostgreSQL forks a backend
 * per connection).
 */
export const workloadServices = { pids: new Set(), comms: new Set() };

/** Registers the shared S3 store (its pid files in S3_STATE_DIR/run) and, if asked, PostgreSQL as workload. */
export function countServicesAsWorkload({ s3 = false, postgres = false } = {}) {
  if (s3) {
    const runDir = path.join(process.env.S3_STATE_DIR ?? path.join(process.env.TMPDIR ?? '/tmp', 's3-swift'), 'run');
    try {
      for (const f of fs.readdirSync(runDir)) {
        const pid = Number(fs.readFileSync(path.join(runDir, f), 'utf8').trim());
        if (pid > 0) workloadServices.pids.add(pid);
      }
    } catch {
      /* not the shared Swift store: its CPU stays "other processes" */
    }
  }
  if (postgres) workloadServices.comms.add('postgres');
  return workloadServices.pids.size + workloadServices.comms.size > 0;
}

export function cpuSnapshot() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const procs = new Map(); // pid -> {ppid, ticks, comm}
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const x = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      procs.set(Number(d), { ppid: Number(x[1]), ticks: Number(x[11]) + Number(x[12]) + Number(x[13]) + Number(x[14]), comm });
    } catch {
      /* gone */
    }
  }
  const excluded = (pid) => {
    for (let p = pid, hops = 0; p > 0 && hops < 64; hops++) {
      if (p === process.pid || p === 2 || workloadServices.pids.has(p)) return true;
      const proc = procs.get(p);
      if (proc && workloadServices.comms.has(proc.comm)) return true;
      p = proc?.ppid ?? 0;
    }
    return false;
  };
  const others = new Map();
  for (const [pid, v] of procs) if (!excluded(pid)) others.set(pid, v.ticks);
  return { total, others };
}

/** CPU ticks used by other (user) processes between two snapshots, and all ticks. */
export function foreignTicks(a, b) {
  let used = 0;
  for (const [pid, t] of b.others) used += Math.max(0, t - (a.others.get(pid) ?? 0));
  return { used, total: Math.max(0, b.total - a.total) };
}

/** Share of all CPU time between two snapshots used by other (user) processes. */
export function foreignShare(a, b) {
  const { used, total } = foreignTicks(a, b);
  return total > 0 ? Math.min(1, used / total) : 0;
}

export class ServerProcess {
  /**
   * @param {{name: string, command: string, args: string[], cwd: string, env?: object,
   *          port: number, dataDir: string, logFile: string, cpus?: string}} o
   *   cpus: a CPU list for `taskset -c` (the server and all its threads stay on
   *   those CPUs); absent: wherever the kernel puts them.
   */
  constructor(o) {
    Object.assign(this, o);
    this.url = `http://127.0.0.1:${o.port}`;
    this.child = null;
    this.exited = null;
    this.peakRssKb = 0; // max over samples of the summed VmRSS of the process tree
    this.hwmKb = 0; // VmHWM of the main process (kernel-tracked peak)
    this.tree = [];
    this.treeAt = 0;
  }

  get pid() {
    return this.child?.pid;
  }

  async start({ timeoutMs = 30_000 } = {}) {
    const log = fs.openSync(this.logFile, 'a');
    // taskset execs the server: the pid stays the server's.
    const [command, args] = this.cpus ? ['taskset', ['-c', this.cpus, this.command, ...this.args]] : [this.command, this.args];
    this.child = spawn(command, args, {
      cwd: this.cwd,
      env: this.env ?? process.env,
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    this.child.on('exit', (code, signal) => (this.exited = { code, signal }));
    this.child.on('error', (e) => (this.exited = { code: null, signal: null, error: e }));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exited) throw new Error(`${this.name} exited during startup (${this.describeExit()})\n${this.logTail()}`);
      const status = await getStatus(`${this.url}/v2/`);
      if (status === 200 || status === 401) {
        if (status === 401) throw new Error(`${this.name}: GET /v2/ answers 401; the benchmark needs a server without auth`);
        this.sample();
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${this.name} did not answer GET ${this.url}/v2/ with 200 within ${timeoutMs} ms\n${this.logTail()}`);
  }

  describeExit() {
    const e = this.exited;
    if (!e) return 'running';
    if (e.error) return e.error.message;
    return e.signal ? `signal ${e.signal}` : `exit code ${e.code}`;
  }

  logTail(lines = 30) {
    try {
      const s = fs.readFileSync(this.logFile, 'utf8').trimEnd().split('\n');
      return `--- last lines of ${this.logFile} ---\n` + s.slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Check the process is still up; throws with its log otherwise. */
  assertAlive() {
    if (this.exited) throw new Error(`${this.name} has died (${this.describeExit()})\n${this.logTail()}`);
  }

  sample() {
    if (!this.child || this.exited) return;
    const now = Date.now();
    if (now - this.treeAt > 2000) {
      this.tree = processTree(this.child.pid);
      this.treeAt = now;
    }
    let rss = 0;
    for (const pid of this.tree) rss += readKb(pid, 'VmRSS');
    this.peakRssKb = Math.max(this.peakRssKb, rss);
    this.hwmKb = Math.max(this.hwmKb, readKb(this.child.pid, 'VmHWM'));
  }

  /** CPU time (user + system, clock ticks) used so far by the server's process tree. */
  cpuTicks() {
    if (!this.child || this.exited) return 0;
    let ticks = 0;
    for (const pid of processTree(this.child.pid)) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        const x = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(x[11]) + Number(x[12]);
      } catch {
        /* gone */
      }
    }
    return ticks;
  }

  /** Peak resident memory in MiB: the larger of the kernel's VmHWM and our polled tree sum. */
  peakRssMiB() {
    return Math.max(this.peakRssKb, this.hwmKb) / 1024;
  }

  async stop() {
    if (!this.child || this.exited) return;
    this.sample();
    const done = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(t);
  }

  /** Synchronous best-effort kill, for process exit handlers. */
  killNow() {
    if (this.child && !this.exited) {
      try {
        this.child.kill('SIGKILL');
      } catch {
        /* ignore */
      }
    }
  }
}

/** Environment for a child without REGISTRY_* overrides that the reference registry would honour. */
function cleanEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REGISTRY_') && !k.startsWith('BERTH_')) env[k] = v;
  return { ...env, ...extra };
}

/**
 * The reference registry. With `s3` ({ settings, prefix }: bench/lib/backends.mjs),
 * its `s3` storage driver keeps everything under that key prefix of the bucket
 * (chunksize 5 MiB, path-style requests to the regionendpoint, plain http,
 * SigV4; redirects off, so that blob bytes flow through the registry as
 * Berth's do).
 */
export async function referenceServer({ tmpRoot, bin, s3, cpus }) {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'reference-'));
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir);
  const port = await freePort();
  const config = path.join(dir, 'config.yml');
  const q = (v) => JSON.stringify(String(v)); // YAML double-quoted scalar
  const storage = s3
    ? [
        '  s3:',
        `    accesskey: ${q(s3.settings.accessKeyId)}`,
        `    secretkey: ${q(s3.settings.secretAccessKey)}`,
        `    region: ${q(s3.settings.region)}`,
        `    regionendpoint: ${q(s3.settings.endpoint)}`,
        `    bucket: ${q(s3.settings.bucket)}`,
        `    rootdirectory: ${q('/' + s3.prefix.replace(/\/$/, ''))}`,
        `    secure: ${s3.settings.endpoint.startsWith('https:')}`,
        '    v4auth: true',
        '    chunksize: 5242880',
        '  redirect:',
        '    disable: true',
      ]
    : ['  filesystem:', `    rootdirectory: ${dataDir}`];
  // aws-sdk-go v1 (in docker-registry) panics at start when AWS_CA_BUNDLE is
  // set ("LoadCustomCABundleError ... unsupported transport"): run it as
  // `env -u AWS_CA_BUNDLE` would.
  const env = cleanEnv();
  if (s3) delete env.AWS_CA_BUNDLE;
  fs.writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      ...storage,
      '  cache:',
      '    blobdescriptor: inmemory',
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  return new ServerProcess({
    name: 'reference',
    command: bin,
    args: ['serve', config],
    cwd: dir,
    env,
    cpus,
    port,
    dataDir,
    logFile: path.join(dir, 'server.log'),
  });
}

/**
 * Berth. `cmdTemplate`, when given, is a shell command with {port}, {addr} and {data}
 * placeholders; it is run with `exec` so that its pid is the server's.
 * With `s3` ({ settings, prefix }) its blobs go to s3://BUCKET/PREFIX through
 * `--storage` and `--s3-endpoint` (credentials and region in the AWS_*
 * environment); with `metadataUrl` its metadata goes to that PostgreSQL
 * database (`--metadata`). Those flags are appended to a `cmdTemplate` too.
 */
export async function berthServer({ tmpRoot, repoRoot, cmdTemplate, s3, metadataUrl, cpus }) {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'berth-'));
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir);
  const port = await freePort();
  const addr = `127.0.0.1:${port}`;
  const backendArgs = [
    ...(s3 ? ['--storage', `s3://${s3.settings.bucket}/${s3.prefix.replace(/\/$/, '')}`, '--s3-endpoint', s3.settings.endpoint] : []),
    ...(metadataUrl ? ['--metadata', metadataUrl] : []),
  ];
  let command;
  let args;
  if (cmdTemplate) {
    command = 'sh';
    const shellQuote = (a) => `'${a.replaceAll("'", `'\\''`)}'`;
    args = ['-c', ['exec ' + cmdTemplate.replaceAll('{port}', String(port)).replaceAll('{addr}', addr).replaceAll('{data}', dataDir), ...backendArgs.map(shellQuote)].join(' ')];
  } else {
    // Run Berth as its `berth` bin runs: with the Node flags of its shebang.
    const main = path.join(repoRoot, 'dist/src/cli/main.js');
    const nodeFlags = berthNodeFlags(repoRoot);
    command = process.execPath;
    args = [...nodeFlags, main, 'serve', '--addr', addr, '--data', dataDir, '--log-level', 'warn', ...backendArgs];
  }
  return new ServerProcess({
    name: 'berth',
    command,
    args,
    cwd: repoRoot,
    env: cleanEnv({ NODE_ENV: 'production', ...(s3 ? s3.settings.awsEnv : {}) }),
    port,
    dataDir,
    logFile: path.join(dir, 'server.log'),
    cpus,
  });
}

/** The Node flags of the `berth` bin's shebang (dist/src/cli/main.js). */
function berthNodeFlags(repoRoot) {
  const main = path.join(repoRoot, 'dist/src/cli/main.js');
  const shebang = /^#!\S*env -S node(.*)$/m.exec(fs.readFileSync(main, 'utf8').split('\n', 1)[0]);
  return shebang ? shebang[1].trim().split(/\s+/).filter(Boolean) : [];
}

/**
 * The measured ceiling (bench/lib/ceiling-server.mjs): a bare node:http
 * server answering fixed responses shaped like Berth's, run by the same
 * Node binary with the same Node flags as Berth. `image` is the fixture
 * (client.mjs randomImage): its first layer is the blob, its manifest the
 * manifest, whatever the name or reference asked for.
 */
export async function ceilingServer({ tmpRoot, repoRoot, image, cpus }) {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'ceiling-'));
  const port = await freePort();
  const fixture = path.join(dir, 'fixture.json');
  fs.writeFileSync(
    fixture,
    JSON.stringify({
      blob: { digest: image.layers[0].digest, size: image.layers[0].size },
      manifest: { digest: image.digest, mediaType: image.mediaType, body: image.manifest.toString('base64') },
    }),
  );
  return new ServerProcess({
    name: 'ceiling',
    command: process.execPath,
    args: [...berthNodeFlags(repoRoot), path.join(repoRoot, 'bench/lib/ceiling-server.mjs'), '--addr', `127.0.0.1:${port}`, '--fixture', fixture],
    cwd: dir,
    env: cleanEnv({ NODE_ENV: 'production' }),
    port,
    dataDir: dir,
    logFile: path.join(dir, 'server.log'),
    cpus,
  });
}
