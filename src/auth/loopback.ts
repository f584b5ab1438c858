/** Whether a request comes from this machine (the admin API's only audience while no admins are configured). */
import type { FastifyRequest } from 'fastify';

/**
 * The client as the trusted-proxy rules define it (`req.ip`: the socket's
 * address, or behind a trusted proxy the right-most forwarded hop it does
 * not trust): a proxy on this machine relaying a remote client is not local.
 */
export function isLoopback(req: FastifyRequest): boolean {
  const addr = req.ip ?? '';
  return addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.');
}
