/**
 * Time and connection limits of the server sockets, the same in every mode
 * (plain, TLS, auth on or off): how long a client may take to send a request
 * head, how long a request body may stall, and how many connections one
 * client address may hold. There is deliberately no limit on a request's
 * total time: a big layer pushed over a slow link takes as long as it takes,
 * as long as its bytes keep coming.
 */
import type { IncomingMessage, Server, ServerOptions } from 'node:http';
import type { Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
import proxyAddr from '@fastify/proxy-addr';
import type { Logger } from '../log.js';
import { clientKey } from './client-address.js';

export interface ConnectionLimits {
  /** Largest request head (request line + headers), bytes. */
  maxHeaderBytes: number;
  /** Time allowed to receive a request's whole head, ms (slowloris); 0 = none. */
  headerTimeout: number;
  /** Time a request body may go without a byte while Berth waits for it, ms; 0 = none. */
  idleTimeout: number;
  /** Open connections per client address (IPv6: per /64); trusted proxies are exempt; 0 = unlimited. */
  connectionsPerClient: number;
}

/** Idle keep-alive connections are kept past the 60 s idle timeout of common load balancers (Fastify's own default). */
const KEEP_ALIVE_TIMEOUT = 72_000;

/**
 * Options for `http(s).createServer`, handed to Fastify as its `http` option
 * (and from there to a serverFactory). Node enforces the head timeout on a
 * periodic sweep, whose period is fixed when the server is created: a
 * fraction of the timeout, so a slow head is cut close to its limit.
 */
export function serverOptions(limits: ConnectionLimits): ServerOptions {
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headerTimeout,
    // No total request time: a long upload that keeps sending is never cut (Node's default is 300 s).
    requestTimeout: 0,
    ...(limits.headerTimeout > 0 ? { connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headerTimeout / 4))) } : {}),
  };
}

/**
 * Applies the limits that act per connection and per request to a server
 * created with `serverOptions`: the keep-alive and no-total-time settings
 * (a serverFactory's server has Node's defaults otherwise), the idle body
 * timeout, and the per-client connection cap.
 */
export function applyConnectionLimits(server: Server, limits: ConnectionLimits, trustedProxies: string[] | undefined, logger: Logger): void {
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT;
  server.requestTimeout = 0;
  server.headersTimeout = limits.headerTimeout;
  server.setTimeout(0); // no socket timeout: keep-alive aside, the limits below are Berth's own
  if (limits.idleTimeout > 0) server.on('request', (req: IncomingMessage) => watchBody(req, limits.idleTimeout, logger));
  if (limits.connectionsPerClient > 0) capConnections(server, limits.connectionsPerClient, trustedProxies, logger);
}

/**
 * Cuts a request whose body stalls for `idle` ms while Berth waits for it.
 * Time Berth itself holds the body back (its storage is slow: the socket is
 * paused, or read bytes wait in the buffer) is not the client's idling, and
 * once the body is complete nothing is timed: a long operation (a commit, an
 * admin GC run) or a slow download is not cut. A timer of its own rather
 * than the socket's timeout, which Node also uses for keep-alive and would
 * apply to the whole exchange.
 */
function watchBody(req: IncomingMessage, idle: number, logger: Logger): void {
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return;
  const socket = req.socket;
  let seen = socket.bytesRead;
  let since = Date.now();
  const timer = setInterval(
    () => {
      if (req.complete || socket.destroyed) return clearInterval(timer);
      const now = Date.now();
      if (socket.bytesRead !== seen || socket.isPaused() || req.readableLength > 0) {
        seen = socket.bytesRead;
        since = now;
      } else if (now - since >= idle) {
        clearInterval(timer);
        logger.info({ client: socket.remoteAddress, method: req.method, path: req.url, idleMs: idle }, 'request body idle: connection closed');
        socket.destroy();
      }
    },
    Math.max(50, Math.min(5000, Math.floor(idle / 4))),
  );
  timer.unref();
  socket.once('close', () => clearInterval(timer));
}

const TOO_MANY = JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'too many connections from this client address', detail: {} }] });

/**
 * Counts connections per client address and refuses those over the cap
 * before the HTTP (or TLS) machinery sees them: the server's own connection
 * listeners are called only for accepted sockets, so a refused connection
 * never has a request parsed or run.
 */
function capConnections(server: Server, max: number, trustedProxies: string[] | undefined, logger: Logger): void {
  const open = new Map<string, number>();
  // A proxy carries many clients over its connections: it is not capped (cap at the proxy).
  const trusted = trustedProxies && trustedProxies.length > 0 ? proxyAddr.compile(trustedProxies) : undefined;
  const tls = server instanceof TlsServer;
  const accept = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  const release = (key: string) => {
    const left = (open.get(key) ?? 1) - 1;
    if (left <= 0) open.delete(key);
    else open.set(key, left);
  };
  server.on('connection', (socket: Socket) => {
    const addr = socket.remoteAddress;
    if (addr !== undefined && !trusted?.(addr, 0)) {
      const key = clientKey(addr);
      const n = (open.get(key) ?? 0) + 1;
      socket.once('close', () => release(key));
      open.set(key, n);
      if (n > max) {
        if (n === max + 1) logger.warn({ client: key, max }, 'connection refused: too many connections from this client address');
        refuse(socket, tls);
        return;
      }
    }
    for (const listener of accept) listener.call(server, socket);
  });
}

/** Plain HTTP is told why (and its request is read and dropped, so the answer is not lost to a reset); TLS cannot be answered before a handshake. */
function refuse(socket: Socket, tls: boolean): void {
  socket.on('error', () => {});
  if (tls) {
    socket.destroy();
    return;
  }
  socket.on('data', () => {});
  socket.end(`HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(TOO_MANY)}\r\nConnection: close\r\n\r\n${TOO_MANY}`);
  setTimeout(() => socket.destroy(), 2000).unref();
}
