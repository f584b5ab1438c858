/**
 * The audit log: security-relevant events (refused logins, lockouts, denied
 * requests, deletes, admin calls) as JSON lines on a stream of their own, so
 * it can be shipped and kept apart from the request log. Off unless
 * `log.audit` names a destination; while off, `write` returns at once.
 *
 * One line: {"time":"…","event":"delete","outcome":"success","user":"alice",
 * "client":"203.0.113.9","repository":"team-a/app","requestId":"…",…}.
 *
 * A module of its own (not http/ or auth/): both layers write to it, and it
 * imports neither.
 */
import { pino } from 'pino';

/** What happened. Other layers may add names; these are the ones Berth writes. */
export type AuditEventName =
  /** Credentials were given and refused (wrong password, bad token). */
  | 'login-failed'
  /** A client was locked out by the failed-login limit. */
  | 'login-locked'
  /** A request was refused with 401 (credentials were given) or 403. */
  | 'denied'
  /** DELETE of a manifest, a tag or a blob, whatever its outcome. */
  | 'delete'
  /** A call to /admin/*. */
  | 'admin';

export interface AuditEvent {
  event: AuditEventName;
  /** `success`, `failure` (refused by the registry), `denied` (refused by auth), `locked`. */
  outcome: 'success' | 'failure' | 'denied' | 'locked';
  /** The authenticated user; for a refused login, the name that was tried. */
  user?: string;
  /** The client address, as the trusted-proxy rules define it (`req.ip`). */
  client?: string;
  repository?: string;
  requestId?: string;
  /** Anything else worth keeping (status, method, path, reason, target, reference…). */
  [detail: string]: unknown;
}

export class AuditLog {
  private destination?: ReturnType<typeof pino.destination>;

  /** Whether events are written: callers with work to do before `write` check this first. */
  get enabled(): boolean {
    return this.destination !== undefined;
  }

  /** Starts writing to `target`: a file path (appended to, created with its directory), `stdout` or `stderr`. */
  open(target: string): void {
    const dest = target === 'stdout' ? 1 : target === 'stderr' ? 2 : target;
    // pino's asynchronous writer (sonic-boom): buffered, reopenable for log rotation.
    this.destination = pino.destination(typeof dest === 'number' ? { dest, sync: false } : { dest, sync: false, mkdir: true, append: true });
  }

  write(event: AuditEvent): void {
    if (this.destination === undefined) return;
    this.destination.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
  }

  /** After a log rotation (SIGHUP): continue in a new file of the same name. */
  reopen(): void {
    this.destination?.reopen();
  }

  flush(): void {
    try {
      this.destination?.flushSync();
    } catch {
      // not yet open (nothing written): nothing to flush
    }
  }
}

/**
 * The process's audit log, opened by `berth serve` when configured. Any layer
 * records an event with `audit.write({ event, outcome, user, client, … })`.
 */
export const audit = new AuditLog();
