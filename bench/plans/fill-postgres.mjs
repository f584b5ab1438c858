#!/usr/bin/env node
/**
 * The PostgreSQL twin of fill-sqlite.mjs: the same synthetic shape, generated
 * inside the server with generate_series (the real migrations create the
 * schema first). For query plans only.
 *
 *   node bench/plans/fill-postgres.mjs <url> [manifests=1000000] [repos=1000] [bigTags=100000]
 */
import pg from 'pg';
import { migrate } from '../../dist/src/metadata/postgres/migrations.js';

const [url, manifestsArg = '1000000', reposArg = '1000', bigArg = '100000'] = process.argv.slice(2);
if (!url) throw new Error('usage: fill-postgres.mjs <url> [manifests] [repos] [bigTags]');
const MANIFESTS = Number(manifestsArg);
const REPOS = Number(reposArg);
const BIG = Math.min(Number(bigArg), MANIFESTS);
const PER_REPO = Math.floor((MANIFESTS - BIG) / Math.max(1, REPOS - 1));
const NOW = Date.UTC(2026, 0, 1);

const pool = new pg.Pool({ connectionString: url, max: 1 });
await migrate(pool);
const q = async (label, sql, values) => {
  const t = Date.now();
  await pool.query(sql, values);
  process.stderr.write(`${label}: ${Date.now() - t} ms\n`);
};
const dg = (kind, n) => `'sha256:' || encode(sha256(convert_to('${kind}:' || ${n}, 'UTF8')), 'hex')`;

await q('session', `SET synchronous_commit = off`);
// No triggers or foreign-key checks while filling: a per-row trigger bumping one repository's row
// 100,000 times in one transaction grows a chain of row versions that every update walks.
await q('replica', `SET session_replication_role = replica`);
await q('repositories', `
  INSERT INTO repositories (name, created_at) OVERRIDING SYSTEM VALUE
  SELECT CASE WHEN r = 0 THEN 'big/tags' ELSE 'team-' || lpad((r % 50)::text, 2, '0') || '/app-' || lpad(r::text, 4, '0') END, $1::bigint
  FROM generate_series(0, $2 - 1) r ORDER BY r`, [NOW, REPOS]);
// Image n: repository index (0 for the first BIG images), tag, digests.
await q('images', `
  CREATE UNLOGGED TABLE synth_images AS
  SELECT n, CASE WHEN n < $1 THEN 1 ELSE 2 + (n - $1) / $2 END AS repo,
    CASE WHEN n < $1 THEN 'v' || lpad(n::text, 6, '0') ELSE 'build-' || ((n - $1) % $2) END AS tag,
    ${dg('manifest', 'n')} AS md, ${dg('config', 'n')} AS config, ${dg('layer', 'n')} AS layer, ${dg('base', 'n % 100')} AS base
  FROM generate_series(0, $1 + $2 * ($3 - 1) - 1) n`, [BIG, PER_REPO, REPOS]);
await q('blobs', `
  INSERT INTO blobs (digest, size, storage_key, state, last_seen)
  SELECT d, sz, replace(d, ':', '/'), 0, $1::bigint FROM (
    SELECT config AS d, 600 AS sz FROM synth_images UNION ALL SELECT layer, 1200 FROM synth_images
    UNION ALL SELECT DISTINCT base, 3000000 FROM synth_images) x`, [NOW]);
await q('links', `
  INSERT INTO repository_blobs (repository_id, digest, last_seen)
  SELECT DISTINCT repo, d, $1::bigint FROM synth_images, LATERAL (VALUES (config), (layer), (base)) v(d)`, [NOW]);
await q('manifests', `
  INSERT INTO manifests (repository_id, digest, media_type, size, body, created_at, untagged_at)
  SELECT repo, md, 'application/vnd.oci.image.manifest.v1+json', length(b), convert_to(b, 'UTF8'), $1::bigint + n, NULL FROM (
    SELECT n, repo, md, json_build_object('schemaVersion', 2, 'mediaType', 'application/vnd.oci.image.manifest.v1+json',
      'config', json_build_object('mediaType', 'application/vnd.oci.image.config.v1+json', 'digest', config, 'size', 600),
      'layers', json_build_array(json_build_object('mediaType', 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest', base, 'size', 3000000),
                                 json_build_object('mediaType', 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest', layer, 'size', 1200)))::text AS b
    FROM synth_images ORDER BY n) x`, [NOW]);
await q('references', `
  INSERT INTO manifest_blobs (manifest_id, digest)
  SELECT m.id, v.d FROM synth_images i JOIN manifests m ON m.repository_id = i.repo AND m.digest = i.md,
    LATERAL (VALUES (i.config), (i.layer), (i.base)) v(d) ON CONFLICT DO NOTHING`);
await q('tags', `
  INSERT INTO tags (repository_id, name, manifest_id, updated_at)
  SELECT i.repo, i.tag, m.id, $1::bigint + i.n FROM synth_images i JOIN manifests m ON m.repository_id = i.repo AND m.digest = i.md`, [NOW]);
await q('drop', `DROP TABLE synth_images`);
await q('vacuum analyze', `VACUUM ANALYZE`);
await pool.end();
