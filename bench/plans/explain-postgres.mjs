#!/usr/bin/env node
/**
 * The generic plan (the one a named prepared statement settles on) of every
 * statement of the PostgreSQL store, its console queries and its outbox.
 * Prints each plan with a sequential scan, a sort, or an index scan with no
 * condition (a full index walk), or with --all every plan. Run it on a
 * database filled by fill-postgres.mjs: PostgreSQL plans from statistics, so
 * a small database can get different plans.
 *
 * With --no-seqscan the planner avoids sequential scans and sorts wherever an
 * index can stand in (enable_seqscan, enable_sort off): what is still
 * flagged then has no index to use, whatever the table sizes.
 *
 *   node bench/plans/explain-postgres.mjs <url> [--all] [--no-seqscan]
 */
import pg from 'pg';
import { SQL } from '../../dist/src/metadata/postgres/postgres-store.js';
import { SQL as OUTBOX_SQL } from '../../dist/src/metadata/postgres/outbox.js';

const [url, ...flags] = process.argv.slice(2);
const flag = flags.includes('--all') ? '--all' : undefined;
const client = new pg.Client({ connectionString: url });
await client.connect();
await client.query('SET plan_cache_mode = force_generic_plan');
if (flags.includes('--no-seqscan')) await client.query('SET enable_seqscan = off; SET enable_sort = off');

export async function genericPlan(c, name, sql) {
  const params = Math.max(0, ...[...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  await c.query(`PREPARE plan_${name} AS ${sql}`);
  try {
    const args = params ? `(${Array(params).fill('NULL').join(', ')})` : '';
    const r = await c.query(`EXPLAIN (COSTS OFF) EXECUTE plan_${name}${args}`);
    return r.rows.map((x) => x['QUERY PLAN']);
  } finally {
    await c.query(`DEALLOCATE plan_${name}`);
  }
}

/** Lines that read a whole table or index, or sort. */
export function costly(plan) {
  const bad = [];
  plan.forEach((line, i) => {
    if (/Seq Scan|Sort\b|Index (Only )?Scan/.test(line)) {
      if (/Index (Only )?Scan/.test(line) && /(Index Cond|Filter: \(.*= \$)/.test(plan[i + 1] ?? '')) return;
      if (/Index (Only )?Scan/.test(line) && /Index Cond/.test(plan[i + 2] ?? '')) return;
      bad.push(line.trim());
    }
  });
  return bad;
}

let flagged = 0;
for (const [group, statements] of [['store', SQL], ['outbox', OUTBOX_SQL]]) {
  for (const [name, sql] of Object.entries(statements)) {
    const plan = await genericPlan(client, name, sql);
    const bad = costly(plan);
    if (bad.length) flagged++;
    if (bad.length || flag === '--all') console.log(`${bad.length ? '!!' : 'ok'} ${group}.${name}\n    ${plan.join('\n    ')}`);
  }
}
console.log(`${flagged} statements scan or sort`);
await client.end();
