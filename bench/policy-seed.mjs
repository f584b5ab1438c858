// Seeds a Berth data directory with N small tagged images in one repository,
// for measuring policies (retention over many tags). Usage:
//   node bench/policy-seed.mjs DATA_DIR [N=10000] [REPO=bench/seeded]
// Starts `berth serve` on DATA_DIR, pushes, stops it.
import { spawn } from 'node:child_process';
import { RegistryClient, pool } from './lib/client.mjs';

const [data, n = '10000', repo = 'bench/seeded'] = process.argv.slice(2);
if (!data) throw new Error('usage: node bench/policy-seed.mjs DATA_DIR [N] [REPO]');
const port = 20000 + Math.floor(Math.random() * 20000);
const server = spawn(process.execPath, ['dist/src/cli/main.js', 'serve', '--addr', `127.0.0.1:${port}`, '--data', data, '--log-level', 'warn'], {
  stdio: ['ignore', 'ignore', 'inherit'],
  env: { ...process.env, BERTH_GC_ENABLED: 'false' },
});
const url = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${url}/v2/`)).ok) break;
  } catch {}
  if (i > 200) throw new Error('server did not start');
  await new Promise((r) => setTimeout(r, 50));
}
const client = new RegistryClient(url);
const started = Date.now();
await pool(Number(n), 16, (i) => client.pushRandomImage(repo, `t-${i}`, { layers: 1, layerSize: 1024 }));
console.log(`seeded ${n} tags in ${repo} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
server.kill('SIGTERM');
await new Promise((r) => server.on('exit', r));
