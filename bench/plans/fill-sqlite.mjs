#!/usr/bin/env node
/**
 * Fills a SQLite metadata database with synthetic rows, straight through SQL
 * on the real schema (dist/src/metadata/sqlite/schema.js), for looking at
 * query plans and startup/memory on a large registry. Not a benchmark loader:
 * no blob bytes exist, and nothing goes through the store's operations.
 *
 *   node bench/plans/fill-sqlite.mjs <file.db> [manifests=1000000] [repos=1000] [bigTags=100000]
 *
 * Shape: repository 0 ("big/tags") holds `bigTags` manifests, each tagged;
 * the others share the rest, one tag per manifest. Each manifest references a
 * config and a layer of its own plus one of 100 shared base layers (so ~2
 * blobs per image, 3 references). Digests are sha256 of a counter, so keys
 * land all over the indexes as real ones do.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { migrate } from '../../dist/src/metadata/sqlite/sqlite-store.js';

const [file, manifestsArg = '1000000', reposArg = '1000', bigArg = '100000'] = process.argv.slice(2);
if (!file) throw new Error('usage: fill-sqlite.mjs <file.db> [manifests] [repos] [bigTags]');
const MANIFESTS = Number(manifestsArg);
const REPOS = Number(reposArg);
const BIG = Math.min(Number(bigArg), MANIFESTS);
const NOW = Date.UTC(2026, 0, 1);

const digest = (kind, n) => 'sha256:' + createHash('sha256').update(`${kind}:${n}`).digest('hex');
const db = new Database(file);
db.pragma('synchronous = OFF');
db.pragma('cache_size = -400000');
migrate(db);
// Secondary indexes are built once at the end (a sort), not row by row.
const indexes = db.prepare(`SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL`).all();
for (const i of indexes) db.exec(`DROP INDEX ${i.name}`);

const s = {
  repo: db.prepare('INSERT INTO repositories (id, name, created_at) VALUES (?, ?, ?)'),
  blob: db.prepare('INSERT OR IGNORE INTO blobs (digest, size, storage_key, state, last_seen) VALUES (?, ?, ?, 0, ?)'),
  link: db.prepare('INSERT OR IGNORE INTO repository_blobs (repository_id, digest, last_seen) VALUES (?, ?, ?)'),
  manifest: db.prepare(`INSERT INTO manifests (id, repository_id, digest, media_type, size, body, created_at, untagged_at)
    VALUES (?, ?, ?, 'application/vnd.oci.image.manifest.v1+json', ?, ?, ?, NULL)`),
  ref: db.prepare('INSERT OR IGNORE INTO manifest_blobs (manifest_id, digest) VALUES (?, ?)'),
  tag: db.prepare('INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES (?, ?, ?, ?)'),
};

const repoName = (r) => (r === 0 ? 'big/tags' : `team-${String(r % 50).padStart(2, '0')}/app-${String(r).padStart(4, '0')}`);
const BASES = Array.from({ length: 100 }, (_, i) => digest('base', i));

const started = Date.now();
db.transaction(() => {
  for (let r = 0; r < REPOS; r++) s.repo.run(r + 1, repoName(r), NOW);
  for (const b of BASES) s.blob.run(b, 3_000_000, b.replace(':', '/'), NOW);
})();

const perRepo = Math.floor((MANIFESTS - BIG) / Math.max(1, REPOS - 1));
let id = 0;
const BATCH = 20000;
let batch = [];
const flush = db.transaction((items) => {
  for (const { repo, n, tag } of items) {
    const config = digest('config', n);
    const layer = digest('layer', n);
    const base = BASES[n % BASES.length];
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 600 },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: base, size: 3_000_000 },
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer, size: 1200 },
      ],
    });
    const md = digest('manifest', n);
    id++;
    s.blob.run(config, 600, config.replace(':', '/'), NOW);
    s.blob.run(layer, 1200, layer.replace(':', '/'), NOW);
    for (const d of [config, base, layer]) s.link.run(repo, d, NOW);
    s.manifest.run(id, repo, md, body.length, Buffer.from(body), NOW + n);
    for (const d of [config, base, layer]) s.ref.run(id, d);
    s.tag.run(repo, tag, id, NOW + n);
  }
});
let n = 0;
const push = (item) => {
  batch.push(item);
  if (batch.length >= BATCH) {
    flush(batch);
    batch = [];
    process.stderr.write(`\r${n} manifests, ${Math.round((Date.now() - started) / 1000)} s`);
  }
};
for (let i = 0; i < BIG; i++) push({ repo: 1, n: n++, tag: `v${String(i).padStart(6, '0')}` });
for (let r = 1; r < REPOS; r++) for (let i = 0; i < perRepo; i++) push({ repo: r + 1, n: n++, tag: `build-${i}` });
flush(batch);
process.stderr.write('\nindexing\n');
for (const i of indexes) db.exec(i.sql);
db.pragma('journal_mode = WAL');
// No ANALYZE: Berth never runs it, so plans here are the ones a real database gets.
db.pragma('wal_checkpoint(TRUNCATE)');
db.close();
process.stderr.write(`\n${n} manifests in ${REPOS} repositories, ${Math.round((Date.now() - started) / 1000)} s\n`);
