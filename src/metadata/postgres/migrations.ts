/**
 * PostgreSQL schema, as numbered migrations applied in order and recorded in
 * `berth_schema_migrations`. Applying them holds an advisory lock, so several
 * nodes starting at once apply each migration exactly once; a database whose
 * schema is newer than this code is refused, so an old binary never writes
 * to a schema it does not understand.
 *
 * The tables mirror the SQLite schema (src/metadata/sqlite/schema.ts) so that
 * both stores pass one test suite. Times are milliseconds since the epoch in
 * bigint columns; names are compared byte-wise (COLLATE "C") so that tag and
 * repository listings sort in lexical byte order, as the spec asks.
 */
import type { ClientBase, Pool } from 'pg';

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    description: 'initial schema',
    sql: `
  CREATE TABLE repositories (
    -- An identity is never reused, so (id, tags_version) names one state of one repository's tags.
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text COLLATE "C" NOT NULL UNIQUE,
    created_at    bigint NOT NULL,
    tags_version  bigint NOT NULL DEFAULT 0
  );

  -- state 0 = live, 1 = being deleted by GC (treated as absent by every reader).
  CREATE TABLE blobs (
    digest       text COLLATE "C" PRIMARY KEY,
    size         bigint NOT NULL,
    storage_key  text NOT NULL UNIQUE,
    state        smallint NOT NULL DEFAULT 0,
    last_seen    bigint NOT NULL
  );
  CREATE INDEX blobs_deleting ON blobs(digest) WHERE state = 1;

  CREATE TABLE repository_blobs (
    repository_id  bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         text COLLATE "C" NOT NULL,
    last_seen      bigint NOT NULL,
    PRIMARY KEY (repository_id, digest)
  );
  CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);

  CREATE TABLE manifests (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository_id  bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         text COLLATE "C" NOT NULL,
    media_type     text NOT NULL,
    artifact_type  text,
    subject        text COLLATE "C",
    annotations    text,
    size           bigint NOT NULL,
    body           bytea NOT NULL,
    created_at     bigint NOT NULL,
    -- Set while the manifest has no tag and no parent index: a GC candidate since then.
    untagged_at    bigint,
    UNIQUE (repository_id, digest)
  );
  CREATE INDEX manifests_by_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;
  CREATE INDEX manifests_untagged ON manifests(untagged_at) WHERE untagged_at IS NOT NULL;

  CREATE TABLE manifest_blobs (
    manifest_id  bigint NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    digest       text COLLATE "C" NOT NULL,
    PRIMARY KEY (manifest_id, digest)
  );
  CREATE INDEX manifest_blobs_by_digest ON manifest_blobs(digest);

  CREATE TABLE manifest_children (
    manifest_id    bigint NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    repository_id  bigint NOT NULL,
    child_digest   text COLLATE "C" NOT NULL,
    PRIMARY KEY (manifest_id, child_digest)
  );
  CREATE INDEX manifest_children_by_child ON manifest_children(repository_id, child_digest);

  CREATE TABLE tags (
    repository_id  bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name           text COLLATE "C" NOT NULL,
    manifest_id    bigint NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    updated_at     bigint NOT NULL,
    PRIMARY KEY (repository_id, name)
  );
  CREATE INDEX tags_by_manifest ON tags(manifest_id);

  -- Every change to a repository's tags (including deletions cascading from a
  -- manifest) bumps its tags_version in the same transaction. The UPDATE also
  -- row-locks the repository, so concurrent tag changes of one repository
  -- each get their own version.
  CREATE FUNCTION berth_bump_tags_version() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      UPDATE repositories SET tags_version = tags_version + 1 WHERE id = OLD.repository_id;
    ELSE
      UPDATE repositories SET tags_version = tags_version + 1 WHERE id = NEW.repository_id;
    END IF;
    RETURN NULL;
  END
  $fn$;
  CREATE TRIGGER tags_changed AFTER INSERT OR UPDATE OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION berth_bump_tags_version();

  CREATE TABLE uploads (
    id          text PRIMARY KEY,
    repository  text NOT NULL,
    "offset"    bigint NOT NULL,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    -- The digest state travels with the upload when its bytes cannot be read back (S3).
    hash_state  bytea
  );
  CREATE INDEX uploads_by_update ON uploads(updated_at);

  -- Blobs whose liveness may have changed since 'since': the only ones GC examines.
  CREATE TABLE gc_blob_queue (
    digest  text COLLATE "C" PRIMARY KEY,
    since   bigint NOT NULL
  );
  CREATE INDEX gc_blob_queue_by_since ON gc_blob_queue(since);

  CREATE TABLE lifecycle_runs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind               text NOT NULL,
    trigger            text NOT NULL,
    started_at         bigint NOT NULL,
    duration_ms        bigint NOT NULL,
    manifests_deleted  bigint NOT NULL DEFAULT 0,
    blobs_deleted      bigint NOT NULL DEFAULT 0,
    bytes_reclaimed    bigint NOT NULL DEFAULT 0,
    uploads_purged     bigint NOT NULL DEFAULT 0,
    problems           bigint NOT NULL DEFAULT 0
  );
  `,
  },
  {
    version: 2,
    description: 'upload sessions bound to their owner',
    sql: `
  -- With auth on, an upload session belongs to the principal that opened it ('' for anonymous),
  -- and the number of open sessions per principal is capped.
  ALTER TABLE uploads ADD COLUMN owner text;
  CREATE INDEX uploads_by_owner ON uploads(owner) WHERE owner IS NOT NULL;
  `,
  },
  {
    version: 3,
    description: 'commit claims and fsck orphan candidates',
    sql: `
  -- A commit claims its upload before storage is touched (one winner) and
  -- names the key it writes, so fsck never takes that object for an orphan.
  ALTER TABLE uploads ADD COLUMN committing_key text;
  CREATE INDEX uploads_by_committing_key ON uploads(committing_key) WHERE committing_key IS NOT NULL;
  -- fsck's orphan candidates: removed only when a later run still finds them unknown.
  -- key: 'blob:<storage key>' or 'upload:<upload id>'.
  CREATE TABLE fsck_candidates (
    key         text PRIMARY KEY,
    first_seen  bigint NOT NULL,
    last_seen   bigint NOT NULL
  );
  `,
  },
  {
    version: 4,
    description: 'manifest pull counts',
    sql: `
  -- Manifest GETs, counted in memory and added here in batches (src/console/pulls.ts); they go with their manifest.
  CREATE TABLE manifest_pulls (
    manifest_id  bigint PRIMARY KEY REFERENCES manifests(id) ON DELETE CASCADE,
    count        bigint NOT NULL,
    last_pulled  bigint NOT NULL
  );
  `,
  },
  {
    version: 5,
    description: 'event outbox',
    sql: `
  -- The event outbox (src/events/): one row per event and endpoint, written in
  -- the transaction of the change it reports; removed once delivered.
  -- state 0 = pending, 1 = dead-lettered.
  CREATE TABLE event_outbox (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint    text NOT NULL,
    event_id    text NOT NULL,
    created_at  bigint NOT NULL,
    repository  text NOT NULL,
    action      text NOT NULL,
    payload     text NOT NULL,
    state       smallint NOT NULL DEFAULT 0,
    attempts    integer NOT NULL DEFAULT 0
  );
  CREATE INDEX event_outbox_by_endpoint ON event_outbox(endpoint, state, seq);
  CREATE TABLE event_endpoints (
    name         text PRIMARY KEY,
    lease_owner  text,
    lease_until  bigint NOT NULL DEFAULT 0,
    retry_at     bigint NOT NULL DEFAULT 0,
    failures     integer NOT NULL DEFAULT 0,
    last_error   text
  );
  `,
  },
  {
    version: 6,
    description: 'storage quotas (namespaces, members, usage kept by triggers); tag pull times',
    sql: `
  -- A namespace is the set of repositories a quota rule matches. Its usage counts each blob
  -- linked in any of them once, maintained by the triggers below in the transaction that links
  -- or unlinks (every path: commits, mounts, unlinks, GC, fsck). The namespace row is locked
  -- first, so concurrent pushes into one namespace add up exactly, one after the other.
  CREATE TABLE quota_namespaces (
    name   text COLLATE "C" PRIMARY KEY,
    bytes  bigint NOT NULL DEFAULT 0
  );
  CREATE TABLE quota_members (
    repository_id  bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    namespace      text COLLATE "C" NOT NULL REFERENCES quota_namespaces(name) ON DELETE CASCADE,
    PRIMARY KEY (repository_id, namespace)
  );
  CREATE INDEX quota_members_by_namespace ON quota_members(namespace);
  CREATE TABLE quota_blobs (
    namespace  text COLLATE "C" NOT NULL REFERENCES quota_namespaces(name) ON DELETE CASCADE,
    digest     text COLLATE "C" NOT NULL,
    size       bigint NOT NULL,
    links      bigint NOT NULL,
    PRIMARY KEY (namespace, digest)
  );
  CREATE INDEX quota_blobs_by_digest ON quota_blobs(digest);

  CREATE FUNCTION berth_quota_link() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE ns text; n bigint; sz bigint;
  BEGIN
    FOR ns IN SELECT namespace FROM quota_members WHERE repository_id = NEW.repository_id ORDER BY namespace LOOP
      PERFORM 1 FROM quota_namespaces WHERE name = ns FOR UPDATE;
      SELECT size INTO sz FROM blobs WHERE digest = NEW.digest;
      INSERT INTO quota_blobs AS q (namespace, digest, size, links) VALUES (ns, NEW.digest, coalesce(sz, 0), 1)
      ON CONFLICT (namespace, digest) DO UPDATE SET links = q.links + 1 RETURNING q.links INTO n;
      IF n = 1 THEN UPDATE quota_namespaces SET bytes = bytes + coalesce(sz, 0) WHERE name = ns; END IF;
    END LOOP;
    RETURN NULL;
  END $$;
  CREATE TRIGGER quota_link AFTER INSERT ON repository_blobs FOR EACH ROW EXECUTE FUNCTION berth_quota_link();

  CREATE FUNCTION berth_quota_unlink() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE ns text; n bigint; sz bigint;
  BEGIN
    FOR ns IN SELECT namespace FROM quota_members WHERE repository_id = OLD.repository_id ORDER BY namespace LOOP
      PERFORM 1 FROM quota_namespaces WHERE name = ns FOR UPDATE;
      UPDATE quota_blobs SET links = links - 1 WHERE namespace = ns AND digest = OLD.digest RETURNING links, size INTO n, sz;
      IF n IS NOT NULL AND n <= 0 THEN
        DELETE FROM quota_blobs WHERE namespace = ns AND digest = OLD.digest;
        UPDATE quota_namespaces SET bytes = bytes - sz WHERE name = ns;
      END IF;
    END LOOP;
    RETURN NULL;
  END $$;
  CREATE TRIGGER quota_unlink AFTER DELETE ON repository_blobs FOR EACH ROW EXECUTE FUNCTION berth_quota_unlink();

  -- Retention's "pulled within": when a tag was last pulled, written in batches by the servers.
  -- A table of its own, so that recording a pull does not count as a change of the tags.
  CREATE TABLE tag_pulls (
    repository_id  bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    tag            text COLLATE "C" NOT NULL,
    pulled_at      bigint NOT NULL,
    PRIMARY KEY (repository_id, tag)
  );
  `,
  },
  {
    version: 7,
    description: 'GC candidates paged by keyset: indexes in candidate order',
    sql: `
  -- GC pages through its candidates in (time, tiebreaker) order, each page
  -- starting after the last: an index in exactly that order makes a page an
  -- index range read at the candidates (the indexes on the time alone left a
  -- sort of every candidate up to the cutoff for each page).
  CREATE INDEX gc_blob_queue_by_position ON gc_blob_queue(since, digest);
  DROP INDEX gc_blob_queue_by_since;
  CREATE INDEX manifests_candidates ON manifests(untagged_at, id) WHERE untagged_at IS NOT NULL;
  DROP INDEX manifests_untagged;
  `,
  },
  {
    version: 8,
    description: 'per-repository tag, manifest and byte counts kept by triggers (the console reads one row per repository)',
    sql: `
  -- bytes: live blobs linked to the repository; unique_bytes: those no other
  -- repository links; last_push: when a manifest was last pushed to it.
  ALTER TABLE repositories ADD COLUMN tag_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN manifest_count bigint NOT NULL DEFAULT 0, ADD COLUMN last_push bigint,
    ADD COLUMN bytes bigint NOT NULL DEFAULT 0, ADD COLUMN unique_bytes bigint NOT NULL DEFAULT 0;
  -- How many repositories link the blob: what tells unique bytes from shared ones.
  ALTER TABLE blobs ADD COLUMN links bigint NOT NULL DEFAULT 0;

  -- Counted once from what exists (the only pass over the registry; later changes are counted as they happen).
  UPDATE blobs b SET links = n FROM (SELECT digest, count(*) AS n FROM repository_blobs GROUP BY digest) l WHERE l.digest = b.digest;
  UPDATE repositories r SET
    tag_count = (SELECT count(*) FROM tags t WHERE t.repository_id = r.id),
    manifest_count = (SELECT count(*) FROM manifests m WHERE m.repository_id = r.id),
    last_push = (SELECT max(created_at) FROM manifests m WHERE m.repository_id = r.id),
    bytes = (SELECT coalesce(sum(b.size), 0) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest
             WHERE l.repository_id = r.id AND b.state = 0),
    unique_bytes = (SELECT coalesce(sum(b.size), 0) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest
                    WHERE l.repository_id = r.id AND b.state = 0 AND b.links = 1);

  CREATE FUNCTION berth_count_tags() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      UPDATE repositories SET tag_count = tag_count - 1 WHERE id = OLD.repository_id;
    ELSE
      UPDATE repositories SET tag_count = tag_count + 1 WHERE id = NEW.repository_id;
    END IF;
    RETURN NULL;
  END $fn$;
  CREATE TRIGGER repository_stats_tags AFTER INSERT OR DELETE ON tags FOR EACH ROW EXECUTE FUNCTION berth_count_tags();

  CREATE FUNCTION berth_count_manifests() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      UPDATE repositories SET manifest_count = manifest_count - 1 WHERE id = OLD.repository_id;
    ELSE
      UPDATE repositories SET manifest_count = manifest_count + 1, last_push = greatest(last_push, NEW.created_at)
      WHERE id = NEW.repository_id;
    END IF;
    RETURN NULL;
  END $fn$;
  CREATE TRIGGER repository_stats_manifests AFTER INSERT OR DELETE ON manifests FOR EACH ROW EXECUTE FUNCTION berth_count_manifests();

  -- A link adds the blob to the repository's bytes; its first link makes it
  -- unique there, its second takes it from the other repository's unique
  -- bytes (and the reverse on unlink). Every path that links or unlinks holds
  -- the blob's row lock already, so the link count is exact.
  CREATE FUNCTION berth_count_links() RETURNS trigger LANGUAGE plpgsql AS $fn$
  DECLARE sz bigint; n bigint; repo bigint; d text;
  BEGIN
    IF TG_OP = 'DELETE' THEN
      repo := OLD.repository_id; d := OLD.digest;
      -- No blob row: fsck forgot the blob, and its trigger counted it out.
      UPDATE blobs SET links = links - 1 WHERE digest = d RETURNING size, links INTO sz, n;
      IF NOT FOUND THEN RETURN NULL; END IF;
      UPDATE repositories SET bytes = bytes - sz, unique_bytes = unique_bytes - CASE WHEN n = 0 THEN sz ELSE 0 END WHERE id = repo;
      IF n = 1 THEN
        UPDATE repositories SET unique_bytes = unique_bytes + sz
        WHERE id = (SELECT repository_id FROM repository_blobs WHERE digest = d LIMIT 1);
      END IF;
    ELSE
      repo := NEW.repository_id; d := NEW.digest;
      UPDATE blobs SET links = links + 1 WHERE digest = d RETURNING size, links INTO sz, n;
      IF NOT FOUND THEN RETURN NULL; END IF;
      UPDATE repositories SET bytes = bytes + sz, unique_bytes = unique_bytes + CASE WHEN n = 1 THEN sz ELSE 0 END WHERE id = repo;
      IF n = 2 THEN
        UPDATE repositories SET unique_bytes = unique_bytes - sz
        WHERE id = (SELECT repository_id FROM repository_blobs WHERE digest = d AND repository_id <> repo LIMIT 1);
      END IF;
    END IF;
    RETURN NULL;
  END $fn$;
  CREATE TRIGGER repository_stats_links AFTER INSERT OR DELETE ON repository_blobs FOR EACH ROW EXECUTE FUNCTION berth_count_links();

  CREATE FUNCTION berth_count_forgotten_blob() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    UPDATE repositories SET bytes = bytes - OLD.size, unique_bytes = unique_bytes - CASE WHEN OLD.links = 1 THEN OLD.size ELSE 0 END
    WHERE id IN (SELECT repository_id FROM repository_blobs WHERE digest = OLD.digest);
    RETURN NULL;
  END $fn$;
  CREATE TRIGGER repository_stats_blobs AFTER DELETE ON blobs FOR EACH ROW WHEN (OLD.links > 0) EXECUTE FUNCTION berth_count_forgotten_blob();
  `,
  },
  {
    version: 9,
    description: 'per-repository figures kept as delta rows (no lock on repository rows from pushes)',
    sql: `
  -- Version 8's triggers updated repository rows, the other repository's too
  -- when a blob became shared or unique again: two pushes linking each
  -- other's blobs locked two rows in opposite orders and deadlocked (a
  -- second of waiting, then an error and a retry). Changes now append a
  -- delta row, which takes no lock anyone else waits for; the console adds
  -- the deltas to the repository's row, and GC folds them in at the end of
  -- a pass (foldRepositoryStats), one folder at a time.
  CREATE TABLE repository_stat_deltas (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository_id  bigint NOT NULL,
    tags           bigint NOT NULL DEFAULT 0,
    manifests      bigint NOT NULL DEFAULT 0,
    last_push      bigint,
    bytes          bigint NOT NULL DEFAULT 0,
    unique_bytes   bigint NOT NULL DEFAULT 0
  );
  CREATE INDEX repository_stat_deltas_by_repository ON repository_stat_deltas(repository_id);

  CREATE OR REPLACE FUNCTION berth_count_tags() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      INSERT INTO repository_stat_deltas (repository_id, tags) VALUES (OLD.repository_id, -1);
    ELSE
      INSERT INTO repository_stat_deltas (repository_id, tags) VALUES (NEW.repository_id, 1);
    END IF;
    RETURN NULL;
  END $fn$;

  CREATE OR REPLACE FUNCTION berth_count_manifests() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      INSERT INTO repository_stat_deltas (repository_id, manifests) VALUES (OLD.repository_id, -1);
    ELSE
      INSERT INTO repository_stat_deltas (repository_id, manifests, last_push) VALUES (NEW.repository_id, 1, NEW.created_at);
    END IF;
    RETURN NULL;
  END $fn$;

  -- The blob's link count stays on its row: every path that links or
  -- unlinks holds that row's lock already, so the count is exact.
  CREATE OR REPLACE FUNCTION berth_count_links() RETURNS trigger LANGUAGE plpgsql AS $fn$
  DECLARE sz bigint; n bigint; repo bigint; d text;
  BEGIN
    IF TG_OP = 'DELETE' THEN
      repo := OLD.repository_id; d := OLD.digest;
      UPDATE blobs SET links = links - 1 WHERE digest = d RETURNING size, links INTO sz, n;
      IF NOT FOUND THEN RETURN NULL; END IF;
      INSERT INTO repository_stat_deltas (repository_id, bytes, unique_bytes) VALUES (repo, -sz, CASE WHEN n = 0 THEN -sz ELSE 0 END);
      IF n = 1 THEN
        INSERT INTO repository_stat_deltas (repository_id, unique_bytes)
        SELECT repository_id, sz FROM repository_blobs WHERE digest = d LIMIT 1;
      END IF;
    ELSE
      repo := NEW.repository_id; d := NEW.digest;
      UPDATE blobs SET links = links + 1 WHERE digest = d RETURNING size, links INTO sz, n;
      IF NOT FOUND THEN RETURN NULL; END IF;
      INSERT INTO repository_stat_deltas (repository_id, bytes, unique_bytes) VALUES (repo, sz, CASE WHEN n = 1 THEN sz ELSE 0 END);
      IF n = 2 THEN
        INSERT INTO repository_stat_deltas (repository_id, unique_bytes)
        SELECT repository_id, -sz FROM repository_blobs WHERE digest = d AND repository_id <> repo LIMIT 1;
      END IF;
    END IF;
    RETURN NULL;
  END $fn$;

  CREATE OR REPLACE FUNCTION berth_count_forgotten_blob() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    INSERT INTO repository_stat_deltas (repository_id, bytes, unique_bytes)
    SELECT repository_id, -OLD.size, CASE WHEN OLD.links = 1 THEN -OLD.size ELSE 0 END FROM repository_blobs WHERE digest = OLD.digest;
    RETURN NULL;
  END $fn$;
  `,
  },
  {
    version: 10,
    description: 'run totals per kind kept apart from the (pruned) history of runs',
    sql: `
  -- Totals of every GC and fsck run per kind, added to by recordRun in the
  -- transaction that records the run: /metrics and the console read these two
  -- rows instead of summing a history that grows by a run per node every 10
  -- minutes, and the history itself is pruned to the newest runs (issue 18).
  CREATE TABLE lifecycle_totals (
    kind               text COLLATE "C" PRIMARY KEY,
    runs               bigint NOT NULL,
    manifests_deleted  bigint NOT NULL,
    blobs_deleted      bigint NOT NULL,
    bytes_reclaimed    bigint NOT NULL,
    uploads_purged     bigint NOT NULL,
    problems           bigint NOT NULL,
    duration_ms        bigint NOT NULL,
    last_run_at        bigint NOT NULL
  );
  -- Counted once from the history so far (the last pass over it), so the totals stay exact across the upgrade.
  INSERT INTO lifecycle_totals (kind, runs, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems, duration_ms, last_run_at)
  SELECT kind, count(*), sum(manifests_deleted), sum(blobs_deleted), sum(bytes_reclaimed), sum(uploads_purged), sum(problems),
    sum(duration_ms), max(started_at)
  FROM lifecycle_runs GROUP BY kind;
  `,
  },
  {
    version: 11,
    description: 'each repository link counts the manifests naming it (GC claims read the links, not the manifests)',
    sql: `
  -- refs: how many manifests of the repository name the blob (their manifest_blobs
  -- rows; one per manifest and digest). GC's claim removes a link only at refs = 0,
  -- reading the blob's link rows alone: asking the manifests instead walked every
  -- manifest using the blob, 15,629 for a base layer at 1M images (issue 18).
  ALTER TABLE repository_blobs ADD COLUMN refs integer NOT NULL DEFAULT 0;
  UPDATE repository_blobs l SET refs = c.n
  FROM (SELECT m.repository_id, mb.digest, count(*) AS n FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id
        GROUP BY m.repository_id, mb.digest) c
  WHERE l.repository_id = c.repository_id AND l.digest = c.digest;
  -- The claim's candidates: a layer linked by a thousand repositories has few links no manifest needs.
  CREATE INDEX repository_blobs_unreferenced ON repository_blobs(digest) WHERE refs = 0;

  -- Kept by triggers, so no path that writes references can forget them. A
  -- reference is only written while its link exists (putManifest checks it
  -- under the blob's share lock, which every link removal conflicts with).
  -- Each change locks the link row: pushes insert references in digest order
  -- and deletions lock the links in that order first, so they queue, never
  -- deadlock; a claim skips a link being changed (SKIP LOCKED), and a change
  -- committed after its snapshot only leaves the link for a later pass.
  CREATE FUNCTION berth_count_link_refs() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF TG_OP = 'INSERT' THEN
      UPDATE repository_blobs SET refs = refs + 1
      WHERE repository_id = (SELECT repository_id FROM manifests WHERE id = NEW.manifest_id) AND digest = NEW.digest;
    ELSE
      -- A reference removed on its own, while its manifest stays (none is today);
      -- one cascading from its manifest finds no manifest, and was counted out before.
      UPDATE repository_blobs SET refs = refs - 1
      WHERE repository_id = (SELECT repository_id FROM manifests WHERE id = OLD.manifest_id) AND digest = OLD.digest;
    END IF;
    RETURN NULL;
  END $fn$;
  CREATE TRIGGER link_refs AFTER INSERT OR DELETE ON manifest_blobs FOR EACH ROW EXECUTE FUNCTION berth_count_link_refs();

  -- BEFORE: a cascade removes the references after their manifest row, when
  -- their repository can no longer be read from it.
  CREATE FUNCTION berth_uncount_manifest_refs() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    PERFORM 1 FROM repository_blobs
    WHERE repository_id = OLD.repository_id AND digest IN (SELECT digest FROM manifest_blobs WHERE manifest_id = OLD.id)
    ORDER BY digest FOR NO KEY UPDATE;
    UPDATE repository_blobs SET refs = refs - 1
    WHERE repository_id = OLD.repository_id AND digest IN (SELECT digest FROM manifest_blobs WHERE manifest_id = OLD.id);
    RETURN OLD;
  END $fn$;
  CREATE TRIGGER link_refs_manifest_removed BEFORE DELETE ON manifests FOR EACH ROW EXECUTE FUNCTION berth_uncount_manifest_refs();

  -- fsck forgetting a blob whose bytes are gone removes its links, not the
  -- references of the manifests naming it: a link made again later (the blob
  -- uploaded again) must start from those. Such digests are marked here, and
  -- only their new links pay for a count of the references.
  CREATE TABLE links_to_recount (
    digest  text COLLATE "C" PRIMARY KEY
  );
  CREATE FUNCTION berth_mark_forgotten_refs() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF EXISTS (SELECT 1 FROM manifest_blobs WHERE digest = OLD.digest) THEN
      INSERT INTO links_to_recount (digest) VALUES (OLD.digest) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
  END $fn$;
  CREATE TRIGGER link_refs_blob_forgotten AFTER DELETE ON blobs FOR EACH ROW EXECUTE FUNCTION berth_mark_forgotten_refs();
  CREATE FUNCTION berth_recount_link_refs() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF EXISTS (SELECT 1 FROM links_to_recount WHERE digest = NEW.digest) THEN
      UPDATE repository_blobs SET refs = (
        SELECT count(*) FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id
        WHERE mb.digest = NEW.digest AND m.repository_id = NEW.repository_id)
      WHERE repository_id = NEW.repository_id AND digest = NEW.digest;
    END IF;
    RETURN NULL;
  END $fn$;
  CREATE TRIGGER link_refs_relinked AFTER INSERT ON repository_blobs FOR EACH ROW EXECUTE FUNCTION berth_recount_link_refs();
  `,
  },
  {
    version: 12,
    description: 'blob storage keys that name their own digest are found by the digest, not indexed',
    sql: `
  -- fsck asks "is this object known?" by key. A key blobKey made names its own
  -- digest (algorithm/xx/hex.upload), so the blob's primary key answers for it;
  -- only other keys (S3's, which name the upload) need an index of their own.
  -- The unique index of every key was a random-key insert per new blob, as
  -- large as the blobs table (issue 18). storageKeyKnown states this predicate
  -- word for word, so the planner can use the partial index.
  ALTER TABLE blobs DROP CONSTRAINT blobs_storage_key_key;
  CREATE UNIQUE INDEX blobs_by_foreign_key ON blobs(storage_key)
  WHERE left(storage_key, length(digest) + 4) <> replace(digest, ':', '/' || substr(digest, strpos(digest, ':') + 1, 2) || '/') || '.';
  `,
  },
];

export const LATEST_VERSION = MIGRATIONS.length === 0 ? 0 : MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Any fixed number: every Berth node takes the same advisory lock to migrate. */
const MIGRATION_LOCK = 0x62657274; // "bert"

export class SchemaTooNewError extends Error {
  override name = 'SchemaTooNewError';
  constructor(readonly found: number, readonly supported: number) {
    super(`metadata schema version ${found} is newer than this Berth understands (${supported}); upgrade Berth`);
  }
}

export interface MigrationStatus {
  /** Version before (and, for status, now). */
  from: number;
  /** Version after applying (equal to `from` when nothing was pending or only the status was asked). */
  to: number;
  latest: number;
}

async function currentVersion(client: ClientBase): Promise<number> {
  const exists = await client.query(`SELECT to_regclass('berth_schema_migrations') IS NOT NULL AS e`);
  if (!exists.rows[0].e) return 0;
  const r = await client.query(`SELECT coalesce(max(version), 0)::int AS v FROM berth_schema_migrations`);
  return r.rows[0].v as number;
}

/** The schema version of the database, without changing anything. */
export async function schemaStatus(pool: Pool): Promise<MigrationStatus> {
  const client = await pool.connect();
  try {
    const v = await currentVersion(client);
    return { from: v, to: v, latest: LATEST_VERSION };
  } finally {
    client.release();
  }
}

/**
 * Applies pending migrations, each in its own transaction, under an advisory
 * lock (a second node waits, then finds nothing to do). Refuses a schema newer
 * than this code.
 */
export async function migrate(pool: Pool): Promise<MigrationStatus> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query(`
        CREATE TABLE IF NOT EXISTS berth_schema_migrations (
          version     integer PRIMARY KEY,
          description text NOT NULL,
          applied_at  bigint NOT NULL
        )`);
      const from = await currentVersion(client);
      if (from > LATEST_VERSION) throw new SchemaTooNewError(from, LATEST_VERSION);
      for (const m of MIGRATIONS) {
        if (m.version <= from) continue;
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query('INSERT INTO berth_schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)', [
            m.version,
            m.description,
            Date.now(),
          ]);
          await client.query('COMMIT');
        } catch (e) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw e;
        }
      }
      return { from, to: LATEST_VERSION, latest: LATEST_VERSION };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch((e: Error) => (broken = e));
    }
  } finally {
    client.release(broken);
  }
}
