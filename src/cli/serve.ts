/** `berth serve`: the registry server. */
import type { AddressInfo } from 'node:net';
import { audit } from '../audit/audit-log.js';
import { Security } from '../auth/security.js';
import { openBackends } from '../backends.js';
import { parseAddr, type Config } from '../config.js';
import { GcService } from '../gc/service.js';
import { adminRoutes } from '../http/admin.js';
import { applyConnectionLimits } from '../http/connection-limits.js';
import { buildServer } from '../http/server.js';
import { createLogger } from '../log.js';
import { Registry } from '../registry/registry.js';
import { LivePolicies } from '../policy/live-policies.js';
import { syncQuotas } from '../policy/quota-sync.js';
import { PullRecorder } from '../policy/pull-recorder.js';
import { redactUrl } from '../metadata/postgres/url.js';

export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel, 1, config.auth !== undefined);
  // Opened first: the HTTP layer installs its audit hook only when it is on.
  if (config.auditLog) {
    audit.open(config.auditLog);
    process.on('SIGHUP', () => audit.reopen());
  }
  const security = await Security.create(config, logger);
  const { metadata, storage } = await openBackends(config);
  const policies = new LivePolicies(config.policies, config.configFile, (p) => syncQuotas(metadata, p));
  await policies.start();
  process.on('SIGHUP', () => {
    void policies.reload().then((outcome) => {
      if (outcome.ok) logger.warn({ rules: outcome.rules }, 'policies reloaded');
      else if (config.configFile) logger.error({ error: outcome.error, rules: outcome.rules }, 'policies not reloaded: the previous ones stay in force');
    });
  });
  const pulls = new PullRecorder(metadata, policies, 5000, (e) => logger.error({ err: e }, 'recording pull times failed'));
  const registry = new Registry(metadata, storage, { deleteEnabled: config.deletes, redirectBlobs: config.storage.redirect, uploadSessionsPerUser: config.limits.uploadSessionsPerUser }, { log: logger, policies, pulls });
  const gc = new GcService(metadata, storage, config.gc, registry.ctx.options.touchInterval, logger, policies, () => pulls.flush());
  const admin = adminRoutes(gc, metadata, security.adminCheck, security.metricsCheck, policies);
  const app = buildServer({
    registry,
    logger,
    extraRoutes: (a) => {
      security.register(a);
      admin(a);
    },
    guard: security.guard,
    serverFactory: security.transport?.factory,
    trustedProxies: security.trustedProxies,
    limits: config.limits,
  });
  const plain = security.transport?.plainServer;
  if (plain) applyConnectionLimits(plain, config.limits, security.trustedProxies, logger);

  const { host, port } = parseAddr(config.addr);
  await app.listen({ host, port });
  const plainAddr = await security.transport?.start();
  const address = app.server.address() as AddressInfo;
  if (config.auth && !config.tls && !/^(127\.|\[?::1\]?$|localhost)/.test(host)) {
    logger.warn({ addr: config.addr }, 'auth is on without TLS: passwords and tokens cross the network in clear unless a TLS proxy is in front');
  }
  // Logged at warn so that it shows with request logging off (--log-level warn).
  const metadataAt = config.metadata ? redactUrl(config.metadata) : 'sqlite';
  logger.warn(
    {
      addr: `${address.address}:${address.port}`,
      data: config.data,
      metadata: metadataAt,
      storage: config.storage.url,
      deletes: config.deletes,
      auth: config.auth !== undefined,
      tls: config.tls !== undefined,
      plainAddr,
      auditLog: config.auditLog,
    },
    'listening',
  );

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
    await security.transport?.close();
    clearInterval(sweep);
    await gc.stop();
    await pulls.flush().catch(() => {});
    await metadata.close();
    logger.flush();
    audit.flush();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}
