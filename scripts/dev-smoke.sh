#!/usr/bin/env bash
# Runs `make dev` the way a newcomer would, walks part of the README's curl walkthrough
# against it, then stops it with Ctrl-C (SIGINT) and checks that it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${SMOKE_PORT:-3987}"
log=.localstack/dev-smoke.log
mkdir -p .localstack
setsid env PORT="$port" scripts/dev.sh >"$log" 2>&1 &
dev=$!
trap 'kill -INT -- "-$dev" 2>/dev/null || true' EXIT

for _ in $(seq 1 600); do
  grep -q "serving every route" "$log" && break
  kill -0 "$dev" 2>/dev/null || { echo "make dev exited early:"; tail -n 30 "$log"; exit 1; }
  sleep 0.5
done
grep -q "serving every route" "$log" || { echo "make dev did not start:"; tail -n 30 "$log"; exit 1; }

B="http://127.0.0.1:$port"
expect() {
  local wanted=$1
  shift
  local answer
  answer=$(curl -s "$@")
  if ! grep -qF -- "$wanted" <<<"$answer"; then
    echo "FAILED: curl $* answered $answer, expected $wanted"
    exit 1
  fi
  echo "ok: curl $*"
}
expect '"storageUnit":"mine"' -X PUT "$B/admin/storageUnits/mine" -d '{"reprocessQueue":{"enabled":true}}'
expect '"key":"reports/2026/q4"' -X POST "$B/transaction/execute/mine/index" \
  -d '{"key":"reports/2026/q4","content":{"title":"Q4"},"action":"update"}'
expect '"content":{"index":{"title":"Q4"}}' "$B/access/fetch/mine/reports%2F2026%2Fq4/index"
expect '{"message":"OK"}' -X POST "$B/admin/setContentProcessingModules/mine" \
  -d "{\"modules\":{\"index\":[{\"module\":\"webhook\",\"settings\":{\"url\":\"$B/dev/webhook\"}}]}}"
expect '"queued":1' -X POST "$B/reprocess/key/mine/reports%2F2026%2Fq4/index"
for _ in $(seq 1 100); do
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -q 'Process event received storage_unit="mine" key="reports/2026/q4"' && break
  sleep 0.2
done
sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -q 'Process event received storage_unit="mine" key="reports/2026/q4"' ||
  { echo "FAILED: the demo webhook did not log the Process event"; tail -n 30 "$log"; exit 1; }
echo "ok: the demo webhook logged the Process event"
expect '"expansionId"' -X POST "$B/reprocess/all/demo/index"
expect '"requeued":0' -X POST "$B/reprocess/reset/mine"

kill -INT -- "-$dev"
for _ in $(seq 1 50); do
  kill -0 "$dev" 2>/dev/null || break
  sleep 0.2
done
if kill -0 "$dev" 2>/dev/null || pgrep -f "target/debug/local-gateway" >/dev/null; then
  echo "FAILED: make dev did not stop on SIGINT"
  exit 1
fi
trap - EXIT
echo "make dev answered every step and stopped on SIGINT"
