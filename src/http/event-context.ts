/**
 * The request an event reports (the reference registry's `request` and
 * `actor`), built only when events are on: without an endpoint, requests
 * pay nothing for them.
 */
import type { FastifyRequest } from 'fastify';
import type { EventContext } from '../metadata/store.js';
import type { RequestContext } from './handlers/handler.js';

export function eventContext({ req, registry }: RequestContext): EventContext | undefined {
  if (!registry.ctx.events) return undefined;
  return requestEventContext(req);
}

export function requestEventContext(req: FastifyRequest): EventContext {
  const socket = req.raw.socket;
  // The client's address as the reference registry reports it: the peer's
  // ip:port, or the forwarded address a trusted proxy gave.
  const addr = req.ip === socket.remoteAddress && socket.remotePort !== undefined ? joinHostPort(req.ip, socket.remotePort) : req.ip;
  const host = req.headers.host ?? '';
  return {
    request: { id: req.id, addr, host, method: req.method, useragent: req.headers['user-agent'] ?? '' },
    ...(req.principal ? { actor: req.principal } : {}),
    base: `${req.protocol}://${host}`,
  };
}

function joinHostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
