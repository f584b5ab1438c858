/**
 * A client of one upstream registry: keep-alive connections, its TLS
 * options, and its credentials, sent as the upstream asks in its
 * `WWW-Authenticate` challenge — Basic, or the Docker token flow (a token
 * from the realm for the request's scope, cached until it expires), as
 * dockerd does. Redirects (blob GETs to a CDN) are followed, without the
 * credentials when the host changes.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { UpstreamConfig } from './config.js';

export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  /** Path under the upstream URL, e.g. /v2/library/alpine/manifests/3 */
  path: string;
  headers?: Record<string, string>;
  /** The token scope the path needs, e.g. repository:library/alpine:pull */
  scope: string;
  /** Aborts the request (and its body) when it fires. */
  signal?: AbortSignal;
}

export class UpstreamError extends Error {
  override name = 'UpstreamError';
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

interface Token {
  value: string;
  expiresAt: number;
}

const MAX_REDIRECTS = 5;
/** An upstream connection silent this long (no response head, or no body byte) is given up. */
const IDLE_TIMEOUT = 60_000;

export class UpstreamClient {
  private readonly httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 32 });
  private readonly httpsAgent: HttpsAgent;
  private readonly tokens = new Map<string, Token>();
  /** The challenge seen last: requests after the first go out with credentials already. */
  private scheme: 'none' | 'basic' | 'bearer' = 'none';

  constructor(readonly config: UpstreamConfig) {
    this.httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 32, ...(config.ca ? { ca: config.ca } : {}), rejectUnauthorized: !config.insecure });
  }

  /** Sends the request, answering one authentication challenge; the response is the caller's to consume. */
  async send(req: UpstreamRequest): Promise<IncomingMessage> {
    const url = new URL(this.config.url + req.path);
    let res = await this.follow(url, req, await this.authorization(req.scope));
    if (res.statusCode === 401) {
      const challenge = res.headers['www-authenticate'];
      res.resume();
      if (!challenge) return this.follow(url, req, undefined);
      const auth = await this.answer(String(challenge), req.scope, req.signal);
      res = await this.follow(url, req, auth);
    }
    return res;
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  private async authorization(scope: string): Promise<string | undefined> {
    if (this.scheme === 'basic') return this.basic();
    if (this.scheme === 'bearer') {
      const token = this.tokens.get(scope);
      if (token && token.expiresAt > Date.now()) return `Bearer ${token.value}`;
    }
    return undefined;
  }

  private basic(): string | undefined {
    const { username, password } = this.config;
    return username === undefined ? undefined : `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
  }

  /** The Authorization header a challenge asks for. */
  private async answer(challenge: string, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const m = /^\s*(\w+)\s+(.*)$/.exec(challenge);
    const kind = m?.[1]?.toLowerCase();
    if (kind === 'basic') {
      this.scheme = 'basic';
      return this.basic();
    }
    if (kind !== 'bearer') return undefined;
    this.scheme = 'bearer';
    const params = parseChallenge(m![2]!);
    if (!params.realm) throw new UpstreamError('upstream token challenge names no realm');
    const realm = new URL(params.realm);
    if (params.service) realm.searchParams.set('service', params.service);
    realm.searchParams.set('scope', params.scope ?? scope);
    const res = await this.follow(realm, { method: 'GET', path: '', scope, signal }, this.basic(), false);
    const body = await readAll(res, 1024 * 1024);
    if (res.statusCode !== 200) throw new UpstreamError(`upstream token endpoint answered ${res.statusCode}`, res.statusCode);
    let doc: { token?: string; access_token?: string; expires_in?: number };
    try {
      doc = JSON.parse(body.toString('utf8')) as typeof doc;
    } catch {
      throw new UpstreamError('upstream token endpoint answered something that is not JSON');
    }
    const value = doc.token ?? doc.access_token;
    if (!value) throw new UpstreamError('upstream token endpoint answered no token');
    // The spec's default lifetime is 60 s; renew a little early.
    const lifetime = (typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : 60) * 1000;
    this.tokens.set(scope, { value, expiresAt: Date.now() + Math.max(lifetime - 10_000, lifetime / 2) });
    return `Bearer ${value}`;
  }

  private async follow(url: URL, req: UpstreamRequest, authorization: string | undefined, redirects = true): Promise<IncomingMessage> {
    const origin = new URL(this.config.url).host;
    for (let hops = 0; ; hops++) {
      const sameHost = url.host === origin;
      const res = await this.once(url, req, sameHost ? authorization : undefined);
      const status = res.statusCode ?? 0;
      if (!redirects || ![301, 302, 303, 307, 308].includes(status) || !res.headers.location) return res;
      res.resume();
      if (hops >= MAX_REDIRECTS) throw new UpstreamError('upstream redirected too many times');
      url = new URL(res.headers.location, url);
    }
  }

  private once(url: URL, req: UpstreamRequest, authorization: string | undefined): Promise<IncomingMessage> {
    const https = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const r = (https ? httpsRequest : httpRequest)(
        url,
        {
          method: req.method,
          agent: https ? this.httpsAgent : this.httpAgent,
          headers: { 'User-Agent': 'berth-pull-through', ...req.headers, ...(authorization ? { Authorization: authorization } : {}) },
          ...(req.signal ? { signal: req.signal } : {}),
        },
        resolve,
      );
      r.on('error', (e) => reject(new UpstreamError(`upstream ${url.host}: ${e.message}`)));
      // Also covers the body: a fetch others wait on must not hang on a silent upstream.
      r.setTimeout(IDLE_TIMEOUT, () => r.destroy(new Error(`no answer for ${IDLE_TIMEOUT / 1000} s`)));
      r.end();
    });
  }
}

/** key="value" pairs of a challenge's parameters. */
export function parseChallenge(params: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of params.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) out[m[1]!.toLowerCase()] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  return out;
}

/** The whole body, up to `limit` bytes (more is an error). */
export async function readAll(res: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      throw new UpstreamError(`upstream answer larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
