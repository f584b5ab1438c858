/**
 * GET /auth/token: Berth's own token service (Docker registry token spec),
 * and POST /auth/token, its OAuth2 password-grant form.
 * Checks Basic credentials if given (none: an anonymous token), and issues a
 * short-lived JWT whose `access` claim holds only what the rules GRANT of the
 * requested scopes — possibly nothing. GET /auth/jwks.json publishes the
 * verification key.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../registry/errors.js';
import { isValidRepositoryName } from '../registry/reference.js';
import { isFailure, type Authenticator } from './authenticator.js';
import { ACTIONS, type AuthConfig } from './config.js';
import type { Policy } from './rules.js';
import { BASIC_CHALLENGE, formatScope, parseScope, type ResourceAccess } from './scope.js';
import type { TokenService } from './tokens.js';

const MAX_SCOPES = 32;
const MAX_FORM_BYTES = 8192;
const NO_STORE = { 'Cache-Control': 'no-store', Pragma: 'no-cache' };

export function tokenRoutes(config: AuthConfig, policy: Policy, authn: Authenticator, tokens: TokenService) {
  /** What `subject` (null: anonymous) is granted of the requested scopes. */
  function grant(subject: string | null, scopes: string[]): ResourceAccess[] {
    const out: ResourceAccess[] = [];
    for (const raw of scopes.slice(0, MAX_SCOPES)) {
      for (const s of raw.split(' ')) {
        const scope = parseScope(s);
        if (!scope) continue;
        if (scope.type === 'repository' && isValidRepositoryName(scope.name)) {
          const allowed = policy.allowed(subject, scope.name);
          const wanted = scope.actions.includes('*') ? ACTIONS : scope.actions;
          const actions = ACTIONS.filter((a) => wanted.includes(a) && allowed.has(a));
          if (actions.length === ACTIONS.length && scope.actions.includes('*')) out.push({ type: 'repository', name: scope.name, actions: ['*'] });
          else if (actions.length > 0) out.push({ type: 'repository', name: scope.name, actions });
        } else if (scope.type === 'registry' && scope.name === 'catalog' && (subject !== null || policy.hasAnonymousRules)) {
          out.push({ type: 'registry', name: 'catalog', actions: ['*'] });
        }
      }
    }
    return out;
  }

  /** The subject of a token request: null without credentials; refusals as the spec's errors. */
  async function subjectOf(req: FastifyRequest, header: string | undefined): Promise<string | null> {
    let subject: string | null = null;
    if (header !== undefined) {
      const p = await authn.checkHeader(req, header);
      if (isFailure(p)) {
        if (p.failure === 'rate') throw new RegistryError('TOOMANYREQUESTS', p.message, { headers: { 'Retry-After': String(p.retryAfter), ...NO_STORE } });
        throw new RegistryError('UNAUTHORIZED', p.message, { headers: { 'WWW-Authenticate': BASIC_CHALLENGE, ...NO_STORE } });
      }
      if (p.kind === 'user') subject = p.name;
    }
    return subject;
  }

  function checkService(service: string | null): void {
    if (service !== null && service !== config.token.service) {
      throw new RegistryError('DENIED', `unknown service "${service.slice(0, 100)}"`, { status: 400, headers: NO_STORE });
    }
  }

  /** GET: the token spec's request, credentials as Basic. */
  async function handler(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const query = new URLSearchParams((req.raw.url ?? '').split('?')[1] ?? '');
    checkService(query.get('service'));
    const subject = await subjectOf(req, req.headers.authorization);
    const issued = await tokens.issue(subject ?? '', grant(subject, query.getAll('scope')));
    reply
      .code(200)
      .headers(NO_STORE)
      .type('application/json')
      .send(JSON.stringify({ token: issued.token, access_token: issued.token, expires_in: issued.expiresIn, issued_at: issued.issuedAt }));
  }

  /**
   * POST: the OAuth2 form (grant_type=password) that containerd and others try
   * first when they hold a password. Refresh tokens are not issued, so that is
   * the only grant.
   */
  async function oauthHandler(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    // Parsed by the form parser registered below; another content type leaves no body.
    if (typeof req.body !== 'string') throw new RegistryError('UNSUPPORTED', 'the token request must be a form (application/x-www-form-urlencoded)', { status: 400, headers: NO_STORE });
    const form = new URLSearchParams(req.body);
    checkService(form.get('service'));
    if (form.get('grant_type') !== 'password') throw new RegistryError('UNSUPPORTED', 'unsupported grant_type: only password', { status: 400, headers: NO_STORE });
    const username = form.get('username') ?? '';
    const header = username === '' ? undefined : `Basic ${Buffer.from(`${username}:${form.get('password') ?? ''}`).toString('base64')}`;
    const subject = await subjectOf(req, header);
    const scopes = form.getAll('scope').flatMap((s) => s.split(' '));
    const granted = grant(subject, scopes);
    const issued = await tokens.issue(subject ?? '', granted);
    // OAuth2: `scope` is what was granted, which may be less than what was asked.
    reply
      .code(200)
      .headers(NO_STORE)
      .type('application/json')
      .send(JSON.stringify({ access_token: issued.token, token: issued.token, expires_in: issued.expiresIn, issued_at: issued.issuedAt, scope: granted.map(formatScope).join(' ') }));
  }

  return (app: FastifyInstance) => {
    app.get('/auth/token', handler);
    // In a scope of its own: the form parser (Fastify's, bounded) serves only this route.
    void app.register(async (scope) => {
      scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: MAX_FORM_BYTES }, (_req, body, done) => done(null, body));
      scope.post('/auth/token', oauthHandler);
    });
    app.get('/auth/jwks.json', async (_req, reply) => reply.code(200).type('application/json').send(JSON.stringify(await tokens.jwks())));
  };
}
