/**
 * Drains the outbox: per endpoint, claims the oldest pending events (a lease
 * in the database, so two nodes never send one batch except after a crash
 * mid-delivery), sends them as one envelope, and acknowledges them only once
 * the receiver answered 2xx: at least once, in order (so in order per
 * repository), with exponential backoff while the receiver fails. Nothing
 * waits in memory: an endpoint that stays down lets its events wait in the
 * database until they are dead-lettered by age or count.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Logger } from '../log.js';
import type { MetadataStore, OutboxRow } from '../metadata/store.js';
import { pausePoint } from '../pause-points.js';
import type { EndpointConfig } from './config.js';
import { envelope, ENVELOPE_MEDIA_TYPE, type Source } from './envelope.js';
import { sign, SIGNATURE_HEADER } from './signing.js';

export interface DispatcherOptions {
  /** host:port reported as the events' source. */
  sourceAddr: string;
  log?: Pick<Logger, 'warn' | 'debug'>;
  /** How often an idle endpoint looks for events written by other processes or nodes, ms. */
  pollMs?: number;
  /** How long after a local write the dispatcher looks, gathering the writes of a burst, ms. */
  coalesceMs?: number;
}

export interface EndpointCounters {
  /** Events delivered by this process. */
  sent: number;
  /** Failed delivery attempts (envelopes) by this process. */
  failed: number;
}

export class EventDispatcher {
  readonly instanceID = randomUUID();
  readonly counters = new Map<string, EndpointCounters>();
  /** Set by the metrics: seconds from an event's commit to its delivery. */
  observe?: (endpoint: string, seconds: number) => void;
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private readonly wakers = new Set<() => void>();
  private readonly source: Source;
  private readonly pollMs: number;
  private readonly coalesceMs: number;

  constructor(
    private readonly metadata: MetadataStore,
    readonly endpoints: EndpointConfig[],
    private readonly options: DispatcherOptions,
  ) {
    this.source = { addr: options.sourceAddr, instanceID: this.instanceID };
    this.pollMs = options.pollMs ?? 1000;
    this.coalesceMs = options.coalesceMs ?? 20;
    for (const e of endpoints) this.counters.set(e.name, { sent: 0, failed: 0 });
  }

  start(): void {
    for (const e of this.endpoints) this.loops.push(this.run(e));
  }

  /**
   * Events were written here: look soon rather than at the next poll. Soon,
   * not at once: the events of a burst of requests then go in one claim and
   * one envelope instead of one each.
   */
  readonly wake = (): void => {
    if (this.waking) return;
    this.waking = setTimeout(() => {
      this.waking = undefined;
      // Loops busy sending now look again right after, instead of sleeping.
      for (const e of this.endpoints) this.woken.add(e.name);
      for (const w of this.wakers) w();
    }, this.coalesceMs);
  };
  private waking: NodeJS.Timeout | undefined;
  private readonly woken = new Set<string>();

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.waking);
    for (const w of this.wakers) w();
    await Promise.all(this.loops);
    this.agents.http?.destroy();
    this.agents.https?.destroy();
  }

  private async run(e: EndpointConfig): Promise<void> {
    let failures = 0;
    /** While backing off, wakes do not shorten the wait (each claim would only find the endpoint backing off). */
    let resumeAt = 0;
    while (!this.stopped) {
      while (!this.stopped && Date.now() < resumeAt) await this.sleep(e.name, resumeAt - Date.now());
      if (this.stopped) break;
      let delay = this.pollMs;
      try {
        const now = await this.metadata.now();
        const rows = await this.metadata.claimEvents(e.name, this.instanceID, now, {
          limit: e.batch,
          // Long enough for a whole attempt; a node that dies holding it is replaced after this.
          leaseMs: e.timeout * 2 + 2_000,
          maxAge: e.maxAge,
          maxCount: e.maxEvents,
        });
        if (rows && rows.length > 0) {
          await pausePoint('events-before-send');
          const error = await this.send(e, rows);
          const seqs = rows.map((r) => r.seq);
          const counters = this.counters.get(e.name)!;
          if (error === undefined) {
            await this.metadata.ackEvents(e.name, this.instanceID, seqs);
            failures = 0;
            counters.sent += rows.length;
            const at = Date.now();
            for (const r of rows) this.observe?.(e.name, Math.max(0, at - r.createdAt) / 1000);
            // A full batch: more are probably waiting. Otherwise wait to be woken (or the poll).
            delay = rows.length >= e.batch ? 0 : this.pollMs;
          } else {
            failures++;
            counters.failed++;
            delay = backoffDelay(e, failures);
            resumeAt = Date.now() + delay;
            await this.metadata.failEvents(e.name, this.instanceID, seqs, now + delay, error);
            this.options.log?.warn({ endpoint: e.name, events: rows.length, failures, retryIn: delay, error }, 'event delivery failed');
          }
        }
      } catch (err) {
        this.options.log?.warn({ endpoint: e.name, err }, 'event dispatcher error');
        delay = Math.max(delay, 1000);
      }
      if (delay > 0) await this.sleep(e.name, delay);
    }
  }

  /** Undefined when delivered; otherwise why not. */
  private async send(e: EndpointConfig, rows: OutboxRow[]): Promise<string | undefined> {
    const body = Buffer.from(JSON.stringify(envelope(rows, this.source)));
    const headers: Record<string, string | string[]> = { 'Content-Type': ENVELOPE_MEDIA_TYPE, 'Content-Length': String(body.length) };
    for (const [name, values] of Object.entries(e.headers)) headers[name] = values.length === 1 ? values[0]! : values;
    if (e.secret !== undefined) headers[SIGNATURE_HEADER] = sign(e.secret, body.toString('utf8'));
    // node:http rather than fetch: undici would cost the server ~20 MiB more memory.
    const url = new URL(e.url);
    const secure = url.protocol === 'https:';
    const client = secure ? https : http;
    const agent = secure
      ? (this.agents.https ??= new https.Agent({ keepAlive: true, maxSockets: 4 }))
      : (this.agents.http ??= new http.Agent({ keepAlive: true, maxSockets: 4 }));
    return new Promise((resolve) => {
      const req = client.request(url, { method: 'POST', headers, agent, timeout: e.timeout }, (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        // As the reference registry: any 2xx is delivered; anything else is retried.
        res.on('end', () => resolve(status >= 200 && status < 300 ? undefined : `HTTP ${status}`));
        res.on('error', (err) => resolve(err.message));
      });
      const timer = setTimeout(() => req.destroy(new Error('timeout')), e.timeout);
      req.on('close', () => clearTimeout(timer));
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ? `${err.message} (${err.code})` : err.message));
      req.end(body);
    });
  }

  private readonly agents: { http?: http.Agent; https?: https.Agent } = {};

  /** Waits `ms`, or until woken (also by a wake that came while this endpoint was busy). */
  private sleep(name: string, ms: number): Promise<void> {
    if (this.woken.delete(name)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(done);
        this.woken.delete(name);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }
}

/** Retried at once up to `threshold` failures in a row, then after `backoff`, doubling up to `maxBackoff`. */
export function backoffDelay(e: Pick<EndpointConfig, 'threshold' | 'backoff' | 'maxBackoff'>, failures: number): number {
  if (failures < e.threshold) return 50;
  return Math.min(e.backoff * 2 ** (failures - e.threshold), e.maxBackoff);
}
