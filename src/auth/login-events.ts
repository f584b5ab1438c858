/**
 * The security events of logging in: failed password checks and lockouts,
 * with the user name and the client address (as the trusted-proxy rules
 * define it). One place: they go to the server log and, when it is on, to
 * the audit log (`login-failed`, `login-locked`).
 */
import { audit } from '../audit/audit-log.js';
import type { Logger } from '../log.js';

export class LoginEvents {
  constructor(private readonly logger: Logger | undefined) {}

  /** A password check failed (wrong password or unknown user: the log does not say which). */
  failed(user: string, client: string): void {
    this.logger?.info({ event: 'login-failed', user: user.slice(0, 200), client }, 'login failed');
    audit.write({ event: 'login-failed', outcome: 'failure', user: user.slice(0, 128), client });
  }

  /** Attempts from `client` (for `user`, or for any user: by address) are refused until `retryAfter` seconds pass. */
  lockedOut(user: string, client: string, by: 'user' | 'address', retryAfter: number): void {
    this.logger?.warn({ event: 'login-lockout', user: user.slice(0, 200), client, by, retryAfter }, 'too many failed logins: locked out');
    audit.write({ event: 'login-locked', outcome: 'locked', user: user.slice(0, 128), client, by, retryAfter });
  }
}
