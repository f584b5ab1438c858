/**
 * Puts the security pieces together for `berth serve`: the request guard and
 * token routes (only when auth is on), the admin check, and the transport
 * (only when auth or TLS is on: otherwise the server is built exactly as
 * without this module, and no request pays for it).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from '../log.js';
import { RegistryError } from '../registry/errors.js';
import { DEFAULT_MAX_HEADER_BYTES, type SecurityConfig } from './config.js';
import type { Guard } from './guard.js';
import { isLoopback } from './loopback.js';
import { Transport } from './transport.js';

export type AdminCheck = (req: FastifyRequest) => Promise<void>;

export class Security {
  private constructor(
    readonly guard: Guard | undefined,
    readonly transport: Transport | undefined,
    private readonly routes: ((app: FastifyInstance) => void) | undefined,
    /** Checks for /admin/* and /metrics (undefined: anyone). */
    readonly adminCheck: AdminCheck,
    readonly metricsCheck: AdminCheck | undefined,
    readonly trustedProxies: string[] | undefined,
  ) {}

  static async create(config: SecurityConfig & { data: string }, logger: Logger): Promise<Security> {
    // Only a non-default head limit needs Berth's own sockets when auth and TLS are off.
    const secured = config.auth !== undefined || config.tls !== undefined;
    const transport = secured || config.limits.maxHeaderBytes !== DEFAULT_MAX_HEADER_BYTES ? new Transport(config.tls, config.limits, logger, secured) : undefined;
    const trusted = config.trustedProxies.length > 0 ? config.trustedProxies : undefined;
    const auth = config.auth;
    if (!auth) {
      const loopbackOnly: AdminCheck = async (req) => {
        if (!isLoopback(req)) throw new RegistryError('DENIED', 'the admin API answers loopback clients only until auth.admins is configured');
      };
      return new Security(undefined, transport, undefined, loopbackOnly, undefined, trusted);
    }
    // The enforcing side (jose, bcrypt) loads only when auth is on: an
    // open registry does not carry ~10 MiB of code it never runs.
    const [{ Authenticator }, { Guard }, { Htpasswd }, { LoginEvents }, { LoginLimiter }, { PasswordChecks }, { Policy }, { tokenRoutes }, { loadSigningKey, TokenService }, { UploadLimiter }] =
      await Promise.all([
        import('./authenticator.js'),
        import('./guard.js'),
        import('./htpasswd.js'),
        import('./login-events.js'),
        import('./login-limiter.js'),
        import('./password-checks.js'),
        import('./rules.js'),
        import('./token-endpoint.js'),
        import('./tokens.js'),
        import('./upload-limiter.js'),
      ]);
    if (auth.token.enabled && !auth.token.realm) {
      logger.warn({}, 'auth.token.realm is not set: clients other than loopback get a Basic challenge instead of a token realm');
    }
    const htpasswd = auth.htpasswd ? new Htpasswd(auth.htpasswd, logger) : undefined;
    const signingKey = auth.token.enabled ? await loadSigningKey(auth.token, config.data) : undefined;
    const tokens = await new TokenService(auth.token, signingKey).init();
    const policy = new Policy(auth);
    const authn = new Authenticator(
      htpasswd,
      tokens,
      new LoginLimiter(auth.failedLogins, auth.failedLoginsPerAddress, auth.failedLoginDecay),
      new PasswordChecks(auth.passwordChecks, auth.passwordCheckQueue),
      new LoginEvents(logger),
    );
    const guard = new Guard(auth, policy, authn, new UploadLimiter(config.limits.uploadsPerClient));
    const routes = auth.token.enabled ? tokenRoutes(auth, policy, authn, tokens) : undefined;
    const adminCheck: AdminCheck = (req) => guard.authorizeAdmin(req);
    return new Security(guard, transport, routes, adminCheck, auth.metrics === 'public' ? undefined : adminCheck, trusted);
  }

  /** Routes outside /v2/ this module serves (the token endpoint). */
  register(app: FastifyInstance): void {
    this.routes?.(app);
  }
}
