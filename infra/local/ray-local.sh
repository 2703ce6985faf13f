#!/usr/bin/env bash
# A local Ray head with token auth, started and stopped by process id (never by process name).
#
#   infra/local/ray-local.sh start STATE_DIR [DASHBOARD_PORT] [extra `ray start` args...]
#   source STATE_DIR/env            # RAY_ADDRESS, RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH for clients
#   ray job submit --working-dir . -- python jobs/tokenize_audioset.py ...
#   infra/local/ray-local.sh stop STATE_DIR
#
# `ray start --block` runs in a session of its own, so every process of the cluster shares its
# session id: `stop` signals each of those pids (TERM, then KILL) and checks nothing is left.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status STATE_DIR [DASHBOARD_PORT] [ray start args...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
state=$(realpath -m "$2")
shift 2
# ray and python: $RAY / $PYTHON, else the active venv's, else the repository's .venv (make setup).
venv_bin=$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin
if [ -z "${RAY:-}" ]; then
  if command -v ray >/dev/null 2>&1; then RAY=ray
  elif [ -x "$venv_bin/ray" ]; then RAY=$venv_bin/ray
  else echo "error: no ray command: run \`make setup\` (or activate the venv that has ray, or set RAY=...)" >&2; exit 1
  fi
fi
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$(dirname "$RAY")/python" ]; then PYTHON=$(dirname "$RAY")/python; else PYTHON=python3; fi
fi

# pids of a session (its id = pid of the setsid leader), zombies excluded
session_pids() { ps -o pid=,stat= -s "$1" 2>/dev/null | awk '$2 !~ /^Z/ {print $1}' || true; }
group_alive() { [ -n "$(session_pids "$1")" ]; }
signal_session() { for p in $(session_pids "$2"); do kill "-$1" "$p" 2>/dev/null || true; done; }

case "$cmd" in
start)
  port=${1:-8265}
  [ $# -gt 0 ] && shift
  mkdir -p "$state"
  if [ -f "$state/ray.pid" ] && group_alive "$(cat "$state/ray.pid")"; then
    echo "already running (pid $(cat "$state/ray.pid"))" >&2; exit 1
  fi
  umask 077
  [ -s "$state/auth_token" ] || "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$state/auth_token"
  # Ray's socket paths must stay short: its temp dir lives under /tmp, recorded in the state dir.
  tmp=$(mktemp -d /tmp/rayl-XXXXXX)
  echo "$tmp" > "$state/temp_dir"
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$state/auth_token" RAY_USAGE_STATS_ENABLED=0
  # The agents' default ports are fixed (52365, ...): with another Ray already on this machine
  # (an embedded one, a second head) our head's job agent could not bind and jobs would never start.
  read -r agent_http agent_grpc env_agent metrics < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  setsid "$RAY" start --head --block --node-ip-address=127.0.0.1 --port=0 \
    --dashboard-host=127.0.0.1 --dashboard-port="$port" --temp-dir="$tmp" --disable-usage-stats \
    --dashboard-agent-listen-port="$agent_http" --dashboard-agent-grpc-port="$agent_grpc" \
    --runtime-env-agent-port="$env_agent" --metrics-export-port="$metrics" "$@" \
    > "$state/ray.log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$state/ray.pid"
  cat > "$state/env" <<ENV
export RAY_ADDRESS=http://127.0.0.1:$port
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$state/auth_token
ENV
  for _ in $(seq 1 120); do
    if RAY_ADDRESS=http://127.0.0.1:$port "$RAY" job list > /dev/null 2>&1; then
      echo "ray head up: pid $pid, dashboard http://127.0.0.1:$port (source $state/env)"; exit 0
    fi
    group_alive "$pid" || { echo "ray start failed:" >&2; tail -20 "$state/ray.log" >&2; exit 1; }
    sleep 1
  done
  echo "ray head did not come up in 120 s" >&2; exit 1
  ;;
stop)
  [ -f "$state/ray.pid" ] || { echo "not running (no $state/ray.pid)"; exit 0; }
  pid=$(cat "$state/ray.pid")
  signal_session TERM "$pid"
  for _ in $(seq 1 10); do group_alive "$pid" || break; sleep 0.5; done
  if group_alive "$pid"; then
    signal_session KILL "$pid"
    for _ in $(seq 1 20); do group_alive "$pid" || break; sleep 0.5; done
  fi
  if group_alive "$pid"; then echo "processes of session $pid are still alive: $(session_pids "$pid")" >&2; exit 1; fi
  [ -f "$state/temp_dir" ] && rm -rf "$(cat "$state/temp_dir")"
  rm -f "$state/ray.pid" "$state/temp_dir"
  echo "ray head stopped (session $pid)"
  ;;
status)
  if [ -f "$state/ray.pid" ] && group_alive "$(cat "$state/ray.pid")"; then
    echo "running: session $(cat "$state/ray.pid")"; ps -o pid=,comm= -s "$(cat "$state/ray.pid")"
  else
    echo "not running"; exit 3
  fi
  ;;
*) usage ;;
esac
