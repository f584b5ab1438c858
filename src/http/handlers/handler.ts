/** What a resource handler receives: the request, the reply, and the parsed route. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../../registry/errors.js';
import type { Registry } from '../../registry/registry.js';

export interface RequestContext {
  req: FastifyRequest;
  reply: FastifyReply;
  registry: Registry;
  /** The validated repository name (empty for base and catalog). */
  repository: string;
  /** The path's last parameter: a reference, digest or upload id. */
  reference: string;
  query: URLSearchParams;
  /** With auth on: what the caller may pull (catalog filtering, mount sources). Undefined when auth is off. */
  access?: RequestAccess;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * With auth on, who the guard authenticated (a user name, or a token's
     * subject); undefined for anonymous requests and when auth is off. Read by
     * the request log, the audit log and upload-session ownership.
     */
    principal?: string;
  }
}

export interface RequestAccess {
  canPull(repository: string): boolean;
}

export type Handler = (c: RequestContext) => Promise<void>;

/** Pagination parameters `n` and `last`, shared by tags and catalog. */
export function pagination(query: URLSearchParams, defaultSize: number, maxSize: number): { n: number; last?: string } {
  const rawN = query.get('n');
  let n = defaultSize;
  if (rawN !== null && rawN !== '') {
    if (!/^\d+$/.test(rawN)) throw paginationError(rawN);
    n = Math.min(Number(rawN), maxSize);
  }
  const last = query.get('last') ?? undefined;
  return { n, last: last === '' ? undefined : last };
}

function paginationError(n: string): RegistryError {
  return new RegistryError('PAGINATION_NUMBER_INVALID', undefined, { detail: { n: n.slice(0, 50) } });
}

/** The Link header for the next page of a listing. */
export function nextLink(path: string, n: number, last: string): string {
  return `<${path}?n=${n}&last=${encodeURIComponent(last)}>; rel="next"`;
}
