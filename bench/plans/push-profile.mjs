#!/usr/bin/env node
/**
 * Where a push's time goes on a scale dataset: starts `berth serve` on an
 * existing data directory (SQLite), pushes P small images through the API
 * (16 in flight, the scale bench's push workload), deletes them again, and
 * prints images/s with the server's CPU per image (user and system, from
 * /proc), its reads and writes per image (/proc/<pid>/io) and its peak
 * resident set (VmHWM, /proc/<pid>/status, after the pushes). With
 * --cpu-prof DIR the server writes a V8 CPU profile there.
 *
 *   node bench/plans/push-profile.mjs <berth main.js> <data dir> [--images P] [--cpu-prof DIR]
 *
 * Extra server settings through the environment (BERTH_*), as for serve.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { RegistryClient, pool } from '../lib/client.mjs';
import { makeImage, repositoryOf, POOL } from '../lib/scale-content.mjs';

const { values: opt, positionals } = parseArgs({ allowPositionals: true, options: { images: { type: 'string', default: '2000' }, 'cpu-prof': { type: 'string' } } });
const [main, data] = positionals;
if (!main || !data) throw new Error('usage: push-profile.mjs <berth main.js> <data dir> [--images P] [--cpu-prof DIR]');
const P = Number(opt.images);
const port = 20000 + Math.floor(Math.random() * 20000);
const base = `http://127.0.0.1:${port}`;
const flags = opt['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', opt['cpu-prof']] : [];
const env = { ...process.env, NODE_ENV: 'production', BERTH_GC_ENABLED: 'false' };
const child = spawn(process.execPath, [...flags, main, 'serve', '--data', data, '--addr', `127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'], env });

const TICK = 100; // clock ticks per second (getconf CLK_TCK)
const cpu = () => {
  const f = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: Number(f[11]) / TICK, system: Number(f[12]) / TICK };
};
const io = () => Object.fromEntries(fs.readFileSync(`/proc/${child.pid}/io`, 'utf8').trim().split('\n').map((l) => l.split(': ')).map(([k, v]) => [k, Number(v)]));

const peakRssMiB = () => {
  const kib = Number(/^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]);
  return Number((kib / 1024).toFixed(1));
};

const client = new RegistryClient(base);
try {
  while (!(await fetch(`${base}/v2/`).then((r) => r.ok, () => false))) {
    if (child.exitCode !== null) throw new Error(`berth serve exited with code ${child.exitCode} before answering`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const stamp = Date.now().toString(36);
  const images = Array.from({ length: P }, (_, k) => ({ ...makeImage(`profile-${stamp}-${k}`, k % POOL), repository: repositoryOf(k), tag: `q${stamp}-${k}` }));
  const c0 = cpu();
  const io0 = io();
  const t0 = performance.now();
  await pool(P, 16, async (k) => {
    const img = images[k];
    for (const b of [img.shared, img.layer, img.config]) await client.pushBlob(img.repository, b.data, b.digest);
    await client.pushManifest(img.repository, img.tag, img.manifest, img.mediaType);
  });
  const seconds = (performance.now() - t0) / 1000;
  const c1 = cpu();
  const io1 = io();
  const per = (x) => ((x * 1e6) / P).toFixed(0);
  console.log(JSON.stringify({
    images: P,
    imagesPerSecond: Number((P / seconds).toFixed(1)),
    cpuUserUsPerImage: Number(per(c1.user - c0.user)),
    cpuSystemUsPerImage: Number(per(c1.system - c0.system)),
    readSyscallsPerImage: Number(((io1.syscr - io0.syscr) / P).toFixed(1)),
    writeSyscallsPerImage: Number(((io1.syscw - io0.syscw) / P).toFixed(1)),
    bytesWrittenPerImage: Math.round((io1.write_bytes - io0.write_bytes) / P),
    peakRssMiB: peakRssMiB(),
  }));
  await pool(P, 16, async (k) => {
    const r = await client.request('DELETE', `/v2/${images[k].repository}/manifests/${images[k].digest}`);
    if (r.status !== 202) throw new Error(`DELETE: ${r.status}`);
  });
} finally {
  client.close();
  child.kill('SIGTERM');
}
