/** What each /v2/ route needs from the security layer (src/auth/), in its own terms. */
import type { AccessNeed } from '../auth/access.js';
import type { RouteName } from './routes.js';

export function accessNeed(route: RouteName, method: string): AccessNeed {
  switch (route) {
    case 'base':
      return { kind: 'login' };
    case 'catalog':
      return { kind: 'catalog' };
    case 'manifest':
      return { kind: 'repository', action: method === 'PUT' ? 'push' : method === 'DELETE' ? 'delete' : 'pull', upload: false };
    case 'blob':
      return { kind: 'repository', action: method === 'DELETE' ? 'delete' : 'pull', upload: false };
    case 'uploadStart':
      return { kind: 'repository', action: 'push', upload: true };
    case 'upload':
      return { kind: 'repository', action: 'push', upload: method === 'PATCH' || method === 'PUT' };
    default:
      return { kind: 'repository', action: 'pull', upload: false };
  }
}
