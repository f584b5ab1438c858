/**
 * The PostgreSQL store's event outbox. Inserts run inside the transaction of
 * the change they report. Sequence numbers are taken before commit, so one
 * transaction may commit after another that numbered later; within one
 * repository that must not happen (a claim could send the later event and
 * the earlier one after it). So a transaction takes its repository's event
 * lock (an advisory lock held to commit) just before it numbers its events:
 * the events of one repository are numbered in commit order. The lock is
 * taken last, so it is held only from the insert to the commit.
 * The endpoint row is locked by the claim: two nodes never claim one batch.
 */
import type { QueryResult, QueryResultRow } from 'pg';
import type { EndpointEventStats, EventClaim, OutboxEvent, OutboxRow } from '../store.js';
import { outboxInserts, toOutboxRow, type OutboxOptions } from '../outbox.js';
import type { Row } from '../records.js';

export interface RawExec {
  raw<R extends QueryResultRow = Row>(name: string, text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

const PENDING = 0;
const DEAD = 1;
const DB_NOW = `(extract(epoch from clock_timestamp()) * 1000)::bigint`;

/** The first key of the repositories' event locks (the second is the name's hash). */
const EVENT_LOCK = 0x65766e74; // "evnt"

export const SQL = {
  anyPending: `SELECT 1 FROM event_outbox WHERE endpoint = $1 AND state = ${PENDING} LIMIT 1`,
  tagsOf: `SELECT name FROM tags WHERE manifest_id = $1 ORDER BY name COLLATE "C"`,
  repositoryLock: `SELECT pg_advisory_xact_lock(${EVENT_LOCK}, hashtext($1))`,
  insert: `
    INSERT INTO event_outbox (endpoint, event_id, created_at, repository, action, payload)
    SELECT e, $2, ${DB_NOW}, $3, $4, $5 FROM unnest($1::text[]) AS e`,
  ensureEndpoint: `INSERT INTO event_endpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`,
  lockEndpoint: `SELECT lease_owner, lease_until, retry_at FROM event_endpoints WHERE name = $1 FOR UPDATE`,
  deadByAge: `UPDATE event_outbox SET state = ${DEAD} WHERE endpoint = $1 AND state = ${PENDING} AND created_at < $2`,
  deadByCount: `
    UPDATE event_outbox SET state = ${DEAD} WHERE endpoint = $1 AND state = ${PENDING} AND seq < (
      SELECT min(seq) FROM (SELECT seq FROM event_outbox WHERE endpoint = $1 AND state = ${PENDING} ORDER BY seq DESC LIMIT $2) AS newest)`,
  pending: `
    SELECT seq, event_id, created_at, attempts, payload FROM event_outbox
    WHERE endpoint = $1 AND state = ${PENDING}
    ORDER BY seq LIMIT $2`,
  lease: `UPDATE event_endpoints SET lease_owner = $1, lease_until = $2 WHERE name = $3`,
  release: `UPDATE event_endpoints SET lease_owner = NULL, lease_until = 0 WHERE name = $1`,
  remove: `DELETE FROM event_outbox WHERE endpoint = $1 AND seq = ANY($2::bigint[])`,
  attempted: `UPDATE event_outbox SET attempts = attempts + 1 WHERE endpoint = $1 AND seq = ANY($2::bigint[])`,
  succeeded: `
    UPDATE event_endpoints SET failures = 0, retry_at = 0, last_error = NULL,
      lease_owner = CASE WHEN $2::text IS NULL OR lease_owner = $2 THEN NULL ELSE lease_owner END,
      lease_until = CASE WHEN $2::text IS NULL OR lease_owner = $2 THEN 0 ELSE lease_until END
    WHERE name = $1`,
  failed: `
    UPDATE event_endpoints SET failures = failures + 1, retry_at = $1, last_error = $2,
      lease_owner = CASE WHEN lease_owner = $4 THEN NULL ELSE lease_owner END,
      lease_until = CASE WHEN lease_owner = $4 THEN 0 ELSE lease_until END
    WHERE name = $3`,
  stats: `
    SELECT n.name, coalesce(e.failures, 0) AS failures, e.last_error, coalesce(e.retry_at, 0) AS retry_at,
      (SELECT count(*) FROM event_outbox o WHERE o.endpoint = n.name AND o.state = ${PENDING}) AS pending,
      (SELECT count(*) FROM event_outbox o WHERE o.endpoint = n.name AND o.state = ${DEAD}) AS dead,
      (SELECT min(created_at) FROM event_outbox o WHERE o.endpoint = n.name AND o.state = ${PENDING}) AS oldest
    FROM (SELECT name FROM event_endpoints UNION SELECT DISTINCT endpoint FROM event_outbox) n
    LEFT JOIN event_endpoints e ON e.name = n.name ORDER BY n.name`,
  replay: `UPDATE event_outbox SET state = ${PENDING}, created_at = $1, attempts = 0 WHERE endpoint = $2 AND state = ${DEAD}`,
} as const;

type Name = keyof typeof SQL;
const q = <R extends QueryResultRow = Row>(x: RawExec, name: Name, values: unknown[]) => x.raw<R>(`berth_outbox_${name}`, SQL[name], values);

export async function insertEvent(x: RawExec, options: OutboxOptions | undefined, event: OutboxEvent): Promise<void> {
  const rows = outboxInserts(options, event);
  if (rows.length === 0) return;
  const r = rows[0]!;
  await q(x, 'repositoryLock', [event.repository]);
  await q(x, 'insert', [rows.map((e) => e.endpoint), r.id, r.repository, r.action, r.payload]);
}

/** The tags on a manifest (deleting it removes them: each is a tag delete event, as the reference reports). */
export async function tagsOf(x: RawExec, manifestId: number): Promise<string[]> {
  return (await q(x, 'tagsOf', [manifestId])).rows.map((r) => r.name as string);
}

/** Whether the endpoint has pending events: a read, so an idle endpoint's polls lock nothing. */
export async function anyPending(x: RawExec, endpoint: string): Promise<boolean> {
  return ((await q(x, 'anyPending', [endpoint])).rowCount ?? 0) > 0;
}

export async function claimEvents(x: RawExec, endpoint: string, owner: string, now: number, c: EventClaim): Promise<OutboxRow[] | undefined> {
  await q(x, 'ensureEndpoint', [endpoint]);
  const ep = (await q(x, 'lockEndpoint', [endpoint])).rows[0]!;
  if (ep.lease_owner !== null && ep.lease_owner !== owner && Number(ep.lease_until) > now) return undefined;
  if (Number(ep.retry_at) > now) return undefined;
  await q(x, 'deadByAge', [endpoint, now - c.maxAge]);
  await q(x, 'deadByCount', [endpoint, c.maxCount]);
  const rows = (await q(x, 'pending', [endpoint, c.limit])).rows.map(toOutboxRow);
  if (rows.length === 0) await q(x, 'release', [endpoint]);
  else await q(x, 'lease', [owner, now + c.leaseMs, endpoint]);
  return rows;
}

export async function ackEvents(x: RawExec, endpoint: string, owner: string, seqs: number[]): Promise<void> {
  await q(x, 'remove', [endpoint, seqs]);
  await q(x, 'succeeded', [endpoint, owner]);
}

export async function failEvents(x: RawExec, endpoint: string, owner: string, seqs: number[], retryAt: number, error: string): Promise<void> {
  await q(x, 'attempted', [endpoint, seqs]);
  await q(x, 'failed', [retryAt, error.slice(0, 500), endpoint, owner]);
}

export async function eventStats(x: RawExec): Promise<EndpointEventStats[]> {
  return (await q(x, 'stats', [])).rows.map((r) => ({
    endpoint: r.name as string,
    pending: Number(r.pending ?? 0),
    deadLettered: Number(r.dead ?? 0),
    failures: Number(r.failures ?? 0),
    ...(r.last_error ? { lastError: r.last_error as string } : {}),
    ...(Number(r.retry_at) ? { retryAt: Number(r.retry_at) } : {}),
    ...(r.oldest !== null && r.oldest !== undefined ? { oldestPending: Number(r.oldest) } : {}),
  }));
}

export async function replayEvents(x: RawExec, endpoint: string, now: number): Promise<number> {
  const n = (await q(x, 'replay', [now, endpoint])).rowCount ?? 0;
  await q(x, 'succeeded', [endpoint, null]);
  return n;
}
