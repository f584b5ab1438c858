#!/usr/bin/env bash
# Make the real registry clients that Berth's end-to-end tests drive available
# on this machine (Debian bookworm, root, no systemd):
#
#   docker (client + a dockerd using the vfs storage driver), skopeo, podman
#   (vfs, cgroupfs, file events; config in .ci/podman/), docker-registry (the
#   reference registry, CNCF distribution 2.8.2, used by the benchmark only),
#   wrk and curl.
#
# Idempotent and quiet: when everything is already in place it only checks,
# in about a second, and prints one summary line. Safe to run any number of
# times, also concurrently with a running test suite (it never restarts a
# daemon that answers).
#
# Environment (all optional):
#   BERTH_CI_STATE   state directory for dockerd/podman (/var/lib/berth-ci)
#   BERTH_CI_RUN     runtime directory (sockets, pid files) (/run/berth-ci)
#   DOCKER_WAIT_SECS how long to wait for dockerd to answer (60)
set -euo pipefail

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${BERTH_CI_STATE:-/var/lib/berth-ci}
rundir=${BERTH_CI_RUN:-/run/berth-ci}
docker_wait=${DOCKER_WAIT_SECS:-60}
started=$(date +%s)

say() { printf 'setup-clients: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (installs packages, starts dockerd)"
mkdir -p "$state" "$rundir"

# --- 1. packages ---------------------------------------------------------------
# package:binary that proves it is installed
wanted=(docker.io:dockerd skopeo:skopeo podman:podman docker-registry:docker-registry wrk:wrk curl:curl chromium:chromium)
missing=()
for pb in "${wanted[@]}"; do
  pkg=${pb%%:*} bin=${pb#*:}
  if ! command -v "$bin" >/dev/null 2>&1 \
     || [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" != "ii " ]; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  log="$state/apt.log"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends \
           -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
           "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "apt-get install failed (full log: $log)"
  fi
fi

# --- 2. the packaged reference registry must not hold port 5000 ---------------
# Debian's docker-registry ships a service listening on :5000 (Berth's default
# port). We only use its binary, started by the benchmark on its own port.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  if systemctl is-enabled --quiet docker-registry.service 2>/dev/null \
     || systemctl is-active --quiet docker-registry.service 2>/dev/null; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
  fi
fi
if [ -x /etc/init.d/docker-registry ]; then
  pid=$(cat /var/run/docker-registry.pid 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    say "stopping the docker-registry system service (pid $pid)"
    /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
  fi
  if compgen -G '/etc/rc[2-5].d/S*docker-registry' >/dev/null; then
    update-rc.d docker-registry disable >/dev/null 2>&1 || true
  fi
fi
if command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :5000' 2>/dev/null | grep -q .; then
  say "warning: something listens on port 5000: $(ss -Hltnp 'sport = :5000' 2>/dev/null | head -n1)"
fi

# --- 3. dockerd ----------------------------------------------------------------
docker_ok() { timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

pidfile="$rundir/dockerd.pid"
dlog="$state/dockerd.log"
# Our dockerd, by its pid file (not by name: never touch someone else's).
dockerd_running() {
  local p
  p=$(cat "$pidfile" 2>/dev/null || true)
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = dockerd ]
}

if ! docker_ok; then
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if dockerd_running; then
    say "dockerd (pid $pid) is running but not answering yet; waiting"
  else
    rm -f "$pidfile"
    mkdir -p "$state/docker" "$rundir/docker"
    # An explicit (empty) config file so a stray /etc/docker/daemon.json
    # cannot conflict with the flags below.
    [ -f "$state/daemon.json" ] || echo '{}' >"$state/daemon.json"
    [ -f "$dlog" ] && mv -f "$dlog" "$dlog.1"
    say "starting dockerd (vfs; log: $dlog)"
    # setsid+nohup: the daemon outlives this script and the CI job that ran it,
    # so the next run finds it answering.
    setsid nohup dockerd \
      --config-file="$state/daemon.json" \
      --host=unix:///var/run/docker.sock \
      --data-root="$state/docker" \
      --exec-root="$rundir/docker" \
      --pidfile="$pidfile" \
      --storage-driver=vfs \
      --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
      </dev/null >"$dlog" 2>&1 &
    pid=$!
  fi
  deadline=$(( $(date +%s) + docker_wait ))
  until docker_ok; do
    if ! kill -0 "$pid" 2>/dev/null && ! dockerd_running; then
      say "dockerd exited; log tail:"
      tail -n 40 "$dlog" >&2 || true
      die "dockerd failed to start"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      say "dockerd did not answer within ${docker_wait}s; log tail:"
      tail -n 40 "$dlog" >&2 || true
      die "dockerd is not available"
    fi
    sleep 0.5
  done
fi
docker_version=$(docker info --format '{{.ServerVersion}} ({{.Driver}})' 2>/dev/null)
# Not `docker info | grep -q`: under pipefail, grep's early exit fails the pipe.
grep -q '127.0.0.0/8' <<<"$(docker info 2>/dev/null)" \
  || say "warning: dockerd does not list 127.0.0.0/8 as an insecure registry"

# --- 4. podman -----------------------------------------------------------------
# Same settings as podmanEnv() in test/helpers/clients.ts.
export CONTAINERS_CONF="$ci_dir/podman/containers.conf"
export CONTAINERS_STORAGE_CONF="$ci_dir/podman/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$ci_dir/podman/registries.conf"
for f in "$CONTAINERS_CONF" "$CONTAINERS_STORAGE_CONF" "$CONTAINERS_REGISTRIES_CONF"; do
  [ -f "$f" ] || die "missing $f"
done
if ! podman_driver=$(podman info --format '{{.Store.GraphDriverName}}' 2>"$state/podman-info.err"); then
  cat "$state/podman-info.err" >&2
  die "podman info failed"
fi
[ "$podman_driver" = vfs ] || die "podman uses storage driver '$podman_driver', expected vfs"

# --- 5. the rest -----------------------------------------------------------------
skopeo_version=$(skopeo --version | awk '{print $3}')
podman_version=$(podman --version | awk '{print $3}')
registry_version=$(docker-registry --version | awk '{print $3}')
command -v wrk >/dev/null && command -v curl >/dev/null || die "wrk/curl missing"

say "ready in $(( $(date +%s) - started ))s: dockerd $docker_version, podman $podman_version (vfs), skopeo $skopeo_version, docker-registry $registry_version, wrk, curl"
