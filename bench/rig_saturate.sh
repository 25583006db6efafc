#!/usr/bin/env bash
# Quick A/B between two builds, with the shared rig's tools but without its full run: the rig's
# Go mock on CPU 1, the project (bench/project_target.sh) with the proxy on CPU 0, wrk -c32 per
# mode; prints req/s, the proxy's CPU µs per request (utime+stime from /proc) and its RSS.
#
#   RIG=/tmp/bench DUR=6 bench/rig_saturate.sh [modes...]
#   (MOCK_PORT, PROXY_PORT: default 18081, 18101; pick others beside another run)
#
# RIG is a copy of the shared rig that has run once (its mock is built and its wrk scripts for
# the PROJECT target exist under .cache/runs). Run it several times, interleaving the builds
# being compared: single runs move by ±5 % on a shared machine.
#
# PROFILE=DIR also records each mode's measured run with py-spy (on CPU 1, 200 Hz, into
# DIR/<mode>.json, speedscope format) and prints its layers with bench/pyspy_summary.py. The
# real-size modes' wrk scripts exist once the rig copy of bench/rig_setup.py has run them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MOCK_PORT="${MOCK_PORT:-18081}" PROXY_PORT="${PROXY_PORT:-18101}"
RIG="${RIG:-/tmp/bench}" DUR="${DUR:-6}" PYTHON="${PYTHON:-$(dirname "$here")/.venv/bin/python}"
modes=("${@:-openai-nonstream openai-stream anthropic-nonstream anthropic-stream}")
lua="$(ls -d "$RIG"/.cache/runs/*/lua | head -1)"
run_dir="$(mktemp -d /tmp/b23-saturate.XXXXXX)"
taskset -c 1 "$RIG/.cache/bin/mock" -addr 127.0.0.1:$MOCK_PORT >/dev/null 2>&1 &
mock=$!
PYTHON="$PYTHON" UPSTREAM_BASE_URL=http://127.0.0.1:$MOCK_PORT/v1 PORT=$PROXY_PORT \
  taskset -c 0 "$here/project_target.sh" "$run_dir" >"$run_dir/target.log" 2>&1 &
proxy=$!
trap 'kill $proxy $mock 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:$PROXY_PORT/readyz >/dev/null; do sleep 0.02; done
sleep 1
echo "idle $(grep VmRSS "/proc/$proxy/status" | tr -s ' \t' ' ')"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$proxy/stat"; }
for mode in ${modes[*]}; do
  path=/v1/chat/completions; [[ $mode == anthropic* ]] && path=/v1/messages
  [[ $mode == responses* ]] && path=/v1/responses
  url="http://127.0.0.1:$PROXY_PORT$path" script="$lua/PROJECT-$mode.lua"
  taskset -c 1 wrk -t1 -c32 -d2s -s "$script" "$url" >/dev/null  # warm-up
  if [[ -n "${PROFILE:-}" ]]; then
    mkdir -p "$PROFILE"
    taskset -c 1 "$(dirname "$PYTHON")/py-spy" record -p "$proxy" -d "$DUR" -r 200 \
      --nonblocking --format speedscope -o "$PROFILE/$mode.json" >/dev/null 2>&1 &
    spy=$!
  fi
  before=$(cpu_ticks)
  summary=$(taskset -c 1 wrk -t1 -c32 -d"${DUR}s" -s "$script" "$url" | sed -n 's/^WRKJSON //p')
  after=$(cpu_ticks)
  python3 -c "
import json, sys
d = json.loads(sys.argv[1]); n = d['requests']; seconds = d['duration_us'] / 1e6
errors = sum(v for k, v in d.items() if k.startswith('err_'))
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4]) / n * 1e6
print(f'{sys.argv[5]:20s} {n / seconds:7.0f} req/s  {cpu_us:5.0f} us CPU/req  errors {errors}')
" "$summary" "$before" "$after" "$(getconf CLK_TCK)" "$mode"
  echo "    $(grep -E 'VmRSS|VmHWM' "/proc/$proxy/status" | tr -s ' \t\n' ' ')"
  if [[ -n "${PROFILE:-}" ]]; then
    wait "$spy" || true
    "$PYTHON" "$here/pyspy_summary.py" "$PROFILE/$mode.json" > "$PROFILE/$mode.txt" || true
    echo "    profile: $PROFILE/$mode.txt"
  fi
done
