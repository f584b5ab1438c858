/** `berth serve`: the registry server. */
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { audit } from '../audit/audit-log.js';
import { Security } from '../auth/security.js';
import { openBackends } from '../backends.js';
import { parseAddr, redirectExpiry, type Config } from '../config.js';
import { GcService } from '../gc/service.js';
import { adminRoutes } from '../http/admin.js';
import { applyConnectionLimits } from '../http/connection-limits.js';
import { buildServer } from '../http/server.js';
import { consoleRoutes } from '../console/routes.js';
import { PullCounter } from '../console/pulls.js';
import { createLogger } from '../log.js';
import { Registry } from '../registry/registry.js';
import { LivePolicies } from '../policy/live-policies.js';
import { syncQuotas } from '../policy/quota-sync.js';
import { TagPullRecorder } from '../policy/pull-recorder.js';
import { redactUrl } from '../metadata/postgres/url.js';
import { EventDispatcher } from '../events/dispatcher.js';
import { PullRecorder } from '../events/pull-recorder.js';
import { pullsWanted } from '../events/config.js';
import { ConfigError } from '../config.js';
import type { MetadataStore } from '../metadata/store.js';
import type { ReferenceConfigResult } from '../reference-config.js';
import { expireCachedTags } from '../proxy/expiry.js';
import { PullThroughCache } from '../proxy/pull-through-cache.js';

export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel, 1, config.auth !== undefined);
  // Opened first: the HTTP layer installs its audit hook only when it is on.
  if (config.auditLog) {
    audit.open(config.auditLog);
    process.on('SIGHUP', () => audit.reopen());
  }
  const security = await Security.create(config, logger);
  // Events (off without endpoints): the store wakes the dispatcher when it writes some.
  let wakeDispatcher = () => {};
  const { metadata, storage } = await openBackends(config, () => wakeDispatcher());
  const policies = new LivePolicies(config.policies, config.configFile, (p) => syncQuotas(metadata, p));
  await policies.start();
  process.on('SIGHUP', () => {
    void policies.reload().then((outcome) => {
      if (outcome.ok) logger.warn({ rules: outcome.rules }, 'policies reloaded');
      else if (config.configFile) logger.error({ error: outcome.error, rules: outcome.rules }, 'policies not reloaded: the previous ones stay in force');
    });
  });
  // Pull times by tag, for "pulled within" retention (policy/); the console's pull counts are `pulls` below.
  const tagPulls = new TagPullRecorder(metadata, policies, 5000, (e) => logger.error({ err: e }, 'recording pull times failed'));
  if (config.reference) await checkReferenceConfig(config, config.reference, metadata, logger);
  const endpoints = config.notifications?.endpoints ?? [];
  const pullEvents = pullsWanted(config.notifications) ? new PullRecorder(metadata, (err) => logger.warn({ err }, 'pull events not recorded')) : undefined;
  const registry = new Registry(
    metadata,
    storage,
    {
      // Read-only: deletes are writes too (the console then offers none).
      deleteEnabled: config.deletes && !config.readOnly,
      redirectBlobs: config.storage.redirect,
      redirectExpiry: redirectExpiry(config),
      uploadSessionsPerUser: config.limits.uploadSessionsPerUser,
    },
    { log: logger, pullEvents: pullEvents?.record, events: endpoints.length > 0, policies, tagPulls },
  );
  // Read-only mode stores nothing, fetched content included: cached repositories then serve what they hold.
  const cache = config.mirrors.length > 0 && !config.readOnly ? new PullThroughCache(registry, config.mirrors, { log: logger }) : undefined;
  if (cache) registry.ctx.pullThrough = cache;
  // Read-only: the background collector never starts, and the admin trigger only does dry runs.
  const gcConfig = config.readOnly ? { ...config.gc, enabled: false } : config.gc;
  const gc = new GcService(metadata, storage, gcConfig, registry.ctx.options.touchInterval, logger, policies, () => tagPulls.flush());
  let dispatcher: EventDispatcher | undefined;
  const admin = adminRoutes(gc, metadata, security.adminCheck, security.metricsCheck, config.readOnly, cache?.metrics, () => dispatcher, policies);
  // Pulls are counted for the console only: without it the pull path does not pay even a map update.
  const pulls = config.ui ? new PullCounter(metadata, logger) : undefined;
  registry.ctx.pulls = pulls;
  const ui = config.ui ? consoleRoutes({ registry, gc, pulls, guard: security.guard, adminCheck: security.adminCheck, tokenLogin: config.auth?.token.enabled ?? false, readOnly: config.readOnly }) : undefined;
  const app = buildServer({
    registry,
    logger,
    extraRoutes: (a) => {
      security.register(a);
      admin(a);
      ui?.(a);
    },
    guard: security.guard,
    serverFactory: security.transport?.factory,
    trustedProxies: security.trustedProxies,
    limits: config.limits,
    readOnly: config.readOnly,
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
      readOnly: config.readOnly,
      auth: config.auth !== undefined,
      tls: config.tls !== undefined,
      plainAddr,
      auditLog: config.auditLog,
      mirrors: config.mirrors.length ? config.mirrors.map((m) => `${m.prefix || '(default)'} -> ${m.url}`) : undefined,
    },
    'listening',
  );

  gc.startBackground();
  if (endpoints.length > 0) {
    // As the reference registry: this machine's name and the port it serves on.
    dispatcher = new EventDispatcher(metadata, endpoints, { sourceAddr: `${hostname()}:${address.port}`, log: logger });
    wakeDispatcher = dispatcher.wake;
    dispatcher.start();
  }
  pulls?.start();
  // Cached tags nobody pulls expire; GC then collects what only they held.
  const expiry =
    cache && config.mirrors.some((m) => m.expireAfter > 0)
      ? setInterval(() => void expireCachedTags(cache, metadata, Date.now(), logger).catch((e: unknown) => logger.warn({ err: e }, 'pull-through expiry failed')), Math.min(config.gc.interval, 60 * 60_000))
      : undefined;
  expiry?.unref();

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
    if (expiry) clearInterval(expiry);
    cache?.close();
    await gc.stop();
    await tagPulls.flush().catch(() => {});
    await pullEvents?.close();
    await dispatcher?.stop();
    await pulls?.stop();
    await metadata.close();
    logger.flush();
    audit.flush();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

/**
 * Serving from a reference registry's config.yml: one warning naming every
 * key Berth ignores, and a refusal to start over storage that has not been
 * imported yet (the registry would answer "unknown" for every image).
 */
async function checkReferenceConfig(config: Config, reference: ReferenceConfigResult & { file: string }, metadata: MetadataStore, logger: ReturnType<typeof createLogger>): Promise<void> {
  if (reference.ignored.length > 0) {
    logger.warn(
      { config: reference.file, ignored: Object.fromEntries(reference.ignored.map((m) => [m.key, m.note])) },
      `reference registry configuration: ${reference.ignored.length} keys ignored: ${reference.ignored.map((m) => m.key).join(', ')} (berth config check ${reference.file} says why)`,
    );
  }
  const { awaitsImport } = await import('../import/pending.js');
  if (await awaitsImport(reference.referenceRoot, metadata, config.storage)) {
    await metadata.close();
    throw new ConfigError(
      `${reference.referenceRoot} holds the reference registry's images and Berth has none yet: run \`berth import --config ${reference.file}\` first, then start berth serve again`,
    );
  }
}
