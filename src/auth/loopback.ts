/** Whether a request comes from this machine (the admin API's only audience while auth is off). */
import type { FastifyRequest } from 'fastify';

export function isLoopback(req: FastifyRequest): boolean {
  const addr = req.socket.remoteAddress ?? '';
  return addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.');
}

/** Whether an address (IPv4, IPv6 or IPv4-mapped) is on this machine; undefined (a socket already gone) is not. */
export function isLoopbackAddress(addr: string | undefined): boolean {
  if (addr === undefined) return false;
  return addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.');
}
