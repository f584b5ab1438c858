#!/usr/bin/env node
// The benchmark's measured ceiling: a bare `node:http` server that answers
// the read workloads with fixed responses shaped like Berth's (same status,
// same header names and value lengths, same body bytes), with Berth's
// keep-alive settings. No routing library, no database, no per-request work
// beyond Node's own HTTP parsing and writing: what the same Node binary, the
// same client and the same connections reach on this machine when the
// registry does nothing. Berth's figure as a share of this one says how much
// of the per-request cost is Berth's own.
//
//   node bench/lib/ceiling-server.mjs --addr 127.0.0.1:PORT --fixture FILE
//
// FILE (JSON): { blob: { digest, size }, manifest: { digest, mediaType, body (base64) } }
//   HEAD or GET  /v2/                      200 {}
//   HEAD         /v2/<name>/blobs/<...>    200, Berth's HEAD blob headers
//   GET or HEAD  /v2/<name>/manifests/<...> 200, Berth's manifest headers (+ body for GET)
//   anything else                          404
import http from 'node:http';
import fs from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({ options: { addr: { type: 'string' }, fixture: { type: 'string' } } });
if (!opt.addr || !opt.fixture) {
  console.error('usage: ceiling-server.mjs --addr HOST:PORT --fixture FILE');
  process.exit(2);
}
const fixture = JSON.parse(fs.readFileSync(opt.fixture, 'utf8'));
const manifestBody = Buffer.from(fixture.manifest.body, 'base64');

// Berth sends a fresh UUID as X-Request-Id; a fixed one of the same length keeps the bytes on the wire equal.
const REQUEST_ID = '00000000-0000-4000-8000-000000000000';
const COMMON = { 'X-Request-Id': REQUEST_ID, 'X-Content-Type-Options': 'nosniff', 'Docker-Distribution-API-Version': 'registry/2.0' };
const BLOB_HEADERS = {
  ...COMMON,
  'Content-Length': String(fixture.blob.size),
  'Content-Type': 'application/octet-stream',
  'Docker-Content-Digest': fixture.blob.digest,
  'Accept-Ranges': 'bytes',
  ETag: `"${fixture.blob.digest}"`,
};
const MANIFEST_HEADERS = {
  ...COMMON,
  'Content-Type': fixture.manifest.mediaType,
  'Content-Length': String(manifestBody.length),
  'Docker-Content-Digest': fixture.manifest.digest,
  ETag: `"${fixture.manifest.digest}"`,
};
const BASE_HEADERS = { ...COMMON, 'Content-Type': 'application/json', 'Content-Length': '2' };
const NOT_FOUND = '{"errors":[{"code":"NAME_UNKNOWN","message":"no such endpoint"}]}';

const server = http.createServer({ requestTimeout: 0, headersTimeout: 30_000 }, (req, res) => {
  const url = req.url;
  const head = req.method === 'HEAD';
  if (url === '/v2/' || url === '/v2') {
    res.writeHead(200, BASE_HEADERS);
    res.end(head ? undefined : '{}');
  } else if (head && url.includes('/blobs/')) {
    res.writeHead(200, BLOB_HEADERS);
    res.end();
  } else if ((head || req.method === 'GET') && url.includes('/manifests/')) {
    res.writeHead(200, MANIFEST_HEADERS);
    res.end(head ? undefined : manifestBody);
  } else {
    req.resume();
    res.writeHead(404, { ...COMMON, 'Content-Type': 'application/json', 'Content-Length': String(NOT_FOUND.length) });
    res.end(head ? undefined : NOT_FOUND);
  }
});
// Berth's keep-alive settings (src/http/connection-limits.ts).
server.keepAliveTimeout = 72_000;
server.setTimeout(0);

const sep = opt.addr.lastIndexOf(':');
server.listen(Number(opt.addr.slice(sep + 1)), opt.addr.slice(0, sep));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
