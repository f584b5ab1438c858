// Helpers that drive external load generators (curl, wrk) and small stats.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { withParam } from './client.mjs';

/** Children currently running, so that the harness can kill them on exit. */
export const liveChildren = new Set();

/**
 * Run a command, capture its output, kill it after timeoutMs.
 * @returns {Promise<{code: number|null, signal: string|null, stdout: string, stderr: string}>}
 */
export function run(cmd, args, { timeoutMs = 120_000, env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    liveChildren.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      reject(new Error(`${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      if (timedOut) reject(new Error(`${cmd} ${args.join(' ')}: timed out after ${timeoutMs} ms`));
      else resolve({ code, signal, stdout, stderr });
    });
  });
}

export async function which(cmd) {
  try {
    const r = await run('sh', ['-c', `command -v ${cmd}`], { timeoutMs: 5000 });
    return r.code === 0 ? r.stdout.trim() : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- statistics

export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function percentile(xs, p) {
  const v = [...xs].sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const idx = Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1));
  return v[idx];
}

// ---------------------------------------------------------------- blob files

/**
 * Write `sizeBytes` of random data to one file, or to chunk files of
 * `chunkBytes` each, hashing as it goes.
 * @returns {{digest: string, size: number, file?: string, chunks?: {file: string, start: number, end: number}[]}}
 */
export function makeRandomBlob(dir, name, sizeBytes, chunkBytes = 0) {
  const hash = crypto.createHash('sha256');
  const bufSize = 4 << 20;
  const buf = Buffer.allocUnsafe(bufSize);
  const chunks = [];
  let fd = -1;
  let file;
  if (!chunkBytes) {
    file = path.join(dir, `${name}.bin`);
    fd = fs.openSync(file, 'w');
  }
  let written = 0;
  let chunkStart = 0;
  while (written < sizeBytes) {
    if (chunkBytes && (fd === -1 || written - chunkStart === chunkBytes)) {
      if (fd !== -1) {
        fs.closeSync(fd);
        chunks[chunks.length - 1].end = written - 1;
      }
      chunkStart = written;
      const f = path.join(dir, `${name}.${String(chunks.length).padStart(4, '0')}.bin`);
      chunks.push({ file: f, start: written, end: -1 });
      fd = fs.openSync(f, 'w');
    }
    let n = Math.min(bufSize, sizeBytes - written);
    if (chunkBytes) n = Math.min(n, chunkStart + chunkBytes - written);
    crypto.randomFillSync(buf, 0, n);
    const slice = buf.subarray(0, n);
    hash.update(slice);
    fs.writeSync(fd, slice);
    written += n;
  }
  fs.closeSync(fd);
  if (chunkBytes) chunks[chunks.length - 1].end = written - 1;
  const out = { digest: 'sha256:' + hash.digest('hex'), size: sizeBytes };
  if (chunkBytes) out.chunks = chunks;
  else out.file = file;
  return out;
}

export function removeBlobFiles(blob) {
  for (const f of blob.file ? [blob.file] : blob.chunks.map((c) => c.file)) fs.rmSync(f, { force: true });
}

// ---------------------------------------------------------------- curl

const CURL_TIMEOUT_S = 600;

function parseHeaders(text) {
  // With -D - and -w, stdout is: header block(s), then our -w line.
  const headers = {};
  let status = 0;
  for (const line of text.split(/\r?\n/)) {
    const m = /^HTTP\/[\d.]+ (\d{3})/.exec(line);
    if (m) {
      status = Number(m[1]);
      continue;
    }
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status, headers };
}

async function curlStartUpload(base, repo) {
  const r = await run('curl', ['-sS', '-X', 'POST', '-o', '/dev/null', '-D', '-', '--max-time', '60', '-H', 'Content-Length: 0', `${base}/v2/${repo}/blobs/uploads/`], {
    timeoutMs: 70_000,
  });
  if (r.code !== 0) throw new Error(`curl POST upload: exit ${r.code}: ${r.stderr.trim()}`);
  const { status, headers } = parseHeaders(r.stdout);
  if (status !== 202) throw new Error(`POST /v2/${repo}/blobs/uploads/: HTTP ${status}, expected 202`);
  if (!headers.location) throw new Error(`POST /v2/${repo}/blobs/uploads/: no Location`);
  return new URL(headers.location, base).href;
}

const W = '\\n%{http_code} %{size_upload} %{time_total} %header{location}|%header{docker-content-digest}\\n';

function parseW(stdout) {
  const lines = stdout.trim().split('\n');
  const [code, size, time, rest] = lines[lines.length - 1].split(' ');
  const [location, digest] = (rest ?? '').split('|');
  return { status: Number(code), sizeUpload: Number(size), time: Number(time), location, digest };
}

/**
 * Monolithic push with curl: POST /v2/<repo>/blobs/uploads/, then
 * PUT <location>&digest=... with the whole file as body (curl -T).
 * @returns {Promise<{seconds: number, bytes: number}>} time is curl's own time_total, summed.
 */
export async function curlPushMonolithic(base, repo, blob) {
  const t0 = process.hrtime.bigint();
  const location = await curlStartUpload(base, repo);
  const tPost = Number(process.hrtime.bigint() - t0) / 1e9;
  const r = await run(
    'curl',
    ['-sS', '-o', '/dev/null', '-w', W, '--max-time', String(CURL_TIMEOUT_S), '-X', 'PUT', '-T', blob.file, '-H', 'Content-Type: application/octet-stream', '-H', 'Expect:', withParam(location, 'digest', blob.digest)],
    { timeoutMs: (CURL_TIMEOUT_S + 10) * 1000 },
  );
  if (r.code !== 0) throw new Error(`curl PUT blob: exit ${r.code}: ${r.stderr.trim()}`);
  const w = parseW(r.stdout);
  if (w.status !== 201) throw new Error(`PUT blob (monolithic): HTTP ${w.status}, expected 201`);
  if (w.sizeUpload !== blob.size) throw new Error(`PUT blob: uploaded ${w.sizeUpload} bytes, expected ${blob.size}`);
  if (w.digest && w.digest !== blob.digest) throw new Error(`PUT blob: Docker-Content-Digest ${w.digest}, expected ${blob.digest}`);
  return { seconds: tPost + w.time, bytes: blob.size };
}

/**
 * Chunked push with curl: POST, then one PATCH per chunk file with
 * Content-Range: start-end, then PUT <location>&digest=... with no body.
 */
export async function curlPushChunked(base, repo, blob) {
  const t0 = process.hrtime.bigint();
  let location = await curlStartUpload(base, repo);
  let seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const c of blob.chunks) {
    const r = await run(
      'curl',
      ['-sS', '-o', '/dev/null', '-w', W, '--max-time', String(CURL_TIMEOUT_S), '-X', 'PATCH', '-T', c.file, '-H', 'Content-Type: application/octet-stream', '-H', `Content-Range: ${c.start}-${c.end}`, '-H', 'Expect:', location],
      { timeoutMs: (CURL_TIMEOUT_S + 10) * 1000 },
    );
    if (r.code !== 0) throw new Error(`curl PATCH chunk: exit ${r.code}: ${r.stderr.trim()}`);
    const w = parseW(r.stdout);
    if (w.status !== 202) throw new Error(`PATCH chunk ${c.start}-${c.end}: HTTP ${w.status}, expected 202`);
    if (w.sizeUpload !== c.end - c.start + 1) throw new Error(`PATCH chunk: uploaded ${w.sizeUpload} bytes`);
    if (!w.location) throw new Error('PATCH chunk: no Location');
    location = new URL(w.location, base).href;
    seconds += w.time;
  }
  const r = await run(
    'curl',
    ['-sS', '-o', '/dev/null', '-w', W, '--max-time', '300', '-X', 'PUT', '-H', 'Content-Length: 0', withParam(location, 'digest', blob.digest)],
    { timeoutMs: 310_000 },
  );
  if (r.code !== 0) throw new Error(`curl PUT (close upload): exit ${r.code}: ${r.stderr.trim()}`);
  const w = parseW(r.stdout);
  if (w.status !== 201) throw new Error(`PUT ?digest= (close chunked upload): HTTP ${w.status}, expected 201`);
  if (w.digest && w.digest !== blob.digest) throw new Error(`PUT: Docker-Content-Digest ${w.digest}, expected ${blob.digest}`);
  seconds += w.time;
  return { seconds, bytes: blob.size };
}

/**
 * Pull a blob `repeats` times with `parallel` transfers at a time, in one
 * curl process (-Z), to /dev/null. Checks every transfer's status and size.
 * @returns {Promise<{seconds: number, bytes: number}>} wall time of the curl process (parallel),
 *   or the sum of curl's time_total (parallel = 1).
 */
export async function curlPull(base, repo, blob, { parallel = 1, repeats = 1 } = {}) {
  const url = `${base}/v2/${repo}/blobs/${blob.digest}`;
  const args = ['-sS', '-L', '--max-time', String(CURL_TIMEOUT_S), '-w', '%{http_code} %{size_download} %{time_total}\\n'];
  if (parallel > 1) args.push('-Z', '--parallel-max', String(parallel));
  const n = parallel * repeats;
  for (let i = 0; i < n; i++) args.push('-o', '/dev/null', url);
  const t0 = process.hrtime.bigint();
  const r = await run('curl', args, { timeoutMs: (CURL_TIMEOUT_S + 10) * 1000 });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.code !== 0) throw new Error(`curl GET blob: exit ${r.code}: ${r.stderr.trim()}`);
  const lines = r.stdout.trim().split('\n');
  if (lines.length !== n) throw new Error(`curl GET blob: ${lines.length} transfers reported, expected ${n}`);
  let sum = 0;
  for (const line of lines) {
    const [code, size, time] = line.split(' ').map(Number);
    if (code !== 200) throw new Error(`GET blob: HTTP ${code}, expected 200`);
    if (size !== blob.size) throw new Error(`GET blob: received ${size} bytes, expected ${blob.size}`);
    sum += time;
  }
  return { seconds: parallel > 1 ? wall : sum, bytes: blob.size * n };
}

/** `cmd args` as run under `taskset -c cpus` when a CPU list is given. */
function pinned(cpus, cmd, args) {
  return cpus ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
}

// ---------------------------------------------------------------- wrk

function toMs(s) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s);
  if (!m) return NaN;
  const v = Number(m[1]);
  return { us: v / 1000, ms: v, s: v * 1000, m: v * 60_000 }[m[2]];
}

/**
 * Run wrk against one URL.
 * @returns {Promise<{rps: number, p50: number, p99: number, requests: number, non2xx: number, socketErrors: string|null}>}
 */
export async function runWrk(url, { method = 'GET', headers = {}, connections = 32, threads = 2, durationS = 10, tmpDir, cpus }) {
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${durationS}s`, '--timeout', '10s', '--latency'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  if (method !== 'GET') {
    const script = path.join(tmpDir, `wrk-${method.toLowerCase()}.lua`);
    fs.writeFileSync(script, `wrk.method = "${method}"\n`);
    args.push('-s', script);
  }
  args.push(url);
  const r = await run(...pinned(cpus, 'wrk', args), { timeoutMs: (durationS + 60) * 1000 });
  if (r.code !== 0) throw new Error(`wrk: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  const out = r.stdout;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const p50 = toMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? '');
  const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '');
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const socketErrors = /Socket errors:.*/.exec(out)?.[0] ?? null;
  if (!Number.isFinite(rps)) throw new Error(`wrk: could not parse output:\n${out}`);
  if (!requests) throw new Error(`wrk: no request completed in ${durationS}s`);
  return { rps, p50, p99, requests, non2xx, socketErrors, raw: out };
}

// ---------------------------------------------------------------- ab

/**
 * Run ApacheBench (HTTP/1.0 with keep-alive). Used for HEAD, which wrk 4.1
 * cannot do: its parser waits for a body after a HEAD response's
 * Content-Length and every connection stalls.
 * @returns {Promise<{rps: number, p50: number, p99: number, requests: number, non2xx: number, failed: number, keepAlive: number}>}
 */
export async function runAb(url, { method = 'GET', headers = {}, connections = 32, durationS = 10, cpus }) {
  const n = Math.max(500_000, durationS * 50_000); // ab preallocates per-request stats; -t stops it first
  const args = ['-q', '-k', '-c', String(connections), '-t', String(durationS), '-n', String(n)];
  if (method === 'HEAD') args.push('-i');
  else if (method !== 'GET') throw new Error(`ab: method ${method} not supported here`);
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const r = await run(...pinned(cpus, 'ab', args), { timeoutMs: (durationS + 60) * 1000 });
  const out = r.stdout;
  if (r.code !== 0) throw new Error(`ab: exit ${r.code}: ${(r.stderr || out).trim().split('\n').slice(-3).join(' ')}`);
  const num = (re) => Number(re.exec(out)?.[1] ?? NaN);
  const rps = num(/Requests per second:\s+([\d.]+)/);
  const requests = num(/Complete requests:\s+(\d+)/);
  const failed = num(/Failed requests:\s+(\d+)/);
  const non2xx = Number(/Non-2xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const keepAlive = num(/Keep-Alive requests:\s+(\d+)/);
  const p50 = num(/^\s+50%\s+(\d+)/m);
  const p99 = num(/^\s+99%\s+(\d+)/m);
  if (!Number.isFinite(rps)) throw new Error(`ab: could not parse output:\n${out}`);
  if (!requests) throw new Error(`ab: no request completed in ${durationS}s`);
  return { rps, p50, p99, requests, non2xx, failed, keepAlive, raw: out };
}
