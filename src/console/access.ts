/**
 * Who is using the console and what they may see and do: the registry's own
 * users, rules and tokens (src/auth/), never a second user database. With
 * auth off everyone may pull and delete (deletes still follow `deletes:`),
 * and the GC button answers whom the admin API answers (loopback clients).
 */
import type { FastifyRequest } from 'fastify';
import type { Action } from '../auth/config.js';
import type { Guard } from '../auth/guard.js';
import type { AdminCheck } from '../auth/security.js';
import { RegistryError } from '../registry/errors.js';

export interface Caller {
  /** The user's name; null when anonymous (or auth is off). */
  name: string | null;
  can(repository: string, action: Action): boolean;
  /** Whether the admin API would answer this caller (GC, storage totals, run history). */
  admin: boolean;
}

export interface ConsoleAccess {
  /** Whether auth is on (then the console offers a login). */
  readonly auth: boolean;
  caller(req: FastifyRequest): Promise<Caller>;
}

export function consoleAccess(guard: Guard | undefined, adminCheck: AdminCheck): ConsoleAccess {
  const isAdmin = (req: FastifyRequest) => adminCheck(req).then(() => true, () => false);
  return {
    auth: guard !== undefined,
    async caller(req) {
      if (!guard) return { name: null, can: () => true, admin: await isAdmin(req) };
      const c = await guard.caller(req);
      if ('failure' in c) {
        // No WWW-Authenticate challenge: a browser would answer it with its own password dialog.
        if (c.failure === 'rate') throw new RegistryError('TOOMANYREQUESTS', 'too many failed logins; try again later', { headers: { 'Retry-After': String(c.retryAfter) } });
        throw new RegistryError('UNAUTHORIZED', c.message);
      }
      return { name: c.name, can: (r, a) => c.can(r, a), admin: await isAdmin(req) };
    },
  };
}

export function requireAdmin(caller: Caller): void {
  if (!caller.admin) throw new RegistryError(caller.name === null ? 'UNAUTHORIZED' : 'DENIED', 'admin access required');
}
