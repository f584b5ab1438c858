// One 256 MiB blob pushed (POST, one streamed PATCH, PUT) and pulled through
// a Berth server, on the data directory and on S3 (S3_ENDPOINT etc. set;
// run after `npx tsc -p .`). Prints MB/s for each. Usage: node bench/s3-push-pull.mjs [MiB]
import { createHash, randomBytes } from 'node:crypto';
import { startServer, TEST_STORAGE } from '../dist/test/helpers/server.js';

const mib = Number(process.argv[2] ?? 256);
const chunk = randomBytes(4 * 1024 * 1024);
const size = mib * 1024 * 1024;
const hash = createHash('sha256');
for (let i = 0; i < mib / 4; i++) hash.update(chunk);
const digest = `sha256:${hash.digest('hex')}`;

function body() {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= size) return c.close();
      c.enqueue(new Uint8Array(chunk));
      sent += chunk.length;
    },
  });
}

const server = await startServer();
try {
  const post = await fetch(`${server.url}/v2/bench/app/blobs/uploads/`, { method: 'POST' });
  const location = post.headers.get('location');
  let t = performance.now();
  const patch = await fetch(server.url + location, { method: 'PATCH', body: body(), duplex: 'half', headers: { 'Content-Type': 'application/octet-stream' } });
  if (patch.status !== 202) throw new Error(`PATCH ${patch.status} ${await patch.text()}`);
  const put = await fetch(`${server.url}${location}?digest=${digest}`, { method: 'PUT' });
  if (put.status !== 201) throw new Error(`PUT ${put.status} ${await put.text()}`);
  const push = (performance.now() - t) / 1000;
  t = performance.now();
  const get = await fetch(`${server.url}/v2/bench/app/blobs/${digest}`);
  let n = 0;
  const h = createHash('sha256');
  for await (const c of get.body) { n += c.length; h.update(c); }
  const pull = (performance.now() - t) / 1000;
  if (n !== size || `sha256:${h.digest('hex')}` !== digest) throw new Error('pulled bytes differ');
  const mb = size / 1e6;
  console.log(JSON.stringify({ storage: TEST_STORAGE, MiB: mib, pushSeconds: +push.toFixed(2), pushMBps: +(mb / push).toFixed(1), pullSeconds: +pull.toFixed(2), pullMBps: +(mb / pull).toFixed(1) }));
} finally {
  await server.stop();
}
