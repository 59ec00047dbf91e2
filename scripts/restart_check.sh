#!/usr/bin/env bash
# Manual check of the kill path of `nrm up`, on a throw-away data dir and non-default ports:
# up -> kill -9 the supervisor -> `nrm down` (must stop every orphan) -> up again -> status -> down.
# The automated version, with a case opened and checked across the restart: tests/e2e/test_nrm_up.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export NRM_DATA_DIR=${NRM_DATA_DIR:-$(mktemp -d /tmp/nrm-restart-XXXXXX)}
base=${BASE_PORT:-27000}
export NRM_TEMPORAL_PORT=$((base + 233)) NRM_TEMPORAL_UI_PORT=$((base + 234)) NRM_INTAKE_PORT=$((base + 101))
export NRM_VERIFICATION_PORT=$((base + 102)) NRM_SUPPORT_PORT=$((base + 103)) NRM_OVERSIGHT_PORT=$((base + 104))
export NRM_CODEC_PORT=$((base + 105))
unset NRM_DATABASE_URL NRM_TEMPORAL_ADDRESS

wait_ready() {  # $1 = supervisor pid
  for _ in $(seq 1 240); do
    grep -q "\[6/6\] ready" "$NRM_DATA_DIR/up.out" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || { echo "nrm up exited"; cat "$NRM_DATA_DIR/up.out"; return 1; }
    sleep 0.5
  done
  echo "not ready in 120 s"; return 1
}

echo "data dir: $NRM_DATA_DIR"
$PY -m nrm.cli up >"$NRM_DATA_DIR/up.out" 2>&1 & sup=$!
wait_ready $sup
$PY -m nrm.cli status
echo "--- kill -9 supervisor $sup"
kill -9 $sup; wait $sup 2>/dev/null || true
$PY -m nrm.cli down
leftover=$(pgrep -f "$NRM_DATA_DIR" || true)
[ -z "$leftover" ] || { echo "FAIL: processes left on the data dir: $leftover"; exit 1; }
echo "--- up again on the same data dir"
: >"$NRM_DATA_DIR/up.out"
$PY -m nrm.cli up >"$NRM_DATA_DIR/up.out" 2>&1 & sup=$!
wait_ready $sup
$PY -m nrm.cli status
$PY -m nrm.cli down
wait $sup
echo "OK (data kept in $NRM_DATA_DIR)"
