#!/usr/bin/env bash
# Make the services Berth's scale-out tests need answer on this machine
# (Debian bookworm, root, no systemd), and print what the tests need to know
# about them as shell `export` lines on stdout, so that the caller does
#
#   eval "$(bash .ci/setup-services.sh)"
#
#   - S3: the project's own test store, OpenStack Swift + s3api from Debian
#     (scripts/s3/start.sh: installs python3-swift and memcached when
#     missing, starts it on 127.0.0.1:${S3_PORT:-5480}, creates the bucket).
#     Idempotent: when already running it only checks the bucket (0.1 s).
#     Exports S3_ENDPOINT, S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY,
#     S3_BUCKET.
#   - PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres): started with
#     pg_ctlcluster when pg_isready says no; the maintenance database `test`,
#     which tests create their throwaway databases from, is created if
#     missing. Exports BERTH_TEST_PG_URL.
#
# Progress and errors go to stderr; one summary line when ready. Safe to run
# any number of times, also while tests run (it never restarts a service
# that answers).
#
# Environment (all optional):
#   S3_PORT, S3_STATE_DIR, S3_BUCKET...  see scripts/s3/start.sh
#   BERTH_CI_PG_HOST    PostgreSQL host (127.0.0.1)
#   BERTH_CI_PG_PORT    PostgreSQL port (5432)
#   BERTH_CI_PG_DB      maintenance database (test)
#   PG_WAIT_SECS        how long to wait for PostgreSQL to answer (60)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pg_host=${BERTH_CI_PG_HOST:-127.0.0.1}
pg_port=${BERTH_CI_PG_PORT:-5432}
pg_db=${BERTH_CI_PG_DB:-test}
pg_wait=${PG_WAIT_SECS:-60}
started=$(date +%s)

say() { printf 'setup-services: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# --- 1. S3 -------------------------------------------------------------------------
s3_start=$repo/scripts/s3/start.sh
s3_exports=$(bash "$s3_start") || die "$s3_start failed"
# Only `export NAME=value` lines: anything else would be run by the caller's eval.
grep -Eq '^export S3_ENDPOINT=' <<<"$s3_exports" || die "$s3_start printed no S3_ENDPOINT"
if grep -Evq '^export S3_[A-Z_]+=[A-Za-z0-9:/._+=-]*$' <<<"$s3_exports"; then
  die "unexpected output from $s3_start: $s3_exports"
fi
eval "$s3_exports"
s3_health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$S3_ENDPOINT/healthcheck" || true)
[ "$s3_health" = 200 ] || die "S3 endpoint $S3_ENDPOINT does not answer /healthcheck (HTTP $s3_health)"

# --- 2. PostgreSQL -----------------------------------------------------------------
pg_ok() { pg_isready -q -h "$pg_host" -p "$pg_port" -t 3 >/dev/null 2>&1; }
command -v pg_isready >/dev/null || die "pg_isready missing (Debian package postgresql-client)"
if ! pg_ok; then
  command -v pg_ctlcluster >/dev/null || die "PostgreSQL does not answer on $pg_host:$pg_port and pg_ctlcluster is missing"
  # One cluster version is installed (e.g. /etc/postgresql/15); its cluster is `main`.
  versions=$(ls /etc/postgresql 2>/dev/null || true)
  [ "$(wc -w <<<"$versions")" = 1 ] || die "expected one PostgreSQL version in /etc/postgresql, found: ${versions:-none}"
  say "starting PostgreSQL $versions/main"
  pg_ctlcluster --skip-systemctl-redirect "$versions" main start >&2 \
    || say "pg_ctlcluster start failed (it may already be starting); waiting"
  deadline=$(( $(date +%s) + pg_wait ))
  until pg_ok; do
    [ "$(date +%s)" -lt "$deadline" ] || die "PostgreSQL did not answer on $pg_host:$pg_port within ${pg_wait}s"
    sleep 0.5
  done
fi
psql_q() { psql -X -q -t -A -h "$pg_host" -p "$pg_port" -U postgres "$@"; }
if [ "$(psql_q -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$pg_db'")" != 1 ]; then
  say "creating database $pg_db"
  psql_q -d postgres -c "CREATE DATABASE \"$pg_db\"" >&2
fi
pg_version=$(psql_q -d "$pg_db" -c 'SHOW server_version' | awk '{print $1}') \
  || die "cannot connect to PostgreSQL database $pg_db as postgres on $pg_host:$pg_port"

# --- 3. what the tests need --------------------------------------------------------
printf '%s\n' "$s3_exports"
printf 'export BERTH_TEST_PG_URL=%s\n' "postgres://postgres@$pg_host:$pg_port/$pg_db"

say "ready in $(( $(date +%s) - started ))s: S3 at $S3_ENDPOINT (bucket $S3_BUCKET), PostgreSQL $pg_version at $pg_host:$pg_port/$pg_db"
