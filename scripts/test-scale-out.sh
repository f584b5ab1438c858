#!/usr/bin/env bash
# The API, lifecycle, end-to-end, import, HTTP fuzz, console, events and policy suites a second time, with
# every test server on PostgreSQL metadata and S3 storage (part of `npm test`).
# Needs S3_ENDPOINT & co. (npm test gets them from .ci/setup-services.sh,
# which starts the project's S3 store, scripts/s3/start.sh) and PostgreSQL on
# 127.0.0.1:5432; without them the pass is skipped, visibly, except under
# CI=true, where it fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${S3_ENDPOINT:-${AWS_ENDPOINT_URL_S3:-}}" ]; then
  if [ "${CI:-}" = true ]; then
    echo "test-scale-out: no S3 endpoint (S3_ENDPOINT) under CI=true" >&2
    exit 1
  fi
  echo "test-scale-out: SKIPPED (no S3_ENDPOINT; npm test starts it; by hand: eval \"\$(bash .ci/setup-services.sh)\")" >&2
  exit 0
fi

echo "test-scale-out: API, lifecycle, e2e and fuzz suites on PostgreSQL + S3 ($S3_ENDPOINT)" >&2
# The console file seeds 10,000 tags through PostgreSQL + S3: minutes on 2 cores, so a longer per-file limit.
BERTH_TEST_METADATA=postgres BERTH_TEST_STORAGE=s3 exec node --test --test-concurrency=2 --test-timeout=480000 \
  $(find dist/test/api dist/test/lifecycle dist/test/e2e dist/test/fuzz dist/test/import dist/test/console dist/test/events dist/test/policy -name '*.test.js' | sort)
