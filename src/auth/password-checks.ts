/**
 * A bound on concurrent password checks. bcrypt is slow on purpose and runs
 * in libuv's thread pool (which file writes and syncs share): at most
 * `concurrent` checks run at once, at most `queued` more wait their turn, and
 * beyond that a check is refused at once (the caller answers 429 with
 * Retry-After), so a flood of logins can neither stall request handling nor
 * pile up work without end.
 */
export class PasswordChecksBusy extends Error {
  override name = 'PasswordChecksBusy';
}

export class PasswordChecks {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly concurrent: number,
    readonly queued: number,
  ) {}

  /** Runs `check` when a slot is free; PasswordChecksBusy when the queue is full. */
  async run<T>(check: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrent) {
      if (this.waiting.length >= this.queued) throw new PasswordChecksBusy('too many password checks in progress');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await check();
    } finally {
      // The slot passes straight to the next in line (running stays counted).
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
