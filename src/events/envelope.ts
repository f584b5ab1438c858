/**
 * The reference registry's notification envelope
 * (application/vnd.docker.distribution.events.v1+json), field for field, so
 * that receivers written for it (Harbor, scanners, CI hooks) parse Berth's.
 */
import type { OutboxRow } from '../metadata/store.js';

export const ENVELOPE_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json';

export interface Source {
  /** host:port of the node that recorded the event. */
  addr: string;
  instanceID: string;
}

export interface EnvelopeEvent {
  id: string;
  timestamp: string;
  action: string;
  target: Record<string, unknown>;
  request: Record<string, string>;
  actor: Record<string, string>;
  source: Source;
}

export function envelope(rows: OutboxRow[], source: Source): { events: EnvelopeEvent[] } {
  return { events: rows.map((r) => toEvent(r, source)) };
}

function toEvent(row: OutboxRow, source: Source): EnvelopeEvent {
  const e = row.event;
  const target: Record<string, unknown> = {};
  // The reference omits empty fields (Go omitempty); so does Berth.
  if (e.mediaType) target.mediaType = e.mediaType;
  if (e.size !== undefined) target.size = e.size;
  if (e.digest) target.digest = e.digest;
  if (e.size !== undefined) target.length = e.size;
  if (e.repository) target.repository = e.repository;
  if (e.fromRepository) target.fromRepository = e.fromRepository;
  const url = targetUrl(row);
  if (url) target.url = url;
  if (e.tag) target.tag = e.tag;
  if (e.references && e.references.length > 0) target.references = e.references;
  // Berth's own: what fsck found (fsck.drift), e.g. missing, corrupt, orphan-blob.
  if (e.problem) target.problem = e.problem;
  const req = e.ctx?.request;
  return {
    id: row.id,
    timestamp: new Date(row.createdAt).toISOString(),
    action: e.action,
    target,
    request: req ? { id: req.id, addr: req.addr, host: req.host, method: req.method, useragent: req.useragent } : {},
    actor: e.ctx?.actor ? { name: e.ctx.actor } : {},
    source,
  };
}

function targetUrl(row: OutboxRow): string | undefined {
  const e = row.event;
  if (!e.ctx?.base || !e.digest || !e.repository || !e.kind) return undefined;
  // As the reference: what was deleted has no URL any more.
  if (e.action !== 'push' && e.action !== 'pull' && e.action !== 'mount') return undefined;
  return `${e.ctx.base}/v2/${e.repository}/${e.kind === 'blob' ? 'blobs' : 'manifests'}/${e.digest}`;
}
