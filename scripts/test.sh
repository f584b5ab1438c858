#!/usr/bin/env bash
# `npm test`: build, make sure the test services answer, run both passes.
#
# The services (the project's S3 store, scripts/s3/start.sh, and PostgreSQL)
# come from .ci/setup-services.sh unless S3_ENDPOINT is already set (you
# point the tests at a store of your own) or BERTH_TEST_SERVICES=off. They keep
# running afterwards, so the next run starts in a second; stop the S3 store
# with `bash scripts/s3/stop.sh`. When they cannot be had (not root and the
# packages are missing, no PostgreSQL installed) the tests that need them
# skip with a message, except under CI=true, where that fails the run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rm -rf dist && npm run --silent build || exit 1

if [ -z "${S3_ENDPOINT:-${AWS_ENDPOINT_URL_S3:-}}" ] && [ "${BERTH_TEST_SERVICES:-on}" != off ]; then
  if services=$(bash .ci/setup-services.sh); then
    eval "$services"
  elif [ "${CI:-}" = true ]; then
    echo "npm test: .ci/setup-services.sh failed under CI=true" >&2
    exit 1
  else
    echo "npm test: the S3 and PostgreSQL services are not available; their tests will skip" >&2
  fi
fi

npm run --silent test:embedded
embedded=$?
npm run --silent test:scale-out
scale_out=$?
[ $embedded -eq 0 ] && [ $scale_out -eq 0 ]
