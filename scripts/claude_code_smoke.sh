#!/usr/bin/env bash
# Smoke test of a running b23 deployment with Claude Code itself: one `claude -p` call through
# the proxy, its JSON result printed on stdout.
#
#   ANTHROPIC_BASE_URL=https://b23.example.internal ANTHROPIC_API_KEY=bsk-... \
#       scripts/claude_code_smoke.sh ["prompt"] [extra claude flags...]
#
# Claude Code runs in a fresh temporary HOME and working directory, with telemetry, error
# reporting, the auto-updater and non-essential traffic off, so it talks to the proxy only.
# It is found as $CLAUDE_CODE_BIN, else in $B23_CLAUDE_CODE_DIR (default ~/.cache/b23/claude-code,
# where tests/test_claude_code.py installs it), else as `claude` on PATH; when none exists it is
# `npm install`ed into that cache dir ($B23_CLAUDE_CODE_VERSION, default 2.1.332, the version tests/test_claude_code.py runs).
# Also: SMOKE_MODEL (--model, e.g. sonnet or haiku), SMOKE_TIMEOUT (seconds, default 180),
# SMOKE_DEBUG=1 (keep Claude Code's debug log and print its path on stderr).
# Exit status: Claude Code's (non-zero on any API error, e.g. a bad key or an upstream failure).
set -euo pipefail

: "${ANTHROPIC_BASE_URL:?set ANTHROPIC_BASE_URL to the proxy, e.g. http://127.0.0.1:8866}"
: "${ANTHROPIC_API_KEY:?set ANTHROPIC_API_KEY to a key of the proxy}"

prompt="${1:-Reply with exactly the word pong.}"
shift || true
version="${B23_CLAUDE_CODE_VERSION:-2.1.332}"
cache="${B23_CLAUDE_CODE_DIR:-$HOME/.cache/b23/claude-code}"

find_claude() {
  if [[ -n "${CLAUDE_CODE_BIN:-}" ]]; then
    echo "$CLAUDE_CODE_BIN"
  elif [[ -x "$cache/node_modules/.bin/claude" ]] && "$cache/node_modules/.bin/claude" --version >/dev/null 2>&1; then
    echo "$cache/node_modules/.bin/claude"
  elif command -v claude >/dev/null 2>&1; then
    command -v claude
  fi
}

claude_bin="$(find_claude)"
if [[ -z "$claude_bin" ]]; then
  echo "installing @anthropic-ai/claude-code@$version into $cache" >&2
  mkdir -p "$cache"
  npm install --prefix "$cache" --no-fund --no-audit "@anthropic-ai/claude-code@$version" >&2
  claude_bin="$(find_claude)"
  [[ -n "$claude_bin" ]] || { echo "claude still not runnable after npm install" >&2; exit 1; }
fi
echo "using $claude_bin ($("$claude_bin" --version 2>/dev/null || echo '?'))" >&2

scratch="$(mktemp -d -t b23-claude-smoke.XXXXXX)"
cleanup() {
  if [[ "${SMOKE_DEBUG:-}" == 1 ]]; then
    echo "debug log: $scratch/claude-debug.log" >&2
  else
    rm -rf "$scratch"
  fi
}
trap cleanup EXIT
mkdir -p "$scratch/home" "$scratch/work"

args=(-p "$prompt" --output-format json --max-turns 3)
if [[ -n "${SMOKE_MODEL:-}" ]]; then args+=(--model "$SMOKE_MODEL"); fi
if [[ "${SMOKE_DEBUG:-}" == 1 ]]; then args+=(--debug-file "$scratch/claude-debug.log"); fi

environment=(
  PATH="$PATH" HOME="$scratch/home" TMPDIR="$scratch/home" TERM=dumb LANG=C.UTF-8
  ANTHROPIC_BASE_URL="$ANTHROPIC_BASE_URL" ANTHROPIC_API_KEY="$ANTHROPIC_API_KEY"
  DISABLE_TELEMETRY=1 DISABLE_ERROR_REPORTING=1 DISABLE_AUTOUPDATER=1
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_NON_ESSENTIAL_MODEL_CALLS=1
)
for name in HTTPS_PROXY https_proxy NO_PROXY no_proxy NODE_EXTRA_CA_CERTS; do
  if [[ -n "${!name:-}" ]]; then environment+=("$name=${!name}"); fi
done

cd "$scratch/work"
status=0
env -i "${environment[@]}" timeout "${SMOKE_TIMEOUT:-180}" "$claude_bin" "${args[@]}" "$@" \
  || status=$?
echo >&2
if [[ $status -ne 0 ]]; then echo "claude exited $status" >&2; fi
exit "$status"
