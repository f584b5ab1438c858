/**
 * The one authorization check the HTTP layer makes before dispatching a
 * /v2/ request (installed only when auth is on). It maps the route to the
 * access it needs, decides, and refuses per the token spec: UNAUTHORIZED
 * (401, with a challenge) when better credentials could help, DENIED (403)
 * when the caller is known and not allowed. A refused request reaches no
 * handler, so it changes nothing.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../registry/errors.js';
import type { AccessNeed, PullAccess } from './access.js';
import { isFailure, type AuthFailure, type Authenticator, type Principal } from './authenticator.js';
import type { Action, AuthConfig } from './config.js';
import type { Policy } from './rules.js';
import { isLoopback } from './loopback.js';
import { BASIC_CHALLENGE, bearerChallenge } from './scope.js';
import { tokenGrants } from './tokens.js';
import type { UploadLimiter } from './upload-limiter.js';

const HOST_RE = /^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/;

export class Guard {
  constructor(
    private readonly config: AuthConfig,
    private readonly policy: Policy,
    private readonly authn: Authenticator,
    private readonly uploads: UploadLimiter,
  ) {}

  /**
   * Where clients get tokens: the configured realm. Without one, only a
   * loopback client (as the trusted-proxy rules define the client) is sent to
   * this server's /auth/token as its own Host header names it; anyone else is
   * challenged with Basic, so no header of a request can steer credentials to
   * another host.
   */
  realm(req: FastifyRequest): string | undefined {
    if (this.config.token.realm) return this.config.token.realm;
    if (!this.config.token.enabled || !isLoopback(req)) return undefined;
    const host = HOST_RE.test(req.host) ? req.host : 'localhost';
    return `${req.protocol}://${host}/auth/token`;
  }

  unauthorized(req: FastifyRequest, message: string, scope?: string, error?: 'invalid_token' | 'insufficient_scope'): RegistryError {
    const realm = this.realm(req);
    const challenge = realm !== undefined ? bearerChallenge(realm, this.config.token.service, scope, error) : BASIC_CHALLENGE;
    return new RegistryError('UNAUTHORIZED', message, { headers: { 'WWW-Authenticate': challenge, 'Cache-Control': 'no-store' } });
  }

  failure(req: FastifyRequest, f: AuthFailure, scope?: string): RegistryError {
    if (f.failure === 'rate') {
      return new RegistryError('TOOMANYREQUESTS', f.message, { headers: { 'Retry-After': String(f.retryAfter) } });
    }
    return this.unauthorized(req, f.message, scope, f.failure === 'token' ? 'invalid_token' : undefined);
  }

  async authorize(req: FastifyRequest, reply: FastifyReply, need: AccessNeed, repository: string): Promise<PullAccess> {
    const scope =
      need.kind === 'repository' ? `repository:${repository}:${need.action === 'push' ? 'pull,push' : need.action}` : need.kind === 'catalog' ? 'registry:catalog:*' : undefined;
    const p = await this.authn.authenticate(req);
    if (isFailure(p)) throw this.failure(req, p, scope);
    const subject = p.kind === 'user' ? p.name : p.kind === 'token' && p.token.own && p.token.subject ? p.token.subject : null;
    req.principal = subject ?? (p.kind === 'token' && p.token.subject ? p.token.subject : undefined);

    if (need.kind === 'login') {
      if (p.kind === 'anonymous') throw this.unauthorized(req, 'authentication required');
      // Berth's anonymous token proves no identity: it opens /v2/ only where
      // anonymous callers may do something at all.
      if (p.kind === 'token' && p.token.own && subject === null && !this.policy.hasAnonymousRules) throw this.unauthorized(req, 'authentication required');
      return this.access(p);
    }
    if (need.kind === 'catalog') {
      if (p.kind === 'anonymous' && !this.policy.hasAnonymousRules) throw this.unauthorized(req, 'authentication required', scope);
      if (p.kind === 'token' && !tokenGrants(p.token, 'registry', 'catalog', '*')) throw this.unauthorized(req, 'the token does not grant the catalog', scope, 'insufficient_scope');
      // The catalog lists what the caller may pull: per the rules for Berth's own
      // principals, per the token's grants for an external token's subject.
      if (p.kind === 'token' && !p.token.own) return this.access(p);
      return { canPull: (r) => this.policy.can(subject, r, 'pull') };
    }

    const action = need.action;
    let allowed: boolean;
    if (p.kind === 'token') allowed = tokenGrants(p.token, 'repository', repository, action);
    else allowed = this.policy.can(subject, repository, action);
    if (!allowed) {
      if (p.kind === 'anonymous') throw this.unauthorized(req, 'authentication required', scope);
      if (p.kind === 'user') throw denied(repository, action);
      // A token without the scope: a new token may carry it (401 asks the client
      // to get one), unless Berth issued it and its rules will never grant it.
      if (p.token.own && !this.policy.can(subject, repository, action)) {
        if (subject === null) throw this.unauthorized(req, 'authentication required', scope);
        throw denied(repository, action);
      }
      throw this.unauthorized(req, 'the token does not grant this access', scope, 'insufficient_scope');
    }
    if (need.upload) this.uploads.acquire(`${req.ip}\n${subject ?? (p.kind === 'token' ? p.token.subject : '')}`, reply.raw);
    // What the caller may pull: a mount links a blob only from such a repository.
    return this.access(p);
  }

  /** What a principal may pull, for a mount's source repository (and an external token's catalog). */
  private access(p: Principal): PullAccess {
    if (p.kind === 'token') return { canPull: (r) => tokenGrants(p.token, 'repository', r, 'pull') };
    const subject = p.kind === 'user' ? p.name : null;
    return { canPull: (r) => this.policy.can(subject, r, 'pull') };
  }

  /**
   * Who is asking and what they may do, for the console (src/console/): the
   * rules of a user or of a Berth-issued token's subject, an external token's
   * grants. Refused credentials come back as the failure, for the caller to answer.
   */
  async caller(req: FastifyRequest): Promise<{ name: string | null; can(repository: string, action: Action): boolean } | AuthFailure> {
    const p = await this.authn.authenticate(req);
    if (isFailure(p)) return p;
    if (p.kind === 'token' && !p.token.own) {
      const token = p.token;
      return { name: token.subject || null, can: (r, a) => tokenGrants(token, 'repository', r, a) };
    }
    const subject = p.kind === 'user' ? p.name : p.kind === 'token' && p.token.subject ? p.token.subject : null;
    return { name: subject, can: (r, a) => this.policy.can(subject, r, a) };
  }

  /** Checks an admin request (/admin/*, /metrics): admins only, or loopback when no admin is configured. */
  async authorizeAdmin(req: FastifyRequest): Promise<void> {
    if (!this.policy.hasAdmins) {
      if (isLoopback(req)) return;
      throw new RegistryError('DENIED', 'no auth.admins are configured: the admin API answers loopback clients only');
    }
    const p = await this.authn.authenticate(req);
    if (isFailure(p)) {
      if (p.failure === 'rate') throw this.failure(req, p);
      throw new RegistryError('UNAUTHORIZED', p.message, { headers: { 'WWW-Authenticate': BASIC_CHALLENGE, 'Cache-Control': 'no-store' } });
    }
    const subject = p.kind === 'user' ? p.name : p.kind === 'token' && p.token.own ? p.token.subject : '';
    if (subject) req.principal = subject;
    if (p.kind === 'anonymous') throw new RegistryError('UNAUTHORIZED', 'admin credentials required', { headers: { 'WWW-Authenticate': BASIC_CHALLENGE, 'Cache-Control': 'no-store' } });
    if (!subject || !this.policy.isAdmin(subject)) throw new RegistryError('DENIED', 'admin access required');
  }
}

function denied(repository: string, action: string): RegistryError {
  return new RegistryError('DENIED', undefined, { detail: { repository, action } });
}
