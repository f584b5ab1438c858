/**
 * The /v2/ URL space. Repository names contain slashes, so routes are
 * matched here by pattern (longest-suffix first), not by a path router.
 */
export type RouteName =
  | 'base'
  | 'catalog'
  | 'tags'
  | 'manifest'
  | 'blob'
  | 'uploadStart'
  | 'upload'
  | 'referrers';

interface RouteDef {
  name: RouteName;
  pattern: RegExp;
  methods: string[];
}

const ROUTES: RouteDef[] = [
  { name: 'base', pattern: /^\/v2\/?$/, methods: ['GET', 'HEAD'] },
  { name: 'catalog', pattern: /^\/v2\/_catalog$/, methods: ['GET'] },
  { name: 'tags', pattern: /^\/v2\/(.+)\/tags\/list$/, methods: ['GET'] },
  { name: 'manifest', pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/, methods: ['GET', 'HEAD', 'PUT', 'DELETE'] },
  { name: 'uploadStart', pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/, methods: ['POST'] },
  { name: 'upload', pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, methods: ['GET', 'PATCH', 'PUT', 'DELETE'] },
  { name: 'blob', pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/, methods: ['GET', 'HEAD', 'DELETE'] },
  { name: 'referrers', pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/, methods: ['GET'] },
];

export type RouteMatch =
  | { kind: 'route'; route: RouteName; repository: string; reference: string }
  | { kind: 'method-not-allowed'; allowed: string[] }
  | { kind: 'not-found' };

/**
 * Matches a path (without query). Captured parts are percent-decoded;
 * a malformed escape makes the match fail rather than throw.
 */
export function matchRoute(method: string, path: string): RouteMatch {
  for (const route of ROUTES) {
    const m = route.pattern.exec(path);
    if (!m) continue;
    if (!route.methods.includes(method)) return { kind: 'method-not-allowed', allowed: route.methods };
    try {
      return { kind: 'route', route: route.name, repository: repositoryPart(m[1] ?? ''), reference: decoded(m[2] ?? '') };
    } catch {
      return { kind: 'not-found' };
    }
  }
  return { kind: 'not-found' };
}

/**
 * The repository part of a path, decoded. A slash in a name separates path
 * components; an encoded one (%2F) is not a separator, and a name cannot
 * contain a slash any other way, so it stays encoded here and the name
 * grammar refuses it (NAME_INVALID) instead of serving the nested
 * repository. (A mount's `from` is a query parameter, where %2F is simply
 * how form encoding writes "/", as Docker's client sends it.)
 */
function repositoryPart(raw: string): string {
  if (!raw.includes('%')) return raw;
  return /%2f/i.test(raw) ? raw : decodeURIComponent(raw);
}

/** Percent-decoded; most paths have nothing to decode, and they skip decodeURIComponent's copy. */
function decoded(raw: string): string {
  return raw.includes('%') ? decodeURIComponent(raw) : raw;
}

/**
 * A request target in absolute form (`GET http://host/v2/ HTTP/1.1`) as the
 * origin form it stands for: RFC 9112 (3.2.2) requires servers to accept it,
 * and Node hands it over as it came.
 */
export function originForm(url: string): string {
  if (url.charCodeAt(0) === 47 /* '/' */) return url;
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(url);
  if (!m) return url;
  const rest = url.slice(m[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}
