/** Mounts the console (/ui and its JSON API /ui/api/) on the server: the one call http/ and serve make. */
import type { FastifyInstance } from 'fastify';
import type { Guard } from '../auth/guard.js';
import type { AdminCheck } from '../auth/security.js';
import type { GcService } from '../gc/service.js';
import { RegistryError } from '../registry/errors.js';
import type { Registry } from '../registry/registry.js';
import { consoleAccess } from './access.js';
import { consoleApi } from './api.js';
import { assetRoutes } from './assets.js';
import type { PullCounter } from './pulls.js';

export interface ConsoleOptions {
  registry: Registry;
  gc: GcService;
  guard: Guard | undefined;
  adminCheck: AdminCheck;
  tokenLogin: boolean;
  /** This process's pull counter, flushed before counts are read. */
  pulls?: PullCounter;
  /** Read-only mode: GC from the console is a dry run or nothing. */
  readOnly?: boolean;
}

export function consoleRoutes(options: ConsoleOptions): (app: FastifyInstance) => void {
  const api = consoleApi({ registry: options.registry, gc: options.gc, access: consoleAccess(options.guard, options.adminCheck), tokenLogin: options.tokenLogin, pulls: options.pulls, readOnly: options.readOnly ?? false });
  const pages = assetRoutes();
  return (app) => {
    // API paths are matched before the page wildcard: an unknown one is a JSON 404, not the page.
    api(app);
    app.all('/ui/api/*', async () => {
      throw new RegistryError('NAME_UNKNOWN', 'no such console endpoint', { status: 404 });
    });
    pages(app);
  };
}
