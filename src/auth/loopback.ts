/** Whether a request comes from this machine (the admin API's only audience while no admins are configured). */
import type { FastifyRequest } from 'fastify';

/**
 * The client as the trusted-proxy rules define it (`req.ip`: the socket's
 * address, or behind a trusted proxy the right-most forwarded hop it does
 * not trust): a proxy on this machine relaying a remote client is not local.
 */
export function isLoopback(req: FastifyRequest): boolean {
  return isLoopbackAddress(req.ip);
}

/** Whether an address (IPv4, IPv6 or IPv4-mapped) is on this machine; undefined (a socket already gone) is not. */
export function isLoopbackAddress(addr: string | undefined): boolean {
  if (addr === undefined) return false;
  return addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.');
}
