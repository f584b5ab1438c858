#!/usr/bin/env bash
# Stops Berth's test S3 store that scripts/s3/start.sh started from the same
# S3_STATE_DIR (and S3_PORT), by the pids it recorded; nothing else.
#
#   bash scripts/s3/stop.sh           stop; data stays for the next start
#   bash scripts/s3/stop.sh --purge   stop and delete the state directory
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

purge=false
case ${1:-} in
  '') ;;
  --purge) purge=true ;;
  *) echo "usage: stop.sh [--purge]" >&2; exit 2 ;;
esac

stopped=()
for name in "${s3_servers[@]}"; do
  if pid=$(s3_pid_of "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    stopped+=("$name:$pid")
  fi
done
for entry in "${stopped[@]}"; do
  name=${entry%%:*}
  for _ in $(seq 50); do s3_pid_of "$name" >/dev/null || break; sleep 0.1; done
  if pid=$(s3_pid_of "$name"); then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$(s3_pidfile "$name")"
done

# Only a directory start.sh made: S3_STATE_DIR=/ must not wipe the machine.
if $purge && [ -f "$s3_state/etc/proxy-server.conf" ]; then rm -rf "$s3_state"; fi
echo "s3: stopped ${#stopped[@]} process(es) of $s3_state$($purge && echo ', state removed')" >&2
