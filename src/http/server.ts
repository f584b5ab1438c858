/**
 * The HTTP edge: maps the wire protocol onto registry operations. Bodies are
 * handed to the registry as streams (never parsed or buffered by the
 * framework); every failure leaves as the spec's JSON error.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyServerFactory, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { Guard } from '../auth/guard.js';
import type { Logger } from '../log.js';
import { isRegistryError, RegistryError } from '../registry/errors.js';
import { parseRepositoryName } from '../registry/reference.js';
import type { Registry } from '../registry/registry.js';
import { accessNeed } from './access-need.js';
import { deleteBlob, getBlob, headBlob } from './handlers/blobs.js';
import type { Handler } from './handlers/handler.js';
import { listCatalog, listReferrers, listTags } from './handlers/listings.js';
import { deleteManifest, getManifest, headManifest, putManifest } from './handlers/manifests.js';
import { deleteUpload, getUpload, patchUpload, putUpload, startUpload } from './handlers/uploads.js';
import { audit } from '../audit/audit-log.js';
import { auditResponse } from './audit-events.js';
import { applyConnectionLimits, serverOptions, type ConnectionLimits } from './connection-limits.js';
import { logRequest } from './request-log.js';
import { lazyRequestLogger } from './request-logger.js';
import { matchRoute, originForm, type RouteName } from './routes.js';

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

const NO_QUERY: URLSearchParams = new URLSearchParams();

const READ_ONLY = new RegistryError('UNSUPPORTED', 'the registry is in read-only mode (maintenance): only pulls are served', {
  headers: { Allow: 'GET, HEAD' },
});

const HANDLERS: Record<RouteName, Partial<Record<string, Handler>>> = {
  base: { GET: async ({ reply }) => void reply.code(200).type('application/json').send('{}'), HEAD: async ({ reply }) => void reply.code(200).send() },
  catalog: { GET: listCatalog },
  tags: { GET: listTags },
  manifest: { GET: getManifest, HEAD: headManifest, PUT: putManifest, DELETE: deleteManifest },
  blob: { GET: getBlob, HEAD: headBlob, DELETE: deleteBlob },
  uploadStart: { POST: startUpload },
  upload: { GET: getUpload, PATCH: patchUpload, PUT: putUpload, DELETE: deleteUpload },
  referrers: { GET: listReferrers },
};

export interface ServerOptions {
  registry: Registry;
  logger: Logger;
  /** Extra routes outside /v2/ (health, admin), registered by the caller. */
  extraRoutes?: (app: FastifyInstance) => void;
  /** Authorization of /v2/ requests (src/auth/); absent when auth is off, and then nothing is checked. */
  guard?: Guard;
  /** Server sockets (TLS, header limits) from src/auth/transport.ts; absent: Fastify's own. */
  serverFactory?: FastifyServerFactory;
  /** Proxies whose X-Forwarded-* headers are believed (addresses or CIDRs). */
  trustedProxies?: string[];
  /** Time and connection limits, the same whichever server sockets are used. */
  limits: ConnectionLimits;
  /** Read-only mode: every /v2/ request but GET and HEAD is refused, before auth and before any handler. */
  readOnly?: boolean;
}

export function buildServer({ registry, logger, extraRoutes, guard, serverFactory, trustedProxies, limits, readOnly = false }: ServerOptions): FastifyInstance {
  const app = Fastify({
    ...(serverFactory ? { serverFactory } : {}),
    // Handed to http.createServer, or to the serverFactory, which passes it on.
    http: serverOptions(limits),
    ...(trustedProxies ? { trustProxy: trustedProxies } : {}),
    loggerInstance: logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyRequestLogger,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // Manifests are read by Berth itself with their own limit; blobs are streams.
    bodyLimit: Number.MAX_SAFE_INTEGER,
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 8192 },
    rewriteUrl: (req) => originForm(req.url ?? '/'),
    // The router refuses a malformed percent-escape or an overlong path itself,
    // before dispatch and the error handler: answer in the spec's format, and a
    // bad escape as matchRoute would (no such endpoint).
    // Bytes that are not HTTP (bad method, malformed head) never reach a
    // route: answer them in the spec's error format too, then hang up.
    clientErrorHandler: (error, socket) => {
      if (!socket.writable) return socket.destroy();
      const code = (error as { code?: string }).code;
      // A head not received within limits.headerTimeout (Node's sweep raises it).
      const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const message = status === 408 ? 'request head not received in time' : 'malformed HTTP request';
      const body = JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message, detail: { reason: error.message } }] });
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    },
    frameworkErrors: (error, req, reply) =>
      sendError(req, reply, error.code === 'FST_ERR_BAD_URL' ? new RegistryError('NAME_UNKNOWN', 'no such endpoint', { status: 404 }) : error),
  });

  applyConnectionLimits(app.server, limits, trustedProxies, logger);
  // Set by the guard (auth on): declared up front so every request object keeps one shape.
  app.decorateRequest('principal', undefined);

  // Never let the framework parse or buffer a body: handlers stream req.raw.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

  // Callback-style hooks: on the hot path they cost less than async ones.
  app.addHook('onRequest', (req, reply, done) => {
    // Lowercase names, as Fastify sends them: it then makes no lowercased copy of each per request.
    reply.header('x-request-id', req.id).header('x-content-type-options', 'nosniff').header('docker-distribution-api-version', 'registry/2.0');
    done();
  });

  // Only when the request log is on (--log-level info or lower): a hook that
  // would log nothing still costs every request its bookkeeping.
  if (logger.isLevelEnabled('info')) {
    app.addHook('onResponse', (req, reply, done) => {
      logRequest(req, reply);
      done();
    });
  }

  // The audit log's hook exists only while it is on: no cost otherwise.
  if (audit.enabled) {
    app.addHook('onResponse', (req, reply, done) => {
      auditResponse(req, reply);
      done();
    });
  }

  const dispatch = async (req: FastifyRequest, reply: FastifyReply) => {
    const url = req.raw.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    // Most requests have no query: they share one empty set of parameters (handlers only read it).
    const query = q < 0 ? NO_QUERY : new URLSearchParams(url.slice(q + 1));
    try {
      const match = matchRoute(req.method, path);
      if (match.kind === 'not-found') throw new RegistryError('NAME_UNKNOWN', 'no such endpoint', { status: 404 });
      if (match.kind === 'method-not-allowed') {
        throw new RegistryError('UNSUPPORTED', `method ${req.method} is not allowed here`, { headers: { Allow: match.allowed.join(', ') } });
      }
      // As the reference registry in maintenance mode: 405 with Allow: GET, HEAD.
      if (readOnly && req.method !== 'GET' && req.method !== 'HEAD') throw READ_ONLY;
      const handler = HANDLERS[match.route][req.method]!;
      const repository = match.route === 'base' || match.route === 'catalog' ? '' : parseRepositoryName(match.repository);
      // Auth (off by default): one check before the handler; a refused request reaches no handler.
      const access = guard === undefined ? undefined : await guard.authorize(req, reply, accessNeed(match.route, req.method), repository);
      await handler({ req, reply, registry, repository, reference: match.reference, query, access });
    } catch (e) {
      sendError(req, reply, e);
    }
    return reply;
  };

  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], url: '/v2', handler: dispatch });
  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], url: '/v2/*', handler: dispatch });

  app.get('/healthz', async (_req, reply) => reply.code(200).type('application/json').send('{"status":"ok"}'));
  extraRoutes?.(app);

  app.setNotFoundHandler((req, reply) => sendError(req, reply, new RegistryError('NAME_UNKNOWN', 'no such endpoint', { status: 404 })));
  // Errors the framework itself raises (malformed requests it rejected before dispatch).
  app.setErrorHandler((error, req, reply) => sendError(req, reply, error));
  return app;
}

function sendError(req: FastifyRequest, reply: FastifyReply, e: unknown): void {
  if (reply.sent) {
    req.log.warn({ err: e }, 'error after the response started');
    req.raw.destroy();
    return;
  }
  let error: RegistryError;
  if (isRegistryError(e)) {
    error = e;
  } else {
    const status = (e as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) {
      error = new RegistryError('UNSUPPORTED', (e as Error).message, { status });
    } else {
      req.log.error({ err: e }, 'unexpected error');
      reply.code(500).type('application/json').send(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'internal error', detail: { requestId: req.id } }] }));
      return;
    }
  }
  // A refused request's body is not read; drain it so the connection stays usable.
  if (!req.raw.readableEnded) req.raw.resume();
  reply.code(error.status).headers(error.headers).type('application/json');
  const body = JSON.stringify(error.toJSON());
  // HEAD announces the length GET would send: without it a client cannot
  // tell where the response ends and must drop the connection.
  if (req.method === 'HEAD') reply.header('Content-Length', Buffer.byteLength(body)).send();
  else reply.send(body);
}
