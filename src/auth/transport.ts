/**
 * The server sockets when security is configured: HTTPS with the configured
 * certificate and key (reloaded when either file changes), an optional extra
 * plain-HTTP listener (loopback, or behind a proxy), the request-head size
 * limit, and the security headers every response carries.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { parseAddr } from '../config-values.js';
import type { Logger } from '../log.js';
import type { LimitsConfig, TlsConfig } from './config.js';

type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

const SECURITY_HEADERS: [string, string][] = [
  ['X-Frame-Options', 'DENY'],
  ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"],
  ['Referrer-Policy', 'no-referrer'],
];

export class Transport {
  private https?: HttpsServer;
  private plain?: Server;

  constructor(
    private readonly tls: TlsConfig | undefined,
    private readonly limits: LimitsConfig,
    private readonly logger: Logger,
    /** Whether to add the security headers (auth or TLS on). */
    private readonly headers: boolean,
  ) {}

  private readPair(): { cert: Buffer; key: Buffer } {
    return { cert: readFileSync(this.tls!.cert), key: readFileSync(this.tls!.key) };
  }

  /** The extra plain listener, if any (for the connection limits the HTTP layer applies to every server). */
  get plainServer(): Server | undefined {
    return this.plain;
  }

  /** Fastify's serverFactory; `opts.http` carries the HTTP layer's server options (time limits). */
  readonly factory = (handler: RequestHandler, opts?: { http?: ServerOptions | null }): Server => {
    const base: ServerOptions = { ...opts?.http, maxHeaderSize: this.limits.maxHeaderBytes };
    const plainHandler: RequestHandler = this.headers
      ? (req, res) => {
          for (const [k, v] of SECURITY_HEADERS) res.setHeader(k, v);
          handler(req, res);
        }
      : handler;
    if (!this.tls) return createHttpServer(base, plainHandler);
    const hsts = this.tls.hstsMaxAge > 0 ? `max-age=${this.tls.hstsMaxAge}` : undefined;
    const tlsHandler: RequestHandler = (req, res) => {
      if (hsts) res.setHeader('Strict-Transport-Security', hsts);
      plainHandler(req, res);
    };
    this.https = createHttpsServer({ ...base, ...this.readPair(), minVersion: 'TLSv1.2' }, tlsHandler);
    if (this.tls.plainAddr) this.plain = createHttpServer(base, plainHandler);
    return this.https as unknown as Server;
  };

  /** After the main listener: the plain one, and the certificate watch. */
  async start(): Promise<string | undefined> {
    if (!this.tls) return undefined;
    // Debounced: a certificate and its key are rarely replaced in the same instant.
    let timer: NodeJS.Timeout | undefined;
    const reload = () => {
      clearTimeout(timer);
      timer = setTimeout(load, 500);
      timer.unref();
    };
    const load = () => {
      try {
        this.https!.setSecureContext({ ...this.readPair(), minVersion: 'TLSv1.2' });
        this.logger.warn({ cert: this.tls!.cert }, 'TLS certificate reloaded');
      } catch (e) {
        this.logger.error({ err: (e as Error).message }, 'TLS certificate or key unreadable; keeping the previous one');
      }
    };
    watchFile(this.tls.cert, { interval: 1000 }, reload);
    watchFile(this.tls.key, { interval: 1000 }, reload);
    if (!this.plain) return undefined;
    const { host, port } = parseAddr(this.tls.plainAddr!);
    await new Promise<void>((resolve, reject) => {
      this.plain!.once('error', reject);
      this.plain!.listen(port, host, () => resolve());
    });
    const a = this.plain.address() as { address: string; port: number };
    return `${a.address}:${a.port}`;
  }

  async close(): Promise<void> {
    if (this.tls) {
      unwatchFile(this.tls.cert);
      unwatchFile(this.tls.key);
    }
    if (this.plain) {
      this.plain.closeAllConnections();
      await new Promise<void>((resolve) => this.plain!.close(() => resolve()));
    }
  }
}
