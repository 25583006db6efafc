#!/usr/bin/env bash
# Replace every proxy replica of a running Compose stack with one started from the current .env
# (a rotated ADMIN_TOKEN, a new UPSTREAM_API_KEY, a new image), with no gap for clients.
#
#   scripts/compose_rolling_restart.sh            # from the checkout, after editing .env
#
# `docker compose up -d` recreates every replica, and the front with them: measured, 6.7 s in
# which every request failed (docs/operations.md). This starts the new replicas beside the old
# ones, has the front send to all of them, stops the old ones (their streams get the proxy's
# shutdown grace) and has the front forget them. The logger is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

reload_front() {
  # nginx resolves `proxy` when it reloads; right after replicas start or go, the engine's DNS
  # may not answer for the name yet (seen with podman): wait until the config checks, then reload.
  for _ in $(seq 20); do
    if docker compose exec -T front nginx -t >/dev/null 2>&1; then
      docker compose exec -T front nginx -s reload >/dev/null
      return
    fi
    sleep 0.5
  done
  echo "the front cannot resolve the proxy replicas: run docker compose restart front" >&2
  exit 1
}

old=$(docker compose ps -q proxy)
count=$(printf '%s\n' "$old" | grep -c . || true)
if [ "$count" -eq 0 ]; then
  echo "no proxy replica runs: use docker compose up -d" >&2
  exit 1
fi
docker compose up -d --no-deps --no-recreate --scale "proxy=$((count * 2))" --wait proxy
reload_front
# shellcheck disable=SC2086  # one container id per word
docker stop -t 35 $old >/dev/null
# shellcheck disable=SC2086
docker rm $old >/dev/null
reload_front
echo "replaced $count proxy replicas"
