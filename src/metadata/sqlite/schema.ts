/**
 * SQLite schema, as numbered migrations applied in order and recorded in
 * `PRAGMA user_version`. A database newer than this code is refused, so an
 * old binary never writes to a schema it does not understand.
 */
/** blobs.state of a live blob (1: being deleted by GC, absent to every reader). */
export const LIVE = 0;

export const MIGRATIONS: string[] = [
  `
  CREATE TABLE repositories (
    -- AUTOINCREMENT: an id is never reused, so (id, tags_version) names one state of one repository's tags.
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    -- Bumped by every change to the repository's tags (triggers below), so a
    -- tag list can be served again while this number has not moved.
    tags_version  INTEGER NOT NULL DEFAULT 0
  );

  -- One row per digest: blobs are stored once, however many repositories hold them.
  -- state 0 = live, 1 = being deleted by GC (treated as absent by every reader).
  CREATE TABLE blobs (
    digest       TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    storage_key  TEXT NOT NULL,
    state        INTEGER NOT NULL DEFAULT 0,
    last_seen    INTEGER NOT NULL
  ) WITHOUT ROWID;

  -- A blob is readable through a repository only while it is linked to it.
  CREATE TABLE repository_blobs (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    last_seen      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
  ) WITHOUT ROWID;
  CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);

  CREATE TABLE manifests (
    id             INTEGER PRIMARY KEY,
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    size           INTEGER NOT NULL,
    body           BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    -- Set while the manifest has no tag and no parent index: a GC candidate since then.
    untagged_at    INTEGER,
    UNIQUE (repository_id, digest)
  );
  CREATE INDEX manifests_by_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;
  CREATE INDEX manifests_untagged ON manifests(untagged_at) WHERE untagged_at IS NOT NULL;

  CREATE TABLE manifest_blobs (
    manifest_id  INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    digest       TEXT NOT NULL,
    PRIMARY KEY (manifest_id, digest)
  ) WITHOUT ROWID;
  CREATE INDEX manifest_blobs_by_digest ON manifest_blobs(digest);

  CREATE TABLE manifest_children (
    manifest_id    INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    repository_id  INTEGER NOT NULL,
    child_digest   TEXT NOT NULL,
    PRIMARY KEY (manifest_id, child_digest)
  ) WITHOUT ROWID;
  CREATE INDEX manifest_children_by_child ON manifest_children(repository_id, child_digest);

  CREATE TABLE tags (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    manifest_id    INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name)
  ) WITHOUT ROWID;
  CREATE INDEX tags_by_manifest ON tags(manifest_id);
  CREATE TRIGGER tags_inserted AFTER INSERT ON tags BEGIN
    UPDATE repositories SET tags_version = tags_version + 1 WHERE id = NEW.repository_id;
  END;
  CREATE TRIGGER tags_updated AFTER UPDATE ON tags BEGIN
    UPDATE repositories SET tags_version = tags_version + 1 WHERE id = NEW.repository_id;
  END;
  CREATE TRIGGER tags_deleted AFTER DELETE ON tags BEGIN
    UPDATE repositories SET tags_version = tags_version + 1 WHERE id = OLD.repository_id;
  END;

  CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    "offset"    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX uploads_by_update ON uploads(updated_at);

  -- Blobs whose liveness may have changed since 'since': the only ones GC examines,
  -- so a collection costs what the garbage costs, not what the registry holds.
  CREATE TABLE gc_blob_queue (
    digest  TEXT PRIMARY KEY,
    since   INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX gc_blob_queue_by_since ON gc_blob_queue(since);

  -- One row per finished GC or fsck run, from any process: the monitoring counters.
  CREATE TABLE lifecycle_runs (
    id                 INTEGER PRIMARY KEY,
    kind               TEXT NOT NULL,          -- 'gc' | 'fsck'
    trigger            TEXT NOT NULL,          -- 'background' | 'admin' | 'cli'
    started_at         INTEGER NOT NULL,
    duration_ms        INTEGER NOT NULL,
    manifests_deleted  INTEGER NOT NULL DEFAULT 0,
    blobs_deleted      INTEGER NOT NULL DEFAULT 0,
    bytes_reclaimed    INTEGER NOT NULL DEFAULT 0,
    uploads_purged     INTEGER NOT NULL DEFAULT 0,
    problems           INTEGER NOT NULL DEFAULT 0
  );
  `,
  `
  -- Cross-node uploads: the digest state travels with the upload when its bytes cannot be read back.
  ALTER TABLE uploads ADD COLUMN hash_state BLOB;
  -- fsck asks "is this object known?" by key: S3 keys do not name their digest.
  CREATE UNIQUE INDEX blobs_by_storage_key ON blobs(storage_key);
  `,
  `
  -- With auth on, an upload session belongs to the principal that opened it ('' for anonymous),
  -- and the number of open sessions per principal is capped.
  ALTER TABLE uploads ADD COLUMN owner TEXT;
  CREATE INDEX uploads_by_owner ON uploads(owner) WHERE owner IS NOT NULL;
  `,
  `
  -- A commit claims its upload before storage is touched (one winner) and
  -- names the key it writes, so fsck never takes that object for an orphan.
  ALTER TABLE uploads ADD COLUMN committing_key TEXT;
  CREATE INDEX uploads_by_committing_key ON uploads(committing_key) WHERE committing_key IS NOT NULL;
  -- fsck's orphan candidates: removed only when a later run still finds them unknown.
  -- key: 'blob:<storage key>' or 'upload:<upload id>'.
  CREATE TABLE fsck_candidates (
    key         TEXT PRIMARY KEY,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- Manifest GETs, counted in memory and added here in batches (src/console/pulls.ts); they go with their manifest.
  CREATE TABLE manifest_pulls (
    manifest_id  INTEGER PRIMARY KEY REFERENCES manifests(id) ON DELETE CASCADE,
    count        INTEGER NOT NULL,
    last_pulled  INTEGER NOT NULL
  );
  `,
  `
  -- The event outbox (src/events/): one row per event and endpoint, written in
  -- the transaction of the change it reports; removed once delivered.
  -- state 0 = pending, 1 = dead-lettered (too old or too many; an operator replays it).
  CREATE TABLE event_outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    repository  TEXT NOT NULL,
    action      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX event_outbox_by_endpoint ON event_outbox(endpoint, state, seq);
  -- Per endpoint: who is delivering (a lease, so two nodes never send one batch) and its backoff.
  CREATE TABLE event_endpoints (
    name         TEXT PRIMARY KEY,
    lease_owner  TEXT,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    retry_at     INTEGER NOT NULL DEFAULT 0,
    failures     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
  ) WITHOUT ROWID;
  `,
  `
  -- Storage quotas (src/policy/): a namespace is the set of repositories a quota rule matches.
  -- Its usage counts each blob linked in any of them once, maintained by the triggers below in
  -- the transaction that links or unlinks (every path: commits, mounts, unlinks, GC, fsck).
  CREATE TABLE quota_namespaces (
    name   TEXT PRIMARY KEY,
    bytes  INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE TABLE quota_members (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    namespace      TEXT NOT NULL REFERENCES quota_namespaces(name) ON DELETE CASCADE,
    PRIMARY KEY (repository_id, namespace)
  ) WITHOUT ROWID;
  CREATE INDEX quota_members_by_namespace ON quota_members(namespace);
  -- Each blob of a namespace once, with how many of its repositories link it.
  CREATE TABLE quota_blobs (
    namespace  TEXT NOT NULL REFERENCES quota_namespaces(name) ON DELETE CASCADE,
    digest     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    links      INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
  ) WITHOUT ROWID;
  CREATE INDEX quota_blobs_by_digest ON quota_blobs(digest);

  CREATE TRIGGER quota_link AFTER INSERT ON repository_blobs
  WHEN EXISTS (SELECT 1 FROM quota_members WHERE repository_id = NEW.repository_id)
  BEGIN
    UPDATE quota_namespaces SET bytes = bytes + (SELECT size FROM blobs WHERE digest = NEW.digest)
    WHERE name IN (SELECT m.namespace FROM quota_members m WHERE m.repository_id = NEW.repository_id
                   AND NOT EXISTS (SELECT 1 FROM quota_blobs q WHERE q.namespace = m.namespace AND q.digest = NEW.digest));
    INSERT INTO quota_blobs (namespace, digest, size, links)
    SELECT m.namespace, NEW.digest, (SELECT size FROM blobs WHERE digest = NEW.digest), 1
    FROM quota_members m WHERE m.repository_id = NEW.repository_id
    ON CONFLICT (namespace, digest) DO UPDATE SET links = links + 1;
  END;

  CREATE TRIGGER quota_unlink AFTER DELETE ON repository_blobs
  WHEN EXISTS (SELECT 1 FROM quota_members WHERE repository_id = OLD.repository_id)
  BEGIN
    UPDATE quota_blobs SET links = links - 1
    WHERE digest = OLD.digest AND namespace IN (SELECT namespace FROM quota_members WHERE repository_id = OLD.repository_id);
    UPDATE quota_namespaces SET bytes = bytes - (SELECT q.size FROM quota_blobs q WHERE q.namespace = quota_namespaces.name AND q.digest = OLD.digest)
    WHERE name IN (SELECT namespace FROM quota_blobs WHERE digest = OLD.digest AND links <= 0);
    DELETE FROM quota_blobs WHERE digest = OLD.digest AND links <= 0;
  END;

  -- Retention's "pulled within": when a tag was last pulled, written in batches by the server.
  -- A table of its own, so that recording a pull does not count as a change of the tags.
  CREATE TABLE tag_pulls (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    tag            TEXT NOT NULL,
    pulled_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, tag)
  ) WITHOUT ROWID;
  `,
  `
  -- GC's backstop for claims a crashed collector left (listDeletingBlobs) reads these rows
  -- at the start of every pass: without an index that was a scan of every blob.
  CREATE INDEX blobs_deleting ON blobs(digest) WHERE state = 1;
  `,
  `
  -- Per-repository figures for the console (src/console/), kept by the triggers
  -- below in the transaction of every change, so that listing repositories
  -- reads one row each instead of every tag, manifest and link in the registry.
  -- bytes: live blobs linked to the repository; unique_bytes: those no other
  -- repository links; last_push: when a manifest was last pushed to it.
  ALTER TABLE repositories ADD COLUMN tag_count INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE repositories ADD COLUMN manifest_count INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE repositories ADD COLUMN last_push INTEGER;
  ALTER TABLE repositories ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE repositories ADD COLUMN unique_bytes INTEGER NOT NULL DEFAULT 0;
  -- How many repositories link the blob: what tells unique bytes from shared ones.
  ALTER TABLE blobs ADD COLUMN links INTEGER NOT NULL DEFAULT 0;

  -- Counted once from what exists (the only pass over the registry; later changes are counted as they happen).
  UPDATE blobs SET links = (SELECT count(*) FROM repository_blobs l WHERE l.digest = blobs.digest);
  UPDATE repositories SET
    tag_count = (SELECT count(*) FROM tags t WHERE t.repository_id = repositories.id),
    manifest_count = (SELECT count(*) FROM manifests m WHERE m.repository_id = repositories.id),
    last_push = (SELECT max(created_at) FROM manifests m WHERE m.repository_id = repositories.id),
    bytes = (SELECT coalesce(sum(b.size), 0) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest
             WHERE l.repository_id = repositories.id AND b.state = 0),
    unique_bytes = (SELECT coalesce(sum(b.size), 0) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest
                    WHERE l.repository_id = repositories.id AND b.state = 0 AND b.links = 1);

  CREATE TRIGGER repository_stats_tag_added AFTER INSERT ON tags BEGIN
    UPDATE repositories SET tag_count = tag_count + 1 WHERE id = NEW.repository_id;
  END;
  CREATE TRIGGER repository_stats_tag_removed AFTER DELETE ON tags BEGIN
    UPDATE repositories SET tag_count = tag_count - 1 WHERE id = OLD.repository_id;
  END;
  CREATE TRIGGER repository_stats_manifest_added AFTER INSERT ON manifests BEGIN
    UPDATE repositories SET manifest_count = manifest_count + 1, last_push = max(coalesce(last_push, 0), NEW.created_at)
    WHERE id = NEW.repository_id;
  END;
  CREATE TRIGGER repository_stats_manifest_removed AFTER DELETE ON manifests BEGIN
    UPDATE repositories SET manifest_count = manifest_count - 1 WHERE id = OLD.repository_id;
  END;
  -- A link adds the blob to the repository's bytes; its first link makes it
  -- unique there, its second takes it from the other repository's unique bytes.
  CREATE TRIGGER repository_stats_link_added AFTER INSERT ON repository_blobs
  WHEN EXISTS (SELECT 1 FROM blobs WHERE digest = NEW.digest)
  BEGIN
    UPDATE blobs SET links = links + 1 WHERE digest = NEW.digest;
    UPDATE repositories SET
      bytes = bytes + (SELECT size FROM blobs WHERE digest = NEW.digest),
      unique_bytes = unique_bytes + (SELECT CASE WHEN links = 1 THEN size ELSE 0 END FROM blobs WHERE digest = NEW.digest)
    WHERE id = NEW.repository_id;
    UPDATE repositories SET unique_bytes = unique_bytes - (SELECT size FROM blobs WHERE digest = NEW.digest)
    WHERE (SELECT links FROM blobs WHERE digest = NEW.digest) = 2
      AND id = (SELECT repository_id FROM repository_blobs WHERE digest = NEW.digest AND repository_id <> NEW.repository_id);
  END;
  -- The reverse; a link removed after its blob row (fsck forgetting a blob) was counted out with the blob.
  CREATE TRIGGER repository_stats_link_removed AFTER DELETE ON repository_blobs
  WHEN EXISTS (SELECT 1 FROM blobs WHERE digest = OLD.digest)
  BEGIN
    UPDATE blobs SET links = links - 1 WHERE digest = OLD.digest;
    UPDATE repositories SET
      bytes = bytes - (SELECT size FROM blobs WHERE digest = OLD.digest),
      unique_bytes = unique_bytes - (SELECT CASE WHEN links = 0 THEN size ELSE 0 END FROM blobs WHERE digest = OLD.digest)
    WHERE id = OLD.repository_id;
    UPDATE repositories SET unique_bytes = unique_bytes + (SELECT size FROM blobs WHERE digest = OLD.digest)
    WHERE (SELECT links FROM blobs WHERE digest = OLD.digest) = 1
      AND id = (SELECT repository_id FROM repository_blobs WHERE digest = OLD.digest);
  END;
  CREATE TRIGGER repository_stats_blob_removed AFTER DELETE ON blobs WHEN OLD.links > 0 BEGIN
    UPDATE repositories SET bytes = bytes - OLD.size, unique_bytes = unique_bytes - CASE WHEN OLD.links = 1 THEN OLD.size ELSE 0 END
    WHERE id IN (SELECT repository_id FROM repository_blobs WHERE digest = OLD.digest);
  END;
  `,
  `
  -- Totals of every GC and fsck run per kind, added to by recordRun in the
  -- transaction that records the run: /metrics and the console read these two
  -- rows instead of summing a history that grows by a run per node every 10
  -- minutes, and the history itself is pruned to the newest runs (issue 18).
  CREATE TABLE lifecycle_totals (
    kind               TEXT PRIMARY KEY,       -- 'gc' | 'fsck'
    runs               INTEGER NOT NULL,
    manifests_deleted  INTEGER NOT NULL,
    blobs_deleted      INTEGER NOT NULL,
    bytes_reclaimed    INTEGER NOT NULL,
    uploads_purged     INTEGER NOT NULL,
    problems           INTEGER NOT NULL,
    duration_ms        INTEGER NOT NULL,
    last_run_at        INTEGER NOT NULL
  ) WITHOUT ROWID;
  -- Counted once from the history so far (the last pass over it), so the totals stay exact across the upgrade.
  INSERT INTO lifecycle_totals (kind, runs, manifests_deleted, blobs_deleted, bytes_reclaimed, uploads_purged, problems, duration_ms, last_run_at)
  SELECT kind, count(*), sum(manifests_deleted), sum(blobs_deleted), sum(bytes_reclaimed), sum(uploads_purged), sum(problems),
    sum(duration_ms), max(started_at)
  FROM lifecycle_runs GROUP BY kind;
  `,
  `
  -- refs: how many manifests of the repository name the blob (their manifest_blobs
  -- rows; one per manifest and digest). GC's claim removes a link only at refs = 0,
  -- reading the blob's link rows alone: asking the manifests instead walked every
  -- manifest using the blob, 15,629 for a base layer at 1M images (issue 18).
  ALTER TABLE repository_blobs ADD COLUMN refs INTEGER NOT NULL DEFAULT 0;
  -- Counted once from what exists (grouped: one pass, not a walk per link).
  UPDATE repository_blobs SET refs = c.n
  FROM (SELECT m.repository_id, mb.digest, count(*) AS n FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id
        GROUP BY m.repository_id, mb.digest) AS c
  WHERE repository_blobs.repository_id = c.repository_id AND repository_blobs.digest = c.digest;
  -- The claim's candidates: a layer linked by a thousand repositories has few links no manifest needs.
  CREATE INDEX repository_blobs_unreferenced ON repository_blobs(digest) WHERE refs = 0;

  -- Kept by triggers, so no path that writes references can forget them.
  -- A reference is only written while its link exists (putManifest requires it).
  CREATE TRIGGER link_refs_added AFTER INSERT ON manifest_blobs BEGIN
    UPDATE repository_blobs SET refs = refs + 1
    WHERE repository_id = (SELECT repository_id FROM manifests WHERE id = NEW.manifest_id) AND digest = NEW.digest;
  END;
  -- BEFORE: a cascade removes the references after their manifest row, when
  -- their repository can no longer be read from it.
  CREATE TRIGGER link_refs_manifest_removed BEFORE DELETE ON manifests BEGIN
    UPDATE repository_blobs SET refs = refs - 1
    WHERE repository_id = OLD.repository_id AND digest IN (SELECT digest FROM manifest_blobs WHERE manifest_id = OLD.id);
  END;
  -- A reference removed on its own, while its manifest stays (none is today);
  -- one cascading from its manifest finds no manifest and was counted above.
  CREATE TRIGGER link_refs_removed AFTER DELETE ON manifest_blobs BEGIN
    UPDATE repository_blobs SET refs = refs - 1
    WHERE repository_id = (SELECT repository_id FROM manifests WHERE id = OLD.manifest_id) AND digest = OLD.digest;
  END;

  -- fsck forgetting a blob whose bytes are gone removes its links, not the
  -- references of the manifests naming it: a link made again later (the blob
  -- uploaded again) must start from those. Such digests are marked here, and
  -- only their new links pay for a count of the references.
  CREATE TABLE links_to_recount (
    digest  TEXT PRIMARY KEY
  ) WITHOUT ROWID;
  CREATE TRIGGER link_refs_blob_forgotten AFTER DELETE ON blobs
  WHEN EXISTS (SELECT 1 FROM manifest_blobs WHERE digest = OLD.digest)
  BEGIN
    INSERT OR IGNORE INTO links_to_recount (digest) VALUES (OLD.digest);
  END;
  CREATE TRIGGER link_refs_relinked AFTER INSERT ON repository_blobs
  WHEN EXISTS (SELECT 1 FROM links_to_recount WHERE digest = NEW.digest)
  BEGIN
    UPDATE repository_blobs SET refs = (
      SELECT count(*) FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id
      WHERE mb.digest = NEW.digest AND m.repository_id = NEW.repository_id)
    WHERE repository_id = NEW.repository_id AND digest = NEW.digest;
  END;
  `,
  `
  -- fsck asks "is this object known?" by key. A key blobKey made names its own
  -- digest (algorithm/xx/hex.upload), so the blob's primary key answers for it;
  -- only other keys (S3's, which name the upload) need an index of their own.
  -- The unique index of every key was a random-key insert per new blob, as
  -- large as the blobs table (issue 18). storageKeyKnown states this predicate
  -- word for word, so the planner can use the partial index.
  DROP INDEX blobs_by_storage_key;
  CREATE UNIQUE INDEX blobs_by_foreign_key ON blobs(storage_key)
  WHERE substr(storage_key, 1, length(digest) + 4) <> replace(digest, ':', '/' || substr(digest, instr(digest, ':') + 1, 2) || '/') || '.';
  `,
];
