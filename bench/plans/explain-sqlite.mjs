#!/usr/bin/env node
/**
 * EXPLAIN QUERY PLAN for every prepared statement of the SQLite store (its
 * own, the console's and the outbox's). Prints each statement whose plan
 * scans a table or an index (SCAN) or sorts (TEMP B-TREE), or with --all
 * every plan. Without ANALYZE statistics (Berth never gathers them) SQLite
 * plans from the schema alone, so the plans are those of any database size.
 *
 *   node bench/plans/explain-sqlite.mjs <file.db> [--all]
 */
import { SqliteMetadataStore } from '../../dist/src/metadata/sqlite/sqlite-store.js';
import { SqliteOutbox } from '../../dist/src/metadata/sqlite/outbox.js';

const [file, flag] = process.argv.slice(2);
const store = new SqliteMetadataStore(file ?? ':memory:');
const groups = {
  store: store.stmt,
  console: store.cq,
  outbox: new SqliteOutbox(store.db, { endpoints: [] }).s,
};

export function planOf(db, sql) {
  const explain = db.prepare(`EXPLAIN QUERY PLAN ${sql}`);
  // Parameters are left NULL: the plan does not depend on their values.
  const named = [...sql.matchAll(/@(\w+)/g)].map((m) => m[1]);
  if (named.length > 0) return explain.all(Object.fromEntries(named.map((n) => [n, null])));
  for (let n = 0; n < 20; n++) {
    try {
      return explain.all(...Array(n).fill(null));
    } catch (e) {
      if (!/Too few|Too many/.test(e.message)) throw e;
    }
  }
  throw new Error(`cannot bind ${sql}`);
}

let flagged = 0;
for (const [group, statements] of Object.entries(groups)) {
  for (const [name, st] of Object.entries(statements)) {
    if (typeof st?.source !== 'string' || /^\s*(SAVEPOINT|RELEASE|ROLLBACK)/.test(st.source)) continue;
    const plan = planOf(store.db, st.source).map((r) => r.detail);
    const bad = plan.filter((d) => /^SCAN |TEMP B-TREE/.test(d));
    if (bad.length > 0) flagged++;
    if (bad.length > 0 || flag === '--all') console.log(`${bad.length ? '!!' : 'ok'} ${group}.${name}\n    ${plan.join('\n    ')}`);
  }
}
console.log(`${flagged} statements scan or sort`);
store.db.close();
