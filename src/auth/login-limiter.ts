/**
 * Failed-login rate limiting, per (client address, user name) and per client
 * address whatever the user name (an IPv6 client by its /64, which one host
 * usually holds whole). Every password check counts as an attempt when it
 * STARTS, so parallel guesses cannot all pass the check before the first
 * failure is recorded; a successful login gives its attempt back. Each
 * attempt adds one to a score that decays exponentially; at the limit the
 * key is refused (429) without a password check until the score has decayed
 * below it. Refused attempts do not add to the score, so a lockout always
 * ends, and a third party elsewhere cannot lock a user out: its attempts
 * count against its own address.
 */
import ipaddr from 'ipaddr.js';

const MAX_ENTRIES = 100_000;

interface Entry {
  score: number;
  at: number;
  /** Whether this lockout was already reported (one log line per lockout, not per refusal). */
  reported: boolean;
}

export interface LoginAttempt {
  /** The password was right: the user's count is cleared and the address gets its attempt back. */
  succeeded(): void;
  /** No check happened (the server was too busy): the attempt is given back. */
  cancelled(): void;
}

export type Admission =
  | { admitted: true; attempt: LoginAttempt }
  /** `first`: this refusal starts a lockout (report it once). */
  | { admitted: false; retryAfter: number; by: 'user' | 'address'; first: boolean };

/** The key an address is limited by: IPv4 as is, IPv6 by its /64. */
export function addressKey(address: string): string {
  try {
    const a = ipaddr.parse(address);
    if (a.kind() === 'ipv4') return a.toString();
    const v6 = a as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
    return `${v6.parts.slice(0, 4).map((p) => p.toString(16)).join(':')}::/64`;
  } catch {
    return address;
  }
}

export class LoginLimiter {
  private readonly scores = new Map<string, Entry>();

  constructor(
    /** Attempts per (address, user) in quick succession before 429. */
    private readonly perUser: number,
    /** Attempts per address, any user names, in quick succession before 429. */
    private readonly perAddress: number,
    /** Time for a score to decay by a factor e, ms. */
    private readonly decay: number,
  ) {}

  private current(key: string, now: number): number {
    const e = this.scores.get(key);
    if (!e) return 0;
    return e.score * Math.exp(-(now - e.at) / this.decay);
  }

  /** Seconds until a score falls below the threshold of `max`, or 0 when it is below now. */
  private wait(score: number, max: number): number {
    // `max` attempts in quick succession block; the score decays continuously,
    // so the threshold sits half an attempt lower.
    const threshold = max - 0.5;
    if (score < threshold) return 0;
    // score * e^(-t/decay) < threshold: the next attempt is allowed.
    return Math.max(1, Math.ceil((this.decay / 1000) * Math.log(score / threshold)));
  }

  private add(key: string, delta: number, now: number): void {
    if (this.scores.size >= MAX_ENTRIES && !this.scores.has(key)) this.prune(now);
    const score = Math.max(0, this.current(key, now) + delta);
    if (score === 0) this.scores.delete(key);
    else this.scores.set(key, { score, at: now, reported: false });
  }

  private refuse(key: string, retryAfter: number, by: 'user' | 'address'): Admission {
    const e = this.scores.get(key)!;
    const first = !e.reported;
    e.reported = true;
    return { admitted: false, retryAfter, by, first };
  }

  /** Admits an attempt (counting it now) or refuses it. */
  begin(client: string, user: string, now = Date.now()): Admission {
    const address = `a\n${addressKey(client)}`;
    const pair = `u\n${client}\n${user}`;
    const byAddress = this.wait(this.current(address, now), this.perAddress);
    if (byAddress > 0) return this.refuse(address, byAddress, 'address');
    const byUser = this.wait(this.current(pair, now), this.perUser);
    if (byUser > 0) return this.refuse(pair, byUser, 'user');
    this.add(address, 1, now);
    this.add(pair, 1, now);
    let open = true;
    return {
      admitted: true,
      attempt: {
        succeeded: () => {
          if (!open) return;
          open = false;
          this.scores.delete(pair);
          this.add(address, -1, Date.now());
        },
        cancelled: () => {
          if (!open) return;
          open = false;
          this.add(pair, -1, Date.now());
          this.add(address, -1, Date.now());
        },
      },
    };
  }

  private prune(now: number): void {
    for (const [key, e] of this.scores) if (e.score * Math.exp(-(now - e.at) / this.decay) < 0.5) this.scores.delete(key);
    // Under a flood of distinct keys, forget the oldest half rather than grow without bound.
    if (this.scores.size >= MAX_ENTRIES) {
      let n = this.scores.size / 2;
      for (const key of this.scores.keys()) {
        if (n-- <= 0) break;
        this.scores.delete(key);
      }
    }
  }
}
