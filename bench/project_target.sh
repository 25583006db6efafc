#!/usr/bin/env bash
# Start the whole project for a benchmark: a private Redis and the logger on a side CPU, then
# `exec` the proxy, so whoever started this script (the shared rig pins it with `taskset -c 0`)
# measures the proxy process alone.
#
#   UPSTREAM_BASE_URL=http://127.0.0.1:18080/v1 PORT=18100 bench/project_target.sh [RUN_DIR]
#
# Environment (all optional except UPSTREAM_BASE_URL):
#   UPSTREAM_BASE_URL  upstream the proxy forwards to (required)
#   HOST, PORT         where the proxy listens (default 127.0.0.1:8866)
#   RUN_DIR            scratch directory (or the first argument; default: a new /tmp/b23-bench.*)
#   PROJECT_DIR        the repository (default: the parent of this script's folder)
#   PYTHON             interpreter with the project installed (default $PROJECT_DIR/.venv/bin/python)
#   SIDE_CPU           CPU list for Redis, the logger and the watchdog (default 1; empty = no pinning)
#   REDIS_PORT         port of the private Redis (default: a free port; never 6379 unless you say so)
#   BENCH_KEY          API key written to keys.json (default bsk-bench)
#   BENCH_KEY_FIELDS   extra JSON members for that key, e.g. to exercise the rate limiter:
#                      '"rpm_limit": 1000000000, "tpm_limit": 1000000000000'
#   ADMIN_TOKEN        default: a fixed 24-character benchmark token
#   Any other proxy setting (LIMITS_FAIL_OPEN, MAX_LOG_CHUNKS, ...) is passed through.
#
# Layout of RUN_DIR afterwards: data/keys.json, data/events.jsonl (what the logger wrote),
# redis.log, logger.log, watchdog.log, side-cpu.txt (CPU seconds Redis and the logger used).
#
# Redis and the logger are started detached (own session, parent = init), NOT as children of the
# proxy: a rig that sums CPU and RSS over the proxy's process tree then counts the proxy only,
# and a rig that kills the proxy's process group does not kill them half way. A detached
# watchdog waits for the proxy's pid (this shell's pid, kept across `exec`) to end and then
# stops the logger and Redis. A shell `trap` cannot do that part, because `exec` drops traps;
# the trap below covers failures before the `exec`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_DIR="${PROJECT_DIR:-$(dirname "$here")}"
PYTHON="${PYTHON:-$PROJECT_DIR/.venv/bin/python}"
RUN_DIR="${1:-${RUN_DIR:-$(mktemp -d /tmp/b23-bench.XXXXXX)}}"
SIDE_CPU="${SIDE_CPU-1}"
BENCH_KEY="${BENCH_KEY:-bsk-bench}"
: "${UPSTREAM_BASE_URL:?set UPSTREAM_BASE_URL, e.g. http://127.0.0.1:18080/v1}"

mkdir -p "$RUN_DIR/data"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
side=()
[[ -n "$SIDE_CPU" ]] && side=(taskset -c "$SIDE_CPU")

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [[ -z "${REDIS_PORT:-}" ]]; then  # a free port, found without starting an interpreter
  REDIS_PORT=$((20000 + RANDOM % 40000))
  while port_in_use "$REDIS_PORT"; do REDIS_PORT=$((20000 + RANDOM % 40000)); done
fi

export HOST="${HOST:-127.0.0.1}" PORT="${PORT:-8866}" UPSTREAM_BASE_URL
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export DATA_DIR="$RUN_DIR/data"
export ADMIN_TOKEN="${ADMIN_TOKEN:-bench-admin-token-0123456789}"
export SHUTDOWN_GRACE_SECONDS="${SHUTDOWN_GRACE_SECONDS:-3}"
export PYTHONDONTWRITEBYTECODE=1

printf '{"keys": [{"api_key": "%s", "user_id": "bench", "active": true%s}]}\n' \
  "$BENCH_KEY" "${BENCH_KEY_FIELDS:+, $BENCH_KEY_FIELDS}" > "$DATA_DIR/keys.json"

# detached start: `( ... & )` lets the subshell exit, so the process is re-parented to init
( setsid "${side[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --daemonize no --logfile "$RUN_DIR/redis.log" </dev/null >/dev/null 2>&1 &
  echo $! > "$RUN_DIR/redis.pid" )
( cd "$RUN_DIR"
  setsid "${side[@]}" "$PYTHON" -m logger_service </dev/null >"$RUN_DIR/logger.log" 2>&1 &
  echo $! > "$RUN_DIR/logger.pid" )
redis_pid="$(cat "$RUN_DIR/redis.pid")"
logger_pid="$(cat "$RUN_DIR/logger.pid")"

stop_side() {
  kill -TERM "$logger_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$logger_pid" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$redis_pid" 2>/dev/null || true
}
trap 'stop_side' EXIT

# The proxy starts beside the logger rather than after it, and without waiting for Redis (its
# import alone takes longer than Redis's start; it retries the connection anyway): its /readyz
# turns 200 once the logger has loaded keys.json into Redis (announced on pub/sub), so start-up
# costs the slower of the three, not their sum.

# the watchdog: when the proxy (this pid) is gone, record side CPU and stop logger + Redis
proxy_pid=$$
( setsid "${side[@]}" bash -c '
    proxy=$1 logger=$2 redis=$3 run=$4
    while kill -0 "$proxy" 2>/dev/null; do sleep 0.5; done
    hz=$(getconf CLK_TCK)
    cpu() { awk -v hz="$hz" "{printf \"%.2f\", (\$14 + \$15) / hz}" "/proc/$1/stat" 2>/dev/null || echo "?"; }
    echo "logger_cpu_s $(cpu "$logger") redis_cpu_s $(cpu "$redis")" > "$run/side-cpu.txt"
    kill -TERM "$logger" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$logger" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$redis" 2>/dev/null
    echo "stopped logger $logger and redis $redis after proxy $proxy exited"
  ' watchdog "$proxy_pid" "$logger_pid" "$redis_pid" "$RUN_DIR" </dev/null \
    >"$RUN_DIR/watchdog.log" 2>&1 & )

trap - EXIT
echo "redis :$REDIS_PORT pid $redis_pid, logger pid $logger_pid, run dir $RUN_DIR" >&2
cd "$RUN_DIR"
exec "$PYTHON" -m proxy_service
