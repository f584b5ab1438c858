/**
 * Upstream registries for pull-through tests: Debian's `docker-registry`
 * (CNCF distribution) on a loopback port, optionally itself in proxy mode
 * (`proxy.remoteurl`, for side-by-side measurements), and a counting HTTP
 * relay to put in front of any upstream, so a test counts what reached it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './reference-registry.js';

export interface DistributionRegistry {
  url: string;
  host: string;
  port: number;
  dir: string;
  output(): string;
  /** Stops the process; keeps the storage unless `remove`. */
  stop(remove?: boolean): Promise<void>;
  /** Starts it again on the same port with the same storage. */
  restart(): Promise<void>;
}

/** `docker-registry serve` on 127.0.0.1; with `remoteUrl`, a pull-through cache of it. */
export async function startDistribution(opts: { remoteUrl?: string; port?: number; dir?: string } = {}): Promise<DistributionRegistry> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'berth-ref-'));
  const port = opts.port ?? (await freePort());
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log: { level: error, accesslog: { disabled: true } }',
      `storage: { filesystem: { rootdirectory: ${join(dir, 'data')} }, delete: { enabled: true } }`,
      `http: { addr: 127.0.0.1:${port} }`,
      ...(opts.remoteUrl ? [`proxy: { remoteurl: ${opts.remoteUrl} }`] : []),
      '',
    ].join('\n'),
  );
  let child: ChildProcess;
  let out = '';
  const start = async () => {
    child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v2/`);
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${out}`);
      if (Date.now() > deadline) throw new Error(`docker-registry did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await start();
  const stop = async (remove = false) => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    if (remove) rmSync(dir, { recursive: true, force: true });
  };
  return { url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, port, dir, output: () => out, stop, restart: start };
}

export interface CountingRelay {
  url: string;
  host: string;
  /** Requests seen, as "METHOD path". */
  requests: string[];
  /** Response body bytes relayed. */
  bytes: number;
  /** GETs of blobs (the fetches a cache should make once). */
  blobGets(digest?: string): number;
  /** Answer every request with this status instead of relaying (undefined: relay). */
  failWith?: number;
  /** Delay before relaying each request, ms. */
  delayMs: number;
  /** Flip the first byte of every blob body relayed (an upstream serving wrong bytes). */
  corrupt: boolean;
  /** Hold every blob body after this many bytes until `release()` (undefined: never hold). */
  stallAfter?: number;
  release(): void;
  close(): Promise<void>;
}

/** An HTTP relay in front of `target` that counts requests and bytes. */
export async function startCountingRelay(target: string): Promise<CountingRelay> {
  const t = new URL(target);
  const relay: CountingRelay = {
    url: '',
    host: '',
    requests: [],
    bytes: 0,
    delayMs: 0,
    corrupt: false,
    release() {
      const waiting = released;
      released = [];
      relay.stallAfter = undefined;
      for (const w of waiting) w();
    },
    blobGets(digest) {
      return this.requests.filter((r) => r.startsWith('GET ') && r.includes('/blobs/') && (!digest || r.endsWith(digest))).length;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  let released: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    relay.requests.push(`${req.method} ${req.url}`);
    const go = () => {
      if (relay.failWith !== undefined) {
        res.writeHead(relay.failWith, { 'Content-Type': 'application/json' });
        res.end('{"errors":[{"code":"TOOMANYREQUESTS","message":"relay says no"}]}');
        return;
      }
      const up = request(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } },
        (upRes) => {
          const headers = { ...upRes.headers };
          // Redirects and realms name the upstream: rewrite them to the relay, so every request is counted.
          for (const h of ['location', 'www-authenticate'] as const) {
            const v = headers[h];
            if (typeof v === 'string') headers[h] = v.split(t.host).join(relay.host);
          }
          res.writeHead(upRes.statusCode ?? 502, headers);
          const isBlob = req.method === 'GET' && (req.url ?? '').includes('/blobs/');
          let first = relay.corrupt && isBlob;
          let sent = 0;
          upRes.on('data', (d: Buffer) => {
            relay.bytes += d.length;
            sent += d.length;
            if (isBlob && relay.stallAfter !== undefined && sent >= relay.stallAfter) {
              upRes.pause();
              released.push(() => upRes.resume());
            }
            if (first && d.length > 0) {
              first = false;
              d[0] = d[0]! ^ 0xff;
            }
            res.write(d);
          });
          upRes.on('end', () => res.end());
          upRes.on('error', () => res.destroy());
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
    if (relay.delayMs > 0) setTimeout(go, relay.delayMs);
    else go();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  relay.url = `http://127.0.0.1:${port}`;
  relay.host = `127.0.0.1:${port}`;
  return relay;
}

/** Pushes a blob to any registry: POST, then one PUT with the whole body (what every registry accepts). */
export async function pushBlobTo(url: string, repo: string, data: Buffer, digest: string, headers: Record<string, string> = {}): Promise<void> {
  const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
  await start.arrayBuffer();
  if (start.status !== 202) throw new Error(`start upload on ${url}: ${start.status}`);
  const location = new URL(start.headers.get('location')!, url);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', headers: { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Length': String(data.length) }, body: data as unknown as BodyInit });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`PUT blob on ${url}: ${put.status} ${text}`);
}

export async function pushManifestTo(url: string, repo: string, reference: string, body: Buffer, mediaType: string, headers: Record<string, string> = {}): Promise<void> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${reference}`, { method: 'PUT', headers: { ...headers, 'Content-Type': mediaType }, body: body as unknown as BodyInit });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`PUT manifest on ${url}: ${res.status} ${text}`);
}
