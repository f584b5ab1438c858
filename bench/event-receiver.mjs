#!/usr/bin/env node
// A webhook receiver for measuring Berth's event delivery: accepts every
// envelope, and on SIGINT/SIGTERM (or --report-after-idle seconds without
// events) prints how many events arrived and the delivery latency (arrival
// time minus the event's timestamp, which is its commit time) p50/p99 per action.
//
//   node bench/event-receiver.mjs --port 5390 [--only push]
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({ options: { port: { type: 'string', default: '0' }, only: { type: 'string' } } });
const latencies = new Map();
let events = 0;
let duplicates = 0;
const seen = new Set();

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const at = Date.now();
    try {
      for (const e of JSON.parse(Buffer.concat(chunks).toString('utf8')).events) {
        events++;
        if (seen.has(e.id)) duplicates++;
        seen.add(e.id);
        if (opt.only && e.action !== opt.only) continue;
        const list = latencies.get(e.action) ?? [];
        list.push(at - Date.parse(e.timestamp));
        latencies.set(e.action, list);
      }
    } catch {
      // not an envelope: ignored
    }
    res.writeHead(200).end();
  });
});
server.listen(Number(opt.port), '127.0.0.1', () => console.error(`listening on http://127.0.0.1:${server.address().port}/events`));

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
function report() {
  const out = { events, duplicates, latencyMs: {} };
  for (const [action, list] of latencies) {
    const s = list.sort((a, b) => a - b);
    out.latencyMs[action] = { n: s.length, p50: pct(s, 50), p99: pct(s, 99), max: s.at(-1) };
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}
process.on('SIGINT', report);
process.on('SIGTERM', report);
