/**
 * Users and their bcrypt password hashes from an htpasswd file (the format
 * `htpasswd -B` writes: `user:$2y$…` per line). The file is re-read when it
 * changes (checked at most once a second, by size, mtime and inode, so an
 * editor's rename-over is seen). Checks take the same time whether or not the
 * user exists: an unknown user is compared against a dummy hash of the same cost.
 */
import bcrypt from 'bcryptjs';
import { statSync, readFileSync } from 'node:fs';
import type { Logger } from '../log.js';

const BCRYPT_RE = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;

export class Htpasswd {
  private users = new Map<string, string>();
  private dummy = '';
  private signature = '';
  private checkedAt = 0;
  /** Bumped on every reload: caches of verified passwords key on it. */
  generation = 0;

  constructor(
    readonly file: string,
    private readonly logger?: Logger,
  ) {
    this.refresh(true);
  }

  /** Re-reads the file if it changed; at most one stat per second unless forced. */
  refresh(force = false): void {
    const now = Date.now();
    if (!force && now - this.checkedAt < 1000) return;
    this.checkedAt = now;
    let signature: string;
    try {
      const st = statSync(this.file);
      signature = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch (e) {
      if (force) throw new Error(`cannot read htpasswd file ${this.file}: ${(e as Error).message}`);
      this.logger?.error({ file: this.file, err: (e as Error).message }, 'htpasswd file unreadable; keeping the users already loaded');
      return;
    }
    if (signature === this.signature) return;
    this.signature = signature;
    this.load(readFileSync(this.file, 'utf8'));
  }

  private load(text: string): void {
    const users = new Map<string, string>();
    let cost = 0;
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
      cost = Math.max(cost, Number(m[1]));
      users.set(user, hash);
    }
    // The dummy costs what the users' hashes cost (the highest), 10 for an empty file.
    if (cost === 0) cost = 10;
    if (!this.dummy || bcrypt.getRounds(this.dummy) !== cost) this.dummy = bcrypt.hashSync('berth dummy password', cost);
    this.users = users;
    this.generation++;
    this.logger?.warn({ file: this.file, users: users.size }, 'htpasswd loaded');
  }

  has(user: string): boolean {
    this.refresh();
    return this.users.has(user);
  }

  get size(): number {
    return this.users.size;
  }

  /** Whether `password` is the user's; constant in time with respect to whether the user exists. */
  async verify(user: string, password: string): Promise<boolean> {
    this.refresh();
    const hash = this.users.get(user);
    let ok = false;
    try {
      ok = await bcrypt.compare(password, hash ?? this.dummy);
    } catch {
      ok = false;
    }
    return ok && hash !== undefined;
  }
}
