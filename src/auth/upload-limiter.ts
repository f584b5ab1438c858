/** A cap on concurrent requests carrying upload bodies per client (address + user). */
import type { ServerResponse } from 'node:http';
import { RegistryError } from '../registry/errors.js';

export class UploadLimiter {
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Counts the request until its response closes; TOOMANYREQUESTS when the client is at its limit. */
  acquire(client: string, res: ServerResponse): void {
    if (this.max <= 0) return;
    const n = this.inFlight.get(client) ?? 0;
    if (n >= this.max) {
      throw new RegistryError('TOOMANYREQUESTS', `at most ${this.max} concurrent uploads per client`, { headers: { 'Retry-After': '1' } });
    }
    this.inFlight.set(client, n + 1);
    res.once('close', () => {
      const left = (this.inFlight.get(client) ?? 1) - 1;
      if (left <= 0) this.inFlight.delete(client);
      else this.inFlight.set(client, left);
    });
  }
}
