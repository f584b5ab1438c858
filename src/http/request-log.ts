/** The per-request log line: one JSON line per request, greppable by field. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../log.js';
import { CACHE_HEADER } from './handlers/cache-header.js';

export function logRequest(req: FastifyRequest, reply: FastifyReply): void {
  // Checked first: with --log-level warn the line costs nothing to skip.
  if (!(req.log as unknown as Logger).isLevelEnabled('info')) return;
  req.log.info(
    {
      method: req.method,
      // The client as the trusted-proxy rules define it, and who it was (with auth on).
      client: req.ip,
      ...(req.principal !== undefined ? { user: req.principal } : {}),
      path: req.url,
      status: reply.statusCode,
      bytesIn: Number(req.headers['content-length'] ?? 0),
      bytesOut: Number(reply.getHeader('content-length') ?? 0),
      ...cacheField(reply),
      ms: Math.round(reply.elapsedTime * 10) / 10,
    },
    'request',
  );
}

/** How a pull-through cache answered, when it did (hit, miss, stale). */
function cacheField(reply: FastifyReply): { cache?: string } {
  const cache = reply.getHeader(CACHE_HEADER);
  return cache === undefined ? {} : { cache: String(cache) };
}
