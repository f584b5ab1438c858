/** `berth serve`: the registry server. */
import type { AddressInfo } from 'node:net';
import { openBackends } from '../backends.js';
import { parseAddr, type Config } from '../config.js';
import { GcService } from '../gc/service.js';
import { adminRoutes } from '../http/admin.js';
import { buildServer } from '../http/server.js';
import { createLogger } from '../log.js';
import { Registry } from '../registry/registry.js';
import { redactUrl } from '../metadata/postgres/url.js';

export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  const { metadata, storage } = await openBackends(config);
  const registry = new Registry(metadata, storage, { deleteEnabled: config.deletes, redirectBlobs: config.storage.redirect });
  const gc = new GcService(metadata, storage, config.gc, registry.ctx.options.touchInterval, logger);
  const app = buildServer({ registry, logger, extraRoutes: adminRoutes(gc, metadata) });

  const { host, port } = parseAddr(config.addr);
  await app.listen({ host, port });
  const address = app.server.address() as AddressInfo;
  // Logged at warn so that it shows with request logging off (--log-level warn).
  const metadataAt = config.metadata ? redactUrl(config.metadata) : 'sqlite';
  logger.warn({ addr: `${address.address}:${address.port}`, data: config.data, metadata: metadataAt, storage: config.storage.url, deletes: config.deletes }, 'listening');

  gc.startBackground();

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.warn({ signal }, 'shutting down');
    // Node closes only the connections idle when close() is called: one whose
    // response is still finishing then stays open for the keep-alive timeout
    // (72 s) and holds the shutdown. Close each as soon as it becomes idle.
    const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
    await app.close();
    clearInterval(sweep);
    await gc.stop();
    await metadata.close();
    logger.flush();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}
