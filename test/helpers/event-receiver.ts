/**
 * A webhook receiver on loopback that records every envelope it accepts,
 * and can be told to fail (answer some status) or go away and come back on
 * the same port, as a real endpoint does.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedEvent {
  id: string;
  timestamp: string;
  action: string;
  target: Record<string, unknown> & { repository?: string; digest?: string; tag?: string; mediaType?: string };
  request: Record<string, string>;
  actor: Record<string, string>;
  source: { addr: string; instanceID: string };
}

export interface Envelope {
  headers: IncomingHttpHeaders;
  body: string;
  events: ReceivedEvent[];
}

export class EventReceiver {
  /** Envelopes answered 2xx, in arrival order. */
  readonly envelopes: Envelope[] = [];
  /** Requests answered with a failure. */
  refused = 0;
  /** Answer this status instead of 200 (undefined: accept). */
  failWith: number | undefined;
  private server: Server | undefined;
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/events`;
  }

  get events(): ReceivedEvent[] {
    return this.envelopes.flatMap((e) => e.events);
  }

  async start(port = 0): Promise<this> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (this.failWith !== undefined) {
          this.refused++;
          res.writeHead(this.failWith).end();
          return;
        }
        const body = Buffer.concat(chunks).toString('utf8');
        const parsed = JSON.parse(body) as { events: ReceivedEvent[] };
        this.envelopes.push({ headers: req.headers, body, events: parsed.events });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  /** Goes away (connections refused) until start(this.port) again. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Waits until `check` holds for the events received so far. */
  async waitFor(what: string, check: (events: ReceivedEvent[]) => boolean, timeoutMs = 20_000): Promise<ReceivedEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const events = this.events;
      if (check(events)) return events;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; received:\n${JSON.stringify(events.map((e) => [e.action, e.target.repository, e.target.tag ?? e.target.digest]), null, 1)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
