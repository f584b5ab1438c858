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
      return { kind: 'route', route: route.name, repository: decodeURIComponent(m[1] ?? ''), reference: decodeURIComponent(m[2] ?? '') };
    } catch {
      return { kind: 'not-found' };
    }
  }
  return { kind: 'not-found' };
}
