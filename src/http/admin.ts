/**
 * Operator endpoints outside the registry API: the GC trigger and the
 * Prometheus metrics. Without auth the admin trigger only answers clients on
 * the loopback interface; with auth it needs an admin (see src/auth/).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AdminCheck } from '../auth/security.js';
import type { Registry as MetricsRegistry } from 'prom-client';
import { ConfigError, parseDuration } from '../config.js';
import type { GcService } from '../gc/service.js';
import type { LifecycleTotals, MetadataStore } from '../metadata/store.js';
import { RegistryError } from '../registry/errors.js';
import type { LivePolicies } from '../policy/live-policies.js';
import { isTag, parseRepositoryName } from '../registry/reference.js';
import type { EventDispatcher } from '../events/dispatcher.js';
import type { ProxyMetrics, UpstreamCounters } from '../proxy/metrics.js';

function flag(value: string | undefined): boolean {
  return value === '' || value === '1' || value === 'true';
}

/** A query parameter given at most once: a repeated one (`grace=x&grace=1h`) is ambiguous, and refused. */
function param(query: unknown, name: string): string | undefined {
  const value = (query as Record<string, unknown>)[name];
  if (Array.isArray(value)) throw new RegistryError('UNSUPPORTED', `query parameter ${name} is given more than once`, { status: 400 });
  return value as string | undefined;
}

/**
 * `adminCheck` guards /admin/* (without auth: loopback clients only; with
 * auth: admins), `metricsCheck` guards /metrics (undefined: public).
 */
export function adminRoutes(gc: GcService, metadata: MetadataStore, adminCheck: AdminCheck, metricsCheck?: AdminCheck, readOnly = false, cache?: ProxyMetrics, events?: () => EventDispatcher | undefined, policies?: LivePolicies) {
  // prom-client loads at the first scrape: a registry nobody scrapes does not
  // pay its memory (~10 MiB) or its event-loop and GC observers. The counters
  // are read from metadata, so they are whole from the first scrape on; the
  // process histograms (event-loop delay, GC) start with it.
  let metrics: Promise<MetricsRegistry> | undefined;
  return (app: FastifyInstance) => {
    // POST /admin/gc[?dryRun=1][&verbose=1][&grace=30m]: one collection, its report as JSON.
    app.post('/admin/gc', async (req, reply) => {
      await adminCheck(req);
      if (readOnly && !flag(param(req.query, 'dryRun'))) {
        throw new RegistryError('UNSUPPORTED', 'the registry is in read-only mode: garbage collection does not run (a dry run does)');
      }
      const graceParam = param(req.query, 'grace');
      const dryRun = flag(param(req.query, 'dryRun'));
      const verbose = flag(param(req.query, 'verbose'));
      let grace: number | undefined;
      try {
        grace = graceParam === undefined ? undefined : parseDuration(graceParam, 'grace');
      } catch (e) {
        if (e instanceof ConfigError) throw new RegistryError('UNSUPPORTED', e.message, { status: 400 });
        throw e;
      }
      const report = await gc.run('admin', { dryRun, verbose, grace });
      return reply.code(200).type('application/json').send(JSON.stringify(report));
    });
    if (policies) policyRoutes(app, metadata, adminCheck, policies, readOnly);
    // GET /admin/events: per endpoint, events pending, failures in a row, dead-lettered.
    app.get('/admin/events', async (req, reply) => {
      await adminCheck(req);
      const report = await eventsReport(metadata, events?.());
      return reply.code(200).type('application/json').send(JSON.stringify(report));
    });
    // POST /admin/events/replay?endpoint=NAME: dead-lettered events of the endpoint go back to pending.
    app.post('/admin/events/replay', async (req, reply) => {
      await adminCheck(req);
      const endpoint = param(req.query, 'endpoint');
      if (!endpoint) throw new RegistryError('UNSUPPORTED', 'the endpoint parameter is required (its name, as GET /admin/events lists it)', { status: 400 });
      const known = (await metadata.eventStats(await metadata.now())).some((s) => s.endpoint === endpoint);
      if (!known) throw new RegistryError('UNSUPPORTED', `no events for endpoint "${endpoint.slice(0, 200)}"`, { status: 404 });
      const replayed = await metadata.replayEvents(endpoint, await metadata.now());
      events?.()?.wake();
      return reply.code(200).type('application/json').send(JSON.stringify({ endpoint, replayed }));
    });
    app.get('/metrics', async (req: FastifyRequest, reply) => {
      if (metricsCheck) await metricsCheck(req);
      metrics ??= lifecycleMetrics(metadata, cache, policies).then((r) => eventMetrics(r, metadata, events));
      const registry = await metrics;
      return reply.code(200).type(registry.contentType).send(await registry.metrics());
    });
  };
}

/**
 * GET /admin/policies: the rules in force, when they were loaded and from where.
 * POST /admin/policies/reload: reads the config file again (as SIGHUP does).
 * DELETE /admin/tags?repository=R&tag=T: deletes a tag whatever the
 * immutability rules say: how an admin lifts immutability for one tag
 * explicitly (the tag can then be pushed again, to any manifest).
 */
function policyRoutes(app: FastifyInstance, metadata: MetadataStore, adminCheck: AdminCheck, policies: LivePolicies, readOnly: boolean): void {
  const listing = () => ({ source: policies.source ?? null, loadedAt: new Date(policies.loadedAt).toISOString(), policies: policies.current.rules });
  app.get('/admin/policies', async (req, reply) => {
    await adminCheck(req);
    return reply.code(200).type('application/json').send(JSON.stringify(listing()));
  });
  app.post('/admin/policies/reload', async (req, reply) => {
    await adminCheck(req);
    const outcome = await policies.reload();
    return reply.code(outcome.ok ? 200 : 409).type('application/json').send(JSON.stringify({ ...outcome, ...listing() }));
  });
  // GET /admin/quotas: each quota namespace's limit and usage (bytes), from metadata.
  app.get('/admin/quotas', async (req, reply) => {
    await adminCheck(req);
    return reply.code(200).type('application/json').send(JSON.stringify({ quotas: await quotaReport(metadata, policies) }));
  });
  app.delete('/admin/tags', async (req, reply) => {
    await adminCheck(req);
    if (readOnly) throw new RegistryError('UNSUPPORTED', 'the registry is in read-only mode: tags cannot be deleted');
    const repository = param(req.query, 'repository');
    const tag = param(req.query, 'tag');
    if (!repository || !tag) throw new RegistryError('UNSUPPORTED', 'repository and tag query parameters are required', { status: 400 });
    parseRepositoryName(repository);
    if (!isTag(tag)) throw new RegistryError('MANIFEST_INVALID', 'invalid tag', { status: 400 });
    const deleted = await metadata.deleteTag(repository, tag, await metadata.now());
    if (!deleted) throw new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { repository, tag } });
    req.log.warn({ repository, tag, immutable: policies.current.isImmutable(repository, tag) }, 'admin deleted a tag');
    return reply.code(202).send();
  });
}

async function quotaReport(metadata: MetadataStore, policies: LivePolicies) {
  const usage = new Map((await metadata.quotaUsage()).map((u) => [u.namespace, u.bytes]));
  return policies.current.quotaNamespaces().map((n) => ({ namespace: n.name, quota: n.limit, usage: usage.get(n.name) ?? 0 }));
}

/** GC and fsck counters, read from metadata so they count the runs of every process. */
async function lifecycleMetrics(metadata: MetadataStore, cache?: ProxyMetrics, policies?: LivePolicies): Promise<MetricsRegistry> {
  const { Counter, Gauge, Registry, collectDefaultMetrics } = await import('prom-client');
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'berth_' });
  let totals: Promise<LifecycleTotals[]> | undefined;
  // One read of the totals per scrape, shared by every metric below.
  const read = async () => (totals ??= metadata.runTotals().finally(() => setImmediate(() => (totals = undefined))));
  const counter = (name: string, help: string, pick: (t: LifecycleTotals) => number, scale = 1) =>
    new Counter({
      name,
      help,
      labelNames: ['kind'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const t of await read()) this.inc({ kind: t.kind }, (pick(t) ?? 0) / scale);
      },
    });
  counter('berth_lifecycle_runs_total', 'GC and fsck runs finished, by any process', (t) => t.runs);
  counter('berth_gc_manifests_deleted_total', 'Manifests deleted by GC', (t) => t.manifestsDeleted);
  counter('berth_gc_blobs_deleted_total', 'Blobs deleted by GC (and orphans removed by fsck --repair)', (t) => t.blobsDeleted);
  counter('berth_gc_bytes_reclaimed_total', 'Bytes reclaimed by GC and fsck --repair', (t) => t.bytesReclaimed);
  counter('berth_gc_uploads_purged_total', 'Abandoned upload sessions purged', (t) => t.uploadsPurged);
  counter('berth_fsck_problems_total', 'Problems found by fsck', (t) => t.problems);
  counter('berth_lifecycle_duration_seconds_total', 'Time spent in GC and fsck runs', (t) => t.durationMs, 1000);
  new Gauge({
    name: 'berth_lifecycle_last_run_timestamp_seconds',
    help: 'When the last GC or fsck run started',
    labelNames: ['kind'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const t of await read()) this.set({ kind: t.kind }, t.lastRunAt / 1000);
    },
  });
  if (policies) {
    new Gauge({
      name: 'berth_quota_usage_bytes',
      help: 'Bytes of the distinct blobs linked in a quota namespace',
      labelNames: ['namespace'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const q of await quotaReport(metadata, policies)) this.set({ namespace: q.namespace }, q.usage);
      },
    });
    new Gauge({
      name: 'berth_quota_limit_bytes',
      help: 'The quota of a namespace',
      labelNames: ['namespace'],
      registers: [registry],
      collect() {
        this.reset();
        for (const n of policies.current.quotaNamespaces()) this.set({ namespace: n.name }, n.limit);
      },
    });
  }
  if (cache) {
    // The pull-through cache's counters are this process's own (each node fetches for itself).
    const proxied = (name: string, help: string, pick: keyof UpstreamCounters) =>
      new Counter({
        name,
        help,
        labelNames: ['upstream'],
        registers: [registry],
        collect() {
          this.reset();
          for (const [upstream, c] of cache.byUpstream) this.inc({ upstream }, c[pick]);
        },
      });
    proxied('berth_proxy_hits_total', 'Pull-through manifests and blobs answered from the cache', 'hits');
    proxied('berth_proxy_misses_total', 'Pull-through manifests and blobs fetched from upstream for a request', 'misses');
    proxied('berth_proxy_stale_total', 'Cached manifests served stale because upstream could not confirm the tag', 'stale');
    proxied('berth_proxy_joined_total', 'Requests that joined an upstream fetch already in flight', 'joined');
    proxied('berth_proxy_upstream_requests_total', 'Requests sent to upstream registries', 'upstreamRequests');
    proxied('berth_proxy_upstream_bytes_total', 'Body bytes received from upstream registries', 'upstreamBytes');
    proxied('berth_proxy_upstream_errors_total', 'Upstream requests or fetches that failed', 'upstreamErrors');
  }
  return registry;
}

async function eventsReport(metadata: MetadataStore, dispatcher: EventDispatcher | undefined) {
  const stats = await metadata.eventStats(await metadata.now());
  const configured = new Map((dispatcher?.endpoints ?? []).map((e) => [e.name, e]));
  const names = new Set([...configured.keys(), ...stats.map((s) => s.endpoint)]);
  return {
    endpoints: [...names].sort().map((name) => {
      const s = stats.find((x) => x.endpoint === name);
      const counters = dispatcher?.counters.get(name);
      return {
        name,
        url: configured.get(name)?.url,
        configured: configured.has(name),
        pending: s?.pending ?? 0,
        failed: s?.failures ?? 0,
        deadLettered: s?.deadLettered ?? 0,
        ...(s?.lastError ? { lastError: s.lastError } : {}),
        ...(s?.retryAt ? { retryAt: new Date(s.retryAt).toISOString() } : {}),
        ...(s?.oldestPending ? { oldestPending: new Date(s.oldestPending).toISOString() } : {}),
        ...(counters ? { sent: counters.sent, failedAttempts: counters.failed } : {}),
      };
    }),
  };
}

/** Per endpoint: pending and dead-lettered (from metadata: every node's), sent, failed and latency (this process's). */
async function eventMetrics(registry: MetricsRegistry, metadata: MetadataStore, events?: () => EventDispatcher | undefined): Promise<MetricsRegistry> {
  const dispatcher = events?.();
  if (!dispatcher) return registry;
  const { Counter, Gauge, Histogram } = await import('prom-client');
  let stats: ReturnType<MetadataStore['eventStats']> | undefined;
  const read = async () => (stats ??= metadata.now().then((now) => metadata.eventStats(now)).finally(() => setImmediate(() => (stats = undefined))));
  const gauge = (name: string, help: string, pick: (s: Awaited<ReturnType<MetadataStore['eventStats']>>[number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['endpoint'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const s of await read()) this.set({ endpoint: s.endpoint }, pick(s));
      },
    });
  gauge('berth_events_pending', 'Events waiting for delivery', (s) => s.pending);
  gauge('berth_events_dead_lettered', 'Events given up on (too old or too many); replay with POST /admin/events/replay', (s) => s.deadLettered);
  gauge('berth_events_failing', 'Failed deliveries in a row', (s) => s.failures);
  const counter = (name: string, help: string, pick: (c: { sent: number; failed: number }) => number) =>
    new Counter({
      name,
      help,
      labelNames: ['endpoint'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [endpoint, c] of dispatcher.counters) this.inc({ endpoint }, pick(c));
      },
    });
  counter('berth_events_sent_total', 'Events delivered by this process', (c) => c.sent);
  counter('berth_events_failed_total', 'Failed delivery attempts (envelopes) by this process', (c) => c.failed);
  const latency = new Histogram({
    name: 'berth_events_delivery_seconds',
    help: 'From an event\'s commit to its delivery',
    labelNames: ['endpoint'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  dispatcher.observe = (endpoint, seconds) => latency.observe({ endpoint }, seconds);
  return registry;
}
