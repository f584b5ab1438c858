/**
 * Query plans of the metadata stores' prepared statements, for tests that
 * keep request-path statements on indexes (and for bench/plans/, which prints
 * them on a large database).
 */
import type Database from 'better-sqlite3';
import type pg from 'pg';

/** SQLite's EXPLAIN QUERY PLAN lines for a statement, its parameters left NULL (the plan does not depend on them). */
export function sqlitePlan(db: Database.Database, sql: string): string[] {
  const explain = db.prepare(`EXPLAIN QUERY PLAN ${sql}`);
  const named = [...sql.matchAll(/@(\w+)/g)].map((m) => m[1]!);
  const rows = (): unknown[] => {
    if (named.length > 0) return explain.all(Object.fromEntries(named.map((n) => [n, null])));
    for (let n = 0; n < 20; n++) {
      try {
        return explain.all(...Array<null>(n).fill(null));
      } catch (e) {
        if (!/Too few|Too many/.test((e as Error).message)) throw e;
      }
    }
    throw new Error(`cannot bind ${sql}`);
  };
  return (rows() as { detail: string }[]).map((r) => r.detail);
}

/** Plan lines that read a whole table or index, or sort into a temporary b-tree. */
export function sqliteCostly(plan: string[]): string[] {
  return plan.filter((d) => (/^SCAN /.test(d) && !/^SCAN CONSTANT ROW/.test(d)) || /TEMP B-TREE/.test(d));
}

/** The generic plan PostgreSQL settles on for a named prepared statement (parameters NULL). */
export async function postgresPlan(client: pg.Client | pg.PoolClient, name: string, sql: string): Promise<string[]> {
  const params = Math.max(0, ...[...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  await client.query(`PREPARE plan_${name} AS ${sql}`);
  try {
    const args = params ? `(${Array(params).fill('NULL').join(', ')})` : '';
    const r = await client.query(`EXPLAIN (COSTS OFF) EXECUTE plan_${name}${args}`);
    return r.rows.map((x: Record<string, string>) => x['QUERY PLAN']!);
  } finally {
    await client.query(`DEALLOCATE plan_${name}`);
  }
}

/**
 * Plan lines that read a whole table or index, or sort. Run with
 * enable_seqscan and enable_sort off, so that what remains has no index to
 * use, whatever the statistics of a test's tiny tables say.
 */
export function postgresCostly(plan: string[]): string[] {
  const bad: string[] = [];
  plan.forEach((line, i) => {
    if (!/Seq Scan|Sort\b|Index (Only )?Scan/.test(line) || /Sort (Key|Method)/.test(line)) return;
    const next = `${plan[i + 1] ?? ''}\n${plan[i + 2] ?? ''}`;
    if (/Index (Only )?Scan/.test(line) && /Index Cond/.test(next)) return;
    bad.push(line.trim());
  });
  return bad;
}
