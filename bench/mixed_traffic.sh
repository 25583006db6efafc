#!/usr/bin/env bash
# Mixed traffic: 20 req/s of each real-size mode beside 200 req/s of 1 KB openai-stream, against
# the project and the rig's minimal aiohttp passthrough (IDEAL-AIOHTTP), each alone on CPU 0, with the
# rig's Go mock and bench/load.py on CPU 1; p99 of both loads per mode (bench/README.md).
#
#   RIG=/tmp/bench-real bench/mixed_traffic.sh     (a rig copy from bench/rig_setup.py that has run once)
set -euo pipefail
cd "$(dirname "$0")/.."
RIG="${RIG:-/tmp/bench-real}"
MODES=anthropic-nonstream-78k,anthropic-stream-78k,anthropic-stream-370k,openai-stream-77k
taskset -c 1 "$RIG"/.cache/bin/mock -addr 127.0.0.1:18087 >/dev/null 2>&1 & mock=$!
trap 'kill $mock 2>/dev/null || true' EXIT
sleep 0.5
run() {  # name url
  taskset -c 1 .venv/bin/python bench/load.py --url "$2" --key bsk-bench --modes $MODES \
    --rate 20 --mix-rate 200 --mix-mode openai-stream --duration 8 --warmup 2 --out /tmp/mixed-$1.json 2>&1 | tail -12
}
rd=$(mktemp -d /tmp/b23-mixed.XXXXXX)
UPSTREAM_BASE_URL=http://127.0.0.1:18087/v1 PORT=18107 taskset -c 0 bench/project_target.sh $rd >$rd/t.log 2>&1 & p=$!
until curl -sf http://127.0.0.1:18107/readyz >/dev/null; do sleep 0.1; done
run project http://127.0.0.1:18107
kill $p; sleep 2
(cd "$RIG"/reference && UPSTREAM_BASE_URL=http://127.0.0.1:18087/v1 IDEAL_CLIENT=aiohttp PROXY_KEYS=bsk-bench \
  taskset -c 0 "$RIG"/.venv-ideal/bin/uvicorn ideal_proxy:app --host 127.0.0.1 --port 18108 --loop uvloop --http httptools --no-access-log --log-level warning) & i=$!
until curl -sf http://127.0.0.1:18108/healthz >/dev/null; do sleep 0.1; done
run ideal http://127.0.0.1:18108
kill $i
