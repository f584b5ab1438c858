#!/usr/bin/env node
/**
 * p50/p99 of single requests (one at a time, no concurrency) against a
 * running-for-the-occasion `berth serve` on an existing data directory:
 * HEAD blob, GET manifest by tag and by digest, tags/list first and deep
 * page of the biggest repository, _catalog first and deep page. For
 * comparing a small and a large database filled by fill-sqlite.mjs.
 *
 *   node bench/plans/read-latency.mjs <berth main.js> <data dir> [rounds=300]
 */
import { spawn } from 'node:child_process';

const [main, data, roundsArg = '300'] = process.argv.slice(2);
const port = 20000 + Math.floor(Math.random() * 20000);
const base = `http://127.0.0.1:${port}`;
const child = spawn(process.execPath, [main, 'serve', '--data', data, '--addr', `127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
const accept = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
try {
  while (!(await fetch(`${base}/v2/`).then((r) => r.ok, () => false))) await new Promise((r) => setTimeout(r, 20));
  const repos = (await (await fetch(`${base}/v2/_catalog?n=10000`)).json()).repositories;
  const big = 'big/tags';
  const bigTags = (await (await fetch(`${base}/v2/${big}/tags/list?n=10000`)).json()).tags;
  const deepTag = (n) => `v${String(n).padStart(6, '0')}`;
  const bigCount = Number(/(\d+)$/.exec(bigTags.at(-1))[1]);
  const samples = {};
  const time = async (name, url, init) => {
    const t = performance.now();
    const r = await fetch(url, init);
    await r.arrayBuffer();
    if (!r.ok) throw new Error(`${name} ${url}: ${r.status}`);
    (samples[name] ??= []).push(performance.now() - t);
    return r;
  };
  const rounds = Number(roundsArg);
  for (let i = 0; i < rounds; i++) {
    const repo = repos[(i * 7919) % repos.length];
    const tag = repo === big ? deepTag((i * 31) % 1000) : `build-${(i * 31) % 100}`;
    const m = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: accept });
    const body = await m.json();
    const digest = m.headers.get('docker-content-digest');
    await time('HEAD blob', `${base}/v2/${repo}/blobs/${body.config.digest}`, { method: 'HEAD' });
    await time('GET manifest by tag', `${base}/v2/${repo}/manifests/${tag}`, { headers: accept });
    await time('GET manifest by digest', `${base}/v2/${repo}/manifests/${digest}`, { headers: accept });
    // Different pages each round: the tag page cache would otherwise answer.
    await time('tags/list first page (n=100)', `${base}/v2/${big}/tags/list?n=${100 + (i % 50)}`);
    await time('tags/list deep page (n=100)', `${base}/v2/${big}/tags/list?n=100&last=${deepTag(Math.max(0, bigCount - 1000 + i))}`);
    await time('_catalog first page (n=100)', `${base}/v2/_catalog?n=${100 + (i % 50)}`);
    await time('_catalog deep page (n=100)', `${base}/v2/_catalog?n=100&last=${encodeURIComponent(repos[Math.max(0, repos.length - 150 + (i % 50))])}`);
  }
  const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];
  console.log(`| request | p50 ms | p99 ms |\n|---|---|---|`);
  for (const [name, xs] of Object.entries(samples)) console.log(`| ${name} | ${pct(xs, 50).toFixed(2)} | ${pct(xs, 99).toFixed(2)} |`);
} finally {
  child.kill('SIGTERM');
}
