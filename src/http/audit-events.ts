/**
 * Which finished requests the audit log records: denials (401 when
 * credentials were given — a 401 without any is the protocol's challenge,
 * not a refusal — and every 403), deletes of manifests, tags and blobs, and
 * admin calls. Installed only when the audit log is on; everything else (a
 * pull, a push) returns after a few comparisons.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { audit, type AuditEvent } from '../audit/audit-log.js';
import { matchRoute } from './routes.js';

export function auditResponse(req: FastifyRequest, reply: FastifyReply): void {
  const status = reply.statusCode;
  const method = req.method;
  const url = req.url;
  const admin = url.startsWith('/admin/');
  const denied = status === 403 || (status === 401 && req.headers.authorization !== undefined);
  if (!denied && !admin && method !== 'DELETE') return;
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const outcome: AuditEvent['outcome'] = denied ? 'denied' : status < 400 ? 'success' : 'failure';
  const event: AuditEvent = { event: admin ? 'admin' : 'denied', outcome, user: userOf(req), client: req.ip, requestId: req.id, method, path: url, status };
  const match = path.startsWith('/v2/') ? matchRoute(method, path) : undefined;
  if (match?.kind === 'route') {
    if (match.route !== 'base' && match.route !== 'catalog') event.repository = match.repository;
    if (method === 'DELETE' && (match.route === 'manifest' || match.route === 'blob')) {
      event.event = 'delete';
      event.target = match.route === 'blob' ? 'blob' : match.reference.includes(':') ? 'manifest' : 'tag';
      event.reference = match.reference;
    } else if (!denied) return; // an upload cancelled: not a security event
  } else if (!denied && !admin) return;
  audit.write(event);
}

/** The authenticated user, else the name a refused Basic login tried. */
function userOf(req: FastifyRequest): string | undefined {
  if (req.principal !== undefined) return req.principal;
  const h = req.headers.authorization;
  if (h === undefined || !/^basic /i.test(h)) return undefined;
  const decoded = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon > 0 ? decoded.slice(0, Math.min(colon, 128)) : undefined;
}
