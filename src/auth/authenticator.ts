/**
 * Who is asking: the credentials of a request's Authorization header (Basic
 * against the htpasswd file, Bearer against the token verifier), or nobody.
 * Successful Basic checks are cached briefly by the hash of the header (bcrypt
 * is slow on purpose) and for as long as the htpasswd file is unchanged;
 * identical headers arriving while one is being checked share that check.
 * Failures are not cached but rate limited (login-limiter.ts), each password
 * check counted as it starts; checks run under a concurrency bound
 * (password-checks.ts).
 */
import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Htpasswd } from './htpasswd.js';
import type { LoginEvents } from './login-events.js';
import type { LoginLimiter } from './login-limiter.js';
import { PasswordChecksBusy, type PasswordChecks } from './password-checks.js';
import { TokenError, type TokenService, type VerifiedToken } from './tokens.js';

export type Principal = { kind: 'anonymous' } | { kind: 'user'; name: string } | { kind: 'token'; token: VerifiedToken };

export type AuthFailure =
  | { failure: 'credentials'; message: string }
  | { failure: 'token'; message: string }
  /** Too many failed logins, or too many password checks at once: 429 with Retry-After. */
  | { failure: 'rate'; retryAfter: number; message: string };

const BASIC_CACHE_MS = 30_000;
const CACHE_MAX = 10_000;
const ANONYMOUS: Principal = { kind: 'anonymous' };

export class Authenticator {
  private readonly basicCache = new Map<string, { name: string; generation: number; until: number }>();
  private readonly inFlight = new Map<string, Promise<Principal | AuthFailure>>();

  constructor(
    private readonly htpasswd: Htpasswd | undefined,
    private readonly tokens: TokenService | undefined,
    private readonly limiter: LoginLimiter,
    private readonly checks: PasswordChecks,
    private readonly events: LoginEvents,
  ) {}

  /** The principal, or why the credentials were refused. */
  async authenticate(req: FastifyRequest): Promise<Principal | AuthFailure> {
    const header = req.headers.authorization;
    if (header === undefined) return ANONYMOUS;
    const space = header.indexOf(' ');
    const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
    const value = space < 0 ? '' : header.slice(space + 1).trim();
    if (scheme === 'basic') return this.basic(req, header, value);
    if (scheme === 'bearer') return this.bearer(value);
    return { failure: 'credentials', message: 'unsupported authorization scheme' };
  }

  /** Basic credentials given as a header value (the token endpoint's forms): Bearer is not accepted. */
  checkHeader(req: FastifyRequest, header: string): Promise<Principal | AuthFailure> {
    const space = header.indexOf(' ');
    if (space < 0 || header.slice(0, space).toLowerCase() !== 'basic') return Promise.resolve({ failure: 'credentials', message: 'basic credentials required' });
    return this.basic(req, header, header.slice(space + 1).trim());
  }

  private async basic(req: FastifyRequest, header: string, value: string): Promise<Principal | AuthFailure> {
    if (!this.htpasswd) return { failure: 'credentials', message: 'basic authentication is not configured' };
    const now = Date.now();
    const key = createHash('sha256').update(header).digest('base64');
    const cached = this.basicCache.get(key);
    if (cached && cached.until > now && cached.generation === this.htpasswd.generation) return { kind: 'user', name: cached.name };
    let decoded: string;
    try {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw new Error('not base64');
      decoded = Buffer.from(value, 'base64').toString('utf8');
    } catch {
      return { failure: 'credentials', message: 'malformed basic credentials' };
    }
    const colon = decoded.indexOf(':');
    if (colon <= 0) return { failure: 'credentials', message: 'malformed basic credentials' };
    const name = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    // A socket already gone has no address: such requests share one key.
    const client = req.ip ?? 'unknown';
    // Identical headers from one client (a client's parallel requests) share one check and count once.
    const flight = `${client}\n${key}`;
    const pending = this.inFlight.get(flight);
    if (pending) return pending;
    const check = this.check(client, name, password, key);
    this.inFlight.set(flight, check);
    try {
      return await check;
    } finally {
      this.inFlight.delete(flight);
    }
  }

  private async check(client: string, name: string, password: string, key: string): Promise<Principal | AuthFailure> {
    const admission = this.limiter.begin(client, name);
    if (!admission.admitted) {
      if (admission.first) this.events.lockedOut(name, client, admission.by, admission.retryAfter);
      return { failure: 'rate', retryAfter: admission.retryAfter, message: 'too many failed logins; try again later' };
    }
    const generation = this.htpasswd!.generation;
    let ok: boolean;
    try {
      ok = await this.checks.run(() => this.htpasswd!.verify(name, password));
    } catch (e) {
      admission.attempt.cancelled();
      if (e instanceof PasswordChecksBusy) return { failure: 'rate', retryAfter: 1, message: 'too many logins in progress; try again shortly' };
      throw e;
    }
    if (!ok) {
      this.events.failed(name, client);
      return { failure: 'credentials', message: 'invalid username or password' };
    }
    admission.attempt.succeeded();
    if (this.basicCache.size >= CACHE_MAX) this.basicCache.clear();
    // The generation the check ran against: a file changed meanwhile invalidates it at once.
    this.basicCache.set(key, { name, generation, until: Date.now() + BASIC_CACHE_MS });
    return { kind: 'user', name };
  }

  private async bearer(value: string): Promise<Principal | AuthFailure> {
    if (!this.tokens) return { failure: 'token', message: 'token authentication is not configured' };
    try {
      return { kind: 'token', token: await this.tokens.verify(value) };
    } catch (e) {
      if (e instanceof TokenError) return { failure: 'token', message: e.message };
      return { failure: 'token', message: 'invalid token' };
    }
  }
}

export function isFailure(p: Principal | AuthFailure): p is AuthFailure {
  return 'failure' in p;
}
