/**
 * What a request costs the HTTP layer when logging is off: no per-request
 * child logger (pino serializes its bindings and builds a logger object for
 * each one), made only when the request writes a line.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { Registry } from '../../src/registry/registry.js';
import { buildServer } from '../../src/http/server.js';
import type { Logger } from '../../src/log.js';

const LIMITS = { maxHeaderBytes: 16384, headerTimeout: 0, idleTimeout: 0, connectionsPerClient: 0 };

/** A pino logger at `level` that counts the children made from it and keeps the lines written. */
function countingLogger(level: string): { logger: Logger; children: () => number; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level }, { write: (s: string) => void lines.push(s) });
  let children = 0;
  const child = logger.child.bind(logger);
  logger.child = ((...args: Parameters<typeof child>) => {
    children++;
    return child(...args);
  }) as typeof logger.child;
  return { logger, children: () => children, lines };
}

describe('HTTP hot path', () => {
  it('makes no per-request logger for requests that log nothing', async () => {
    const { logger, children } = countingLogger('warn');
    const app = buildServer({ registry: {} as Registry, logger, limits: LIMITS });
    await app.ready();
    const before = children(); // the server's own, made once
    try {
      for (let i = 0; i < 5; i++) {
        const res = await app.inject({ method: 'GET', url: '/v2/' });
        assert.equal(res.statusCode, 200);
      }
      assert.equal(children() - before, 0);
    } finally {
      await app.close();
    }
  });

  it('makes the request logger, with the request id, when a request writes a line', async () => {
    const { logger, children, lines } = countingLogger('warn');
    const registry = {
      ctx: { pullEvents: undefined },
      blobs: { size: () => Promise.reject(new Error('boom')) },
    } as unknown as Registry;
    const app = buildServer({ registry, logger, limits: LIMITS });
    await app.ready();
    const before = children();
    try {
      const res = await app.inject({ method: 'HEAD', url: `/v2/a/blobs/sha256:${'0'.repeat(64)}`, headers: { 'x-request-id': 'req-77' } });
      assert.equal(res.statusCode, 500);
      assert.equal(children() - before, 1);
      const line = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'unexpected error');
      assert.equal(line?.reqId, 'req-77');
    } finally {
      await app.close();
    }
  });
});
