# Sourced by start.sh and stop.sh: the settings and the process bookkeeping of
# Berth's test S3 store (see start.sh). Not meant to be run on its own.

s3_port=${S3_PORT:-5480}
s3_state=${S3_STATE_DIR:-${TMPDIR:-/tmp}/berth-s3}
s3_bucket=${S3_BUCKET:-registry}
s3_key=${S3_ACCESS_KEY_ID:-berth:tester}
s3_secret=${S3_SECRET_ACCESS_KEY:-berth-tester-secret}
s3_region=us-east-1

[[ $s3_port =~ ^[0-9]+$ ]] && [ "$s3_port" -ge 1024 ] && [ "$s3_port" -le 65530 ] \
  || { echo "s3: S3_PORT must be a number from 1024 to 65530, got '$s3_port'" >&2; exit 2; }

# The store is five processes: the S3 endpoint on S3_PORT, the rest above it.
s3_servers=(proxy-server object-server container-server account-server memcached)
s3_port_of() {
  case $1 in
    proxy-server) echo "$s3_port" ;;
    memcached) echo $((s3_port + 1)) ;;
    object-server) echo $((s3_port + 2)) ;;
    container-server) echo $((s3_port + 3)) ;;
    account-server) echo $((s3_port + 4)) ;;
  esac
}

s3_pidfile() { echo "$s3_state/run/$1.pid"; }

# The pid of a server this state directory started, if it still runs (a pid
# file alone proves nothing: the number may belong to another process by now).
s3_pid_of() {
  local pid cmd
  pid=$(cat "$(s3_pidfile "$1")" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # (2>/dev/null first: a redirection that fails reports before later ones apply)
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  case $1 in
    memcached) [[ $cmd == *memcached*" -p $(s3_port_of memcached) "* ]] || return 1 ;;
    *) [[ $cmd == *"swift-node.py serve $s3_state/etc $1"* ]] || return 1 ;;
  esac
  echo "$pid"
}

# Something accepts connections on 127.0.0.1:PORT.
s3_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
