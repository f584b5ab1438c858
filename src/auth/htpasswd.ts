/**
 * Users and their bcrypt password hashes from an htpasswd file (the format
 * `htpasswd -B` writes: `user:$2y$…` per line). The file is watched (a stat
 * once a second, by size, mtime and inode, so an editor's rename-over is
 * seen) and re-read as soon as it changes; `generation` then moves, which
 * invalidates every cached check.
 *
 * bcrypt runs natively in libuv's thread pool (@node-rs/bcrypt), never on
 * the event loop. Checks tell nothing about whether a user exists: an
 * unknown name is checked against a dummy hash whose cost is one of the real
 * users' costs, chosen by a keyed hash of the name, so a name maps to the
 * same cost on every try and unknown names get the costs in the proportions
 * real users have them (all users at one cost: that cost).
 */
import { hashSync, verify } from '@node-rs/bcrypt';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync, statSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { Logger } from '../log.js';

const BCRYPT_RE = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
/** Below this cost a guessed password is checked too cheaply; warned about at load. */
export const MIN_RECOMMENDED_COST = 10;
/** Cost of the dummy when the file has no users. */
const DEFAULT_COST = 10;
const WATCH_INTERVAL_MS = 1000;

export class Htpasswd {
  private users = new Map<string, string>();
  /** One cost per user: unknown names draw from it. */
  private costs: number[] = [];
  private readonly dummySalted: string;
  private readonly dummyKey = randomBytes(32);
  private signature = '';
  /** Bumped on every reload: caches of verified passwords key on it. */
  generation = 0;

  constructor(
    readonly file: string,
    private readonly logger?: Logger,
  ) {
    // A well-formed salt and hash no password matches; the cost is set per check.
    this.dummySalted = hashSync(randomBytes(16).toString('hex'), 4).slice(7);
    this.refresh(true);
    watchFile(this.file, { interval: WATCH_INTERVAL_MS, persistent: false }, (cur) => this.changed(cur));
  }

  close(): void {
    unwatchFile(this.file);
  }

  private changed(st: Stats): void {
    // A file that vanished (nlink 0, all zero) mid-replace: keep the users until it is back.
    if (st.ino === 0 && st.mtimeMs === 0) {
      this.logger?.error({ file: this.file }, 'htpasswd file unreadable; keeping the users already loaded');
      return;
    }
    this.refresh(false);
  }

  /** Re-reads the file if it changed. */
  refresh(first = false): void {
    let signature: string;
    let text: string;
    try {
      const st = statSync(this.file);
      signature = `${st.ino}:${st.size}:${st.mtimeMs}`;
      if (signature === this.signature) return;
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if (first) throw new Error(`cannot read htpasswd file ${this.file}: ${(e as Error).message}`);
      this.logger?.error({ file: this.file, err: (e as Error).message }, 'htpasswd file unreadable; keeping the users already loaded');
      return;
    }
    this.signature = signature;
    this.load(text);
  }

  private load(text: string): void {
    const users = new Map<string, string>();
    const costs: number[] = [];
    const weak: string[] = [];
    for (const [i, raw] of text.split(/\r?\n/).entries()) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const colon = line.indexOf(':');
      const user = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      const m = BCRYPT_RE.exec(hash);
      if (colon <= 0 || !m) {
        // Only bcrypt is accepted: MD5-crypt, SHA1 and crypt(3) hashes are too weak to honour.
        this.logger?.warn({ file: this.file, line: i + 1, user: colon > 0 ? user : undefined }, 'htpasswd line ignored: only bcrypt entries (htpasswd -B) are accepted');
        continue;
      }
      const cost = Number(m[1]);
      if (cost < MIN_RECOMMENDED_COST) weak.push(`${user} (${cost})`);
      if (!users.has(user)) costs.push(cost);
      users.set(user, hash);
    }
    if (weak.length > 0) {
      this.logger?.warn({ file: this.file, users: weak.slice(0, 20), count: weak.length }, `htpasswd: bcrypt cost below ${MIN_RECOMMENDED_COST} makes guessing cheap; rehash with htpasswd -B -C 12`);
    }
    this.users = users;
    this.costs = costs.length > 0 ? costs : [DEFAULT_COST];
    this.generation++;
    this.logger?.warn({ file: this.file, users: users.size }, 'htpasswd loaded');
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  get size(): number {
    return this.users.size;
  }

  /** The dummy an unknown `user` is checked against: the same name, the same cost, every time. */
  private dummyFor(user: string): string {
    const n = createHmac('sha256', this.dummyKey).update(user).digest().readUInt32BE(0);
    const cost = this.costs[n % this.costs.length]!;
    return `$2b$${String(cost).padStart(2, '0')}$${this.dummySalted}`;
  }

  /** Whether `password` is the user's; its time says nothing about whether the user exists. */
  async verify(user: string, password: string): Promise<boolean> {
    const hash = this.users.get(user);
    let ok = false;
    try {
      ok = await verify(password, hash ?? this.dummyFor(user));
    } catch {
      ok = false;
    }
    return ok && hash !== undefined;
  }
}
