/** The request log: one JSON line per request, with the fields operators grep for. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomBlob, RegistryClient } from '../helpers/registry-client.js';
import { startServer } from '../helpers/server.js';

describe('request log', () => {
  it('writes exactly one line per request, streamed blob bodies included', async () => {
    const server = await startServer({ args: ['--log-level', 'info'], env: { BERTH_GC_ENABLED: 'false' } });
    try {
      const client = new RegistryClient(server.url);
      const b = randomBlob(3000);
      await client.pushBlob('log/app', b);
      const res = await client.fetch(`/v2/log/app/blobs/${b.digest}`, { headers: { 'X-Request-Id': 'trace-me-42' } });
      assert.equal(res.headers.get('x-request-id'), 'trace-me-42');
      await res.arrayBuffer();
      await new Promise((r) => setTimeout(r, 200)); // the log is written asynchronously
      const lines = server
        .output()
        .split('\n')
        .filter((l) => l.includes('"msg":"request"') && l.includes('trace-me-42'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(lines.length, 1, server.output());
      assert.equal(lines[0]!.method, 'GET');
      assert.equal(lines[0]!.status, 200);
      assert.equal(lines[0]!.bytesOut, 3000);
      assert.equal(typeof lines[0]!.ms, 'number');
    } finally {
      await server.stop();
    }
  });

  it('is off at --log-level warn', async () => {
    const server = await startServer({ env: { BERTH_GC_ENABLED: 'false' } }); // helpers pass --log-level warn
    try {
      await new RegistryClient(server.url).fetch('/v2/');
      await new Promise((r) => setTimeout(r, 200));
      assert.doesNotMatch(server.output(), /"msg":"request"/);
    } finally {
      await server.stop();
    }
  });
});
