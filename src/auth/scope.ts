/**
 * Scopes and challenges of the Docker registry token authentication spec:
 * `repository:<name>:<action>[,<action>…]` and `registry:catalog:*`, and the
 * `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` challenge.
 */

/** One entry of a token's `access` claim. */
export interface ResourceAccess {
  type: string;
  name: string;
  actions: string[];
}

/** Parses a scope; the name may itself contain `:` (a host:port prefix), so actions are after the last one. */
export function parseScope(scope: string): ResourceAccess | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  // "repository(plugin)" is an older resource class form: the class is ignored.
  const type = scope.slice(0, first).replace(/\([a-z0-9]+\)$/, '');
  const name = scope.slice(first + 1, last);
  const actions = scope.slice(last + 1).split(',').filter(Boolean);
  if (!/^[a-z0-9]+$/.test(type) || name === '' || actions.length === 0) return undefined;
  return { type, name, actions };
}

export function formatScope(a: ResourceAccess): string {
  return `${a.type}:${a.name}:${a.actions.join(',')}`;
}

/** The value of a WWW-Authenticate Bearer challenge. */
export function bearerChallenge(realm: string, service: string, scope?: string, error?: 'invalid_token' | 'insufficient_scope'): string {
  let c = `Bearer realm="${quoted(realm)}",service="${quoted(service)}"`;
  if (scope) c += `,scope="${quoted(scope)}"`;
  if (error) c += `,error="${error}"`;
  return c;
}

export const BASIC_CHALLENGE = 'Basic realm="berth", charset="UTF-8"';

function quoted(s: string): string {
  return s.replace(/["\\\r\n]/g, '');
}
