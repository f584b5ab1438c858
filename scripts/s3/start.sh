#!/usr/bin/env bash
# Berth's test S3 store: a real S3 server on 127.0.0.1 for the S3 tests and
# the PostgreSQL + S3 pass of `npm test`.
#
# It is OpenStack Swift from Debian (python3-swift) with Swift's s3api
# middleware, as a single node with one replica: a proxy (the S3 endpoint),
# object, container and account servers whose disk is a directory, and a
# memcached the proxy caches account/container facts and auth tokens in.
# Credentials come from Swift's tempauth, so the access key id has the form
# ACCOUNT:USER. Path-style requests only, region us-east-1, plain HTTP.
#
#   eval "$(bash scripts/s3/start.sh)"    # prints export S3_... lines
#   bash scripts/s3/stop.sh [--purge]
#
# Idempotent: installs the Debian packages when missing (needs root then),
# starts what is not running from this state directory, creates the bucket,
# and prints the settings; when everything already runs that takes well under
# a second. Refuses ports that another program holds. Progress and errors go
# to stderr, one line when all is well; logs in $S3_STATE_DIR/log/.
#
# Environment (all optional):
#   S3_PORT                S3 endpoint port (5480); S3_PORT+1..+4 are used too
#   S3_STATE_DIR           config, data, logs, pid files (${TMPDIR:-/tmp}/berth-s3)
#   S3_BUCKET              bucket to create (registry)
#   S3_ACCESS_KEY_ID       ACCOUNT:USER (berth:tester)
#   S3_SECRET_ACCESS_KEY   (berth-tester-secret)
#   S3_START_TIMEOUT       seconds to wait for the store to answer (60)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

say() { echo "s3: $*" >&2; }
die() { echo "s3: ERROR: $*" >&2; exit 1; }
py=/usr/bin/python3 # Debian's, where python3-swift lives (not a pyenv one on PATH)
timeout_s=${S3_START_TIMEOUT:-60}

[[ $s3_key =~ ^[A-Za-z0-9_-]+:[A-Za-z0-9_-]+$ ]] \
  || die "S3_ACCESS_KEY_ID must be ACCOUNT:USER (letters, digits, _ and -), got '$s3_key'"
[[ $s3_secret =~ ^[A-Za-z0-9._+/=-]+$ ]] || die "S3_SECRET_ACCESS_KEY: letters, digits and ._+/=- only"
[[ $s3_bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "S3_BUCKET '$s3_bucket' is not a valid bucket name"

# --- packages ------------------------------------------------------------------
need=()
for pkg in python3-swift memcached curl; do
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" = "ii " ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "Debian packages missing (${need[*]}); install them or run as root"
  mkdir -p "$s3_state"
  say "installing ${need[*]}"
  apt_log="$s3_state/apt.log"
  apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${need[@]}"
  }
  # The package lists may be missing or stale on a fresh machine: update once, then retry.
  { apt_install || { apt-get -q -o DPkg::Lock::Timeout=300 update && apt_install; }; } >"$apt_log" 2>&1 \
    || { tail -n 30 "$apt_log" >&2; die "apt-get install ${need[*]} failed (log: $apt_log)"; }
fi

# --- configuration -------------------------------------------------------------
mkdir -p "$s3_state"
s3_state=$(cd "$s3_state" && pwd) # pids are matched on the absolute path
etc=$s3_state/etc
logs=$s3_state/log

write_config() {
  mkdir -p "$etc" "$logs" "$s3_state/run" "$s3_state/cache" "$s3_state/data/disk"
  # Swift keeps object metadata in extended attributes of the data files.
  "$py" -c 'import os,sys; p=sys.argv[1]+"/.xattr"; open(p,"w").close(); os.setxattr(p,"user.probe",b"1"*1024); os.remove(p)' \
    "$s3_state/data/disk" 2>/dev/null \
    || die "$s3_state is on a filesystem without user extended attributes; set S3_STATE_DIR to one on ext4, xfs or btrfs"

  cat >"$etc/swift.conf" <<CONF
[swift-hash]
swift_hash_path_prefix = berth-test
swift_hash_path_suffix = berth-test

[storage-policy:0]
name = default
default = yes

[swift-constraints]
# What S3 allows: 5 GiB in one PUT, 1024-byte keys.
max_file_size = 5368709122
max_object_name_length = 1024
CONF

  local user server kind
  user=$(id -un)
  # The three storage servers differ only in name and port.
  for kind in object container account; do
    server=$kind-server
    cat >"$etc/$server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $(s3_port_of "$server")
workers = 0
user = $user
swift_dir = $etc
devices = $s3_state/data
mount_check = false
disable_fallocate = true
recon_cache_path = $s3_state/cache
log_name = $server
log_level = WARNING

[pipeline:main]
pipeline = $server

[app:$server]
use = egg:swift#$kind
CONF
  done

  cat >"$etc/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $s3_port
workers = 0
user = $user
swift_dir = $etc
log_name = proxy-server
log_level = WARNING

[pipeline:main]
# s3api before the auth middleware; slo gives it multipart uploads, copy gives
# it CopyObject and UploadPartCopy.
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = $s3_region
s3_acl = false
dns_compliant_bucket_names = true
# AWS's limits, so that a client bug AWS would reject fails here too.
min_segment_size = 5242880
max_upload_part_num = 10000
max_multi_delete_objects = 1000

[filter:tempauth]
use = egg:swift#tempauth
user_${s3_key%%:*}_${s3_key#*:} = $s3_secret .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$(s3_port_of memcached)

[filter:slo]
use = egg:swift#slo
max_manifest_segments = 10000

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:dlo]
use = egg:swift#dlo
CONF

  "$py" "$here/swift-node.py" rings "$etc" \
    "$(s3_port_of object-server)" "$(s3_port_of container-server)" "$(s3_port_of account-server)" \
    >>"$logs/rings.log" 2>&1 || { tail -n 20 "$logs/rings.log" >&2; die "building the rings failed"; }
}

start_one() {
  local name=$1
  if [ "$name" = memcached ]; then
    setsid memcached -l 127.0.0.1 -p "$(s3_port_of memcached)" -U 0 -m 64 -t 1 -u "$(id -un)" \
      </dev/null >>"$logs/memcached.log" 2>&1 &
  else
    setsid "$py" "$here/swift-node.py" serve "$etc" "$name" </dev/null >>"$logs/$name.log" 2>&1 &
  fi
  echo $! >"$(s3_pidfile "$name")"
}

# Any HTTP answer from a storage server (they answer / with 400) and "OK" from
# the proxy's health check mean the store is up.
answers() {
  local name code
  for name in object-server container-server account-server; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$(s3_port_of "$name")/" || true)
    [ "$code" != 000 ] || return 1
  done
  [ "$(curl -s --max-time 2 "http://127.0.0.1:$s3_port/healthcheck" || true)" = OK ]
}

missing=()
for name in "${s3_servers[@]}"; do
  s3_pid_of "$name" >/dev/null || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
  for name in "${missing[@]}"; do
    s3_port_open "$(s3_port_of "$name")" \
      && die "port $(s3_port_of "$name") (for $name) is held by another program; choose another S3_PORT"
  done
  write_config
  for name in "${missing[@]}"; do start_one "$name"; done
  deadline=$((SECONDS + timeout_s))
  until answers; do
    for name in "${missing[@]}"; do
      s3_pid_of "$name" >/dev/null || { tail -n 20 "$logs/$name.log" >&2; die "$name exited (logs: $logs)"; }
    done
    [ $SECONDS -lt $deadline ] || die "the store did not answer within ${timeout_s}s (logs: $logs)"
    sleep 0.2
  done
fi

# --- the bucket (a Swift container), through Swift's own API and tempauth ----------
auth=$(curl -sS -f --max-time 10 -D - -o /dev/null \
  -H "X-Auth-User: $s3_key" -H "X-Auth-Key: $s3_secret" "http://127.0.0.1:$s3_port/auth/v1.0") \
  || die "tempauth refused $s3_key (was the store started with other credentials? stop.sh --purge resets it)"
header() { tr -d '\r' <<<"$auth" | sed -n "s/^$1: *//Ip" | head -n1; }
token=$(header X-Auth-Token)
storage_url=$(header X-Storage-Url)
[ -n "$token" ] && [ -n "$storage_url" ] || die "tempauth gave no token"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT -H "X-Auth-Token: $token" \
  -H 'Content-Length: 0' "$storage_url/$s3_bucket")
case $code in 201 | 202) ;; *) die "creating bucket $s3_bucket: HTTP $code" ;; esac

if [ ${#missing[@]} -gt 0 ]; then
  say "started ${missing[*]}: http://127.0.0.1:$s3_port, bucket $s3_bucket (state $s3_state)"
fi
for pair in "S3_ENDPOINT=http://127.0.0.1:$s3_port" "S3_REGION=$s3_region" \
  "S3_ACCESS_KEY_ID=$s3_key" "S3_SECRET_ACCESS_KEY=$s3_secret" "S3_BUCKET=$s3_bucket"; do
  printf 'export %s=%q\n' "${pair%%=*}" "${pair#*=}"
done
