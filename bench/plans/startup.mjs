#!/usr/bin/env node
/**
 * Time from starting `berth serve` to its first 200 on /v2/, then the
 * server's resident memory after reads across many repositories (tag pages,
 * manifests by tag and digest, blob HEADs, catalog pages), on an existing
 * data directory (e.g. one holding a metadata.db from fill-sqlite.mjs).
 *
 *   node bench/plans/startup.mjs <berth main.js> <data dir> [config.yaml] [reads=20000]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

const [main, data, config, readsArg = '20000'] = process.argv.slice(2);
const port = 20000 + Math.floor(Math.random() * 20000);
const base = `http://127.0.0.1:${port}`;
const args = [main, 'serve', '--data', data, '--addr', `127.0.0.1:${port}`, '--log-level', 'warn', ...(config ? ['--config', config] : [])];
const started = performance.now();
const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 1024;
try {
  for (;;) {
    const ok = await fetch(`${base}/v2/`).then((r) => r.status === 200, () => false);
    if (ok) break;
    if (child.exitCode !== null) throw new Error('serve exited');
    await new Promise((r) => setTimeout(r, 10));
  }
  const startup = performance.now() - started;
  console.log(`startup ${startup.toFixed(0)} ms, rss ${rss().toFixed(0)} MiB`);
  const reads = Number(readsArg);
  const repos = [];
  for (let last = ''; ; ) {
    const r = await (await fetch(`${base}/v2/_catalog?n=1000${last ? `&last=${encodeURIComponent(last)}` : ''}`)).json();
    repos.push(...r.repositories);
    if (r.repositories.length < 1000) break;
    last = r.repositories.at(-1);
  }
  const t = performance.now();
  for (let i = 0; i < reads; i++) {
    const repo = repos[(i * 7919) % repos.length];
    const tags = await (await fetch(`${base}/v2/${repo}/tags/list?n=100`)).json();
    const tag = tags.tags[(i * 31) % tags.tags.length];
    const m = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    const body = await m.json();
    await fetch(`${base}/v2/${repo}/manifests/${m.headers.get('docker-content-digest')}`, { method: 'HEAD' });
    await fetch(`${base}/v2/${repo}/blobs/${body.config.digest}`, { method: 'HEAD' });
  }
  console.log(`${reads} rounds (tags page, manifest by tag, HEAD by digest, HEAD blob) over ${repos.length} repositories in ${((performance.now() - t) / 1000).toFixed(1)} s; rss ${rss().toFixed(0)} MiB`);
} finally {
  child.kill('SIGTERM');
}
