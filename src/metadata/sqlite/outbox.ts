/**
 * The SQLite store's event outbox. Every function runs inside the caller's
 * write transaction: SQLite serializes writers, so rows are numbered in
 * commit order and a claim sees every event committed before it.
 */
import type Database from 'better-sqlite3';
import type { EndpointEventStats, EventClaim, OutboxEvent, OutboxRow } from '../store.js';
import { outboxInserts, toOutboxRow, type OutboxOptions } from '../outbox.js';
import type { Row } from '../records.js';

const PENDING = 0;
const DEAD = 1;

export class SqliteOutbox {
  private readonly s: ReturnType<typeof prepare>;

  constructor(db: Database.Database, readonly options: OutboxOptions) {
    this.s = prepare(db);
  }

  /** Inside a transaction. */
  insert(event: OutboxEvent, now: number): void {
    for (const r of outboxInserts(this.options, event)) this.s.insert.run(r.endpoint, r.id, now, r.repository, r.action, r.payload);
  }

  /** The tags on a manifest (deleting it removes them: each is a tag delete event, as the reference reports). */
  tagsOf(manifestId: number): string[] {
    return this.s.tagsOf.all(manifestId) as string[];
  }

  /** Whether the endpoint has pending events: a read, so an idle endpoint's polls write nothing. */
  anyPending(endpoint: string): boolean {
    return this.s.anyPending.get(endpoint) !== undefined;
  }

  /** Inside a transaction. */
  claim(endpoint: string, owner: string, now: number, c: EventClaim): OutboxRow[] | undefined {
    this.s.ensureEndpoint.run(endpoint);
    const ep = this.s.endpoint.get(endpoint) as Row;
    if (ep.lease_owner !== null && ep.lease_owner !== owner && (ep.lease_until as number) > now) return undefined;
    if ((ep.retry_at as number) > now) return undefined;
    this.s.deadByAge.run(endpoint, now - c.maxAge);
    this.s.deadByCount.run(endpoint, endpoint, c.maxCount);
    const rows = (this.s.pending.all(endpoint, c.limit) as Row[]).map(toOutboxRow);
    if (rows.length === 0) {
      this.s.release.run(endpoint);
      return rows;
    }
    this.s.lease.run(owner, now + c.leaseMs, endpoint);
    return rows;
  }

  ack(endpoint: string, owner: string, seqs: number[]): void {
    for (const seq of seqs) this.s.remove.run(endpoint, seq);
    this.s.succeeded.run({ endpoint, owner });
  }

  fail(endpoint: string, owner: string, seqs: number[], retryAt: number, error: string): void {
    for (const seq of seqs) this.s.attempted.run(endpoint, seq);
    this.s.failed.run({ retryAt, error: error.slice(0, 500), endpoint, owner });
  }

  stats(): EndpointEventStats[] {
    return (this.s.stats.all() as Row[]).map((r) => ({
      endpoint: r.name as string,
      pending: Number(r.pending ?? 0),
      deadLettered: Number(r.dead ?? 0),
      failures: Number(r.failures ?? 0),
      ...(r.last_error ? { lastError: r.last_error as string } : {}),
      ...(r.retry_at ? { retryAt: Number(r.retry_at) } : {}),
      ...(r.oldest !== null && r.oldest !== undefined ? { oldestPending: Number(r.oldest) } : {}),
    }));
  }

  replay(endpoint: string, now: number): number {
    const n = this.s.replay.run(now, endpoint).changes;
    this.s.succeeded.run({ endpoint, owner: null });
    return n;
  }
}

function prepare(db: Database.Database) {
  const p = (sql: string) => db.prepare(sql);
  return {
    anyPending: p(`SELECT 1 FROM event_outbox WHERE endpoint = ? AND state = ${PENDING} LIMIT 1`),
    tagsOf: p(`SELECT name FROM tags WHERE manifest_id = ? ORDER BY name`).pluck(),
    insert: p(`INSERT INTO event_outbox (endpoint, event_id, created_at, repository, action, payload) VALUES (?, ?, ?, ?, ?, ?)`),
    ensureEndpoint: p(`INSERT INTO event_endpoints (name) VALUES (?) ON CONFLICT (name) DO NOTHING`),
    endpoint: p(`SELECT lease_owner, lease_until, retry_at FROM event_endpoints WHERE name = ?`),
    deadByAge: p(`UPDATE event_outbox SET state = ${DEAD} WHERE endpoint = ? AND state = ${PENDING} AND created_at < ?`),
    deadByCount: p(`
      UPDATE event_outbox SET state = ${DEAD} WHERE endpoint = ? AND state = ${PENDING} AND seq < (
        SELECT min(seq) FROM (SELECT seq FROM event_outbox WHERE endpoint = ? AND state = ${PENDING} ORDER BY seq DESC LIMIT ?))`),
    pending: p(`
      SELECT seq, event_id, created_at, attempts, payload FROM event_outbox
      WHERE endpoint = ? AND state = ${PENDING} ORDER BY seq LIMIT ?`),
    lease: p(`UPDATE event_endpoints SET lease_owner = ?, lease_until = ? WHERE name = ?`),
    release: p(`UPDATE event_endpoints SET lease_owner = NULL, lease_until = 0 WHERE name = ?`),
    remove: p(`DELETE FROM event_outbox WHERE endpoint = ? AND seq = ?`),
    attempted: p(`UPDATE event_outbox SET attempts = attempts + 1 WHERE endpoint = ? AND seq = ?`),
    // The owner check is not needed for safety (rows are removed by seq), only
    // to leave a lease another node has taken since alone.
    succeeded: p(`
      UPDATE event_endpoints SET failures = 0, retry_at = 0, last_error = NULL,
        lease_owner = CASE WHEN lease_owner IS @owner OR @owner IS NULL THEN NULL ELSE lease_owner END,
        lease_until = CASE WHEN lease_owner IS @owner OR @owner IS NULL THEN 0 ELSE lease_until END
      WHERE name = @endpoint`),
    failed: p(`
      UPDATE event_endpoints SET failures = failures + 1, retry_at = @retryAt, last_error = @error,
        lease_owner = CASE WHEN lease_owner IS @owner THEN NULL ELSE lease_owner END,
        lease_until = CASE WHEN lease_owner IS @owner THEN 0 ELSE lease_until END
      WHERE name = @endpoint`),
    stats: p(`
      SELECT e.name, e.failures, e.last_error, e.retry_at,
        (SELECT count(*) FROM event_outbox o WHERE o.endpoint = e.name AND o.state = ${PENDING}) AS pending,
        (SELECT count(*) FROM event_outbox o WHERE o.endpoint = e.name AND o.state = ${DEAD}) AS dead,
        (SELECT min(created_at) FROM event_outbox o WHERE o.endpoint = e.name AND o.state = ${PENDING}) AS oldest
      FROM (SELECT name, failures, last_error, retry_at FROM event_endpoints
            UNION SELECT DISTINCT endpoint, 0, NULL, 0 FROM event_outbox
              WHERE endpoint NOT IN (SELECT name FROM event_endpoints)) e
      ORDER BY e.name`),
    replay: p(`UPDATE event_outbox SET state = ${PENDING}, created_at = ?, attempts = 0 WHERE endpoint = ? AND state = ${DEAD}`),
  };
}
