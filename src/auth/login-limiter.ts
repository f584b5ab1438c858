/**
 * Failed-login rate limiting per (client address, user name). Each failure
 * adds one to a score that decays exponentially; at `max` the pair is refused
 * (429) without a password check until the score has decayed below it.
 * Refused attempts do not add to the score, so a lockout always ends, and a
 * third party elsewhere cannot lock a user out: its failures count against
 * its own address.
 */
const MAX_ENTRIES = 100_000;

export class LoginLimiter {
  private readonly scores = new Map<string, { score: number; at: number }>();

  constructor(
    private readonly max: number,
    /** Time for a score to decay by a factor e, ms. */
    private readonly decay: number,
  ) {}

  private current(key: string, now: number): number {
    const e = this.scores.get(key);
    if (!e) return 0;
    return e.score * Math.exp(-(now - e.at) / this.decay);
  }

  /** Seconds until `key` may try again, or 0 when it may now. */
  retryAfter(client: string, user: string, now = Date.now()): number {
    // `max` failures in quick succession block; the score decays continuously,
    // so the threshold sits half a failure lower.
    const threshold = this.max - 0.5;
    const score = this.current(`${client}\n${user}`, now);
    if (score < threshold) return 0;
    // score * e^(-t/decay) < threshold: the next attempt is allowed.
    return Math.max(1, Math.ceil((this.decay / 1000) * Math.log(score / threshold)));
  }

  failed(client: string, user: string, now = Date.now()): void {
    const key = `${client}\n${user}`;
    if (this.scores.size >= MAX_ENTRIES && !this.scores.has(key)) this.prune(now);
    this.scores.set(key, { score: this.current(key, now) + 1, at: now });
  }

  succeeded(client: string, user: string): void {
    this.scores.delete(`${client}\n${user}`);
  }

  private prune(now: number): void {
    for (const [key, e] of this.scores) if (e.score * Math.exp(-(now - e.at) / this.decay) < 0.5) this.scores.delete(key);
    // Under a flood of distinct pairs, forget the oldest half rather than grow without bound.
    if (this.scores.size >= MAX_ENTRIES) {
      let n = this.scores.size / 2;
      for (const key of this.scores.keys()) {
        if (n-- <= 0) break;
        this.scores.delete(key);
      }
    }
  }
}
