/**
 * The event outbox as both stores write it: which endpoints an event is
 * written for, and its stored form. One row per endpoint that takes the
 * event, so each endpoint's delivery progresses (and fails) on its own.
 * A store without an outbox option writes nothing: requests pay nothing.
 */
import { randomUUID } from 'node:crypto';
import type { OutboxEvent, OutboxRow } from './store.js';
import type { Row } from './records.js';

export interface OutboxEndpoint {
  name: string;
  /** Whether this endpoint takes the event (its ignore rules); checked before the row is written. */
  accepts(event: OutboxEvent): boolean;
}

export interface OutboxOptions {
  endpoints: OutboxEndpoint[];
  /** Called when events were written (the transaction may still be open): wakes a local dispatcher. */
  written?: () => void;
}

/** A row to insert: (endpoint, event id, repository, action, payload). */
export interface OutboxInsert {
  endpoint: string;
  id: string;
  repository: string;
  action: string;
  payload: string;
}

/** The rows an event becomes: none without an outbox, or when no endpoint takes it. */
export function outboxInserts(outbox: OutboxOptions | undefined, event: OutboxEvent): OutboxInsert[] {
  if (!outbox || outbox.endpoints.length === 0) return [];
  const takers = outbox.endpoints.filter((e) => e.accepts(event));
  if (takers.length === 0) return [];
  // One id for every endpoint: it names the event, not a delivery.
  const id = randomUUID();
  const payload = JSON.stringify(event);
  if (outbox.written) setImmediate(outbox.written);
  return takers.map((e) => ({ endpoint: e.name, id, repository: event.repository, action: event.action, payload }));
}

export function toOutboxRow(r: Row): OutboxRow {
  return {
    seq: Number(r.seq),
    id: r.event_id as string,
    createdAt: Number(r.created_at),
    attempts: Number(r.attempts),
    event: JSON.parse(r.payload as string) as OutboxEvent,
  };
}

/** The descriptors a manifest references (config, layers, child manifests), as events report them. */
export function manifestReferences(body: Buffer): OutboxEvent['references'] {
  try {
    const m = JSON.parse(body.toString('utf8')) as {
      config?: Descriptor;
      layers?: Descriptor[];
      manifests?: Descriptor[];
    };
    const all = [...(m.config ? [m.config] : []), ...(m.layers ?? []), ...(m.manifests ?? [])];
    return all
      .filter((d) => typeof d?.digest === 'string')
      .map((d) => ({ mediaType: String(d.mediaType ?? ''), digest: d.digest!, size: Number(d.size ?? 0) }));
  } catch {
    return undefined;
  }
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
}
