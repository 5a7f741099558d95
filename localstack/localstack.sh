#!/usr/bin/env bash
# Installs, starts and stops the LocalStack that the tests and `make dev` run against.
#
#   localstack/localstack.sh install   venv with pinned versions, in .localstack/ (idempotent)
#   localstack/localstack.sh start     start on 127.0.0.1:$LOCALSTACK_PORT unless one already answers
#   localstack/localstack.sh stop      stop it, if this script started it
#   localstack/localstack.sh running   exit 0 when a LocalStack answers on the port
#
# LocalStack runs in host mode (no Docker engine here) with DynamoDB served by moto, because
# LocalStack's own DynamoDB providers download a Java program at first use.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.localstack"
venv="$state/venv"
port="${LOCALSTACK_PORT:-4566}"
endpoint="http://127.0.0.1:$port"
pidfile="$state/localstack.pid"
log="$state/localstack.log"

find_python() {
  local candidate
  for candidate in "${LOCALSTACK_PYTHON:-}" \
    "$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python3" \
    python3.13 python3.12; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  echo "localstack-core needs Python 3.12 or newer; set LOCALSTACK_PYTHON to one" >&2
  exit 1
}

healthy() {
  curl -fsS --max-time 2 "$endpoint/_localstack/health" >/dev/null 2>&1
}

install() {
  local stamp wanted
  wanted=$(cat "$root/localstack/constraints.txt" "$root/localstack/moto-dynamodb/pyproject.toml" \
    "$root/localstack/moto-dynamodb/localstack_moto_dynamodb/__init__.py" | sha256sum | cut -d' ' -f1)
  stamp="$venv/.installed"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    return
  fi
  echo "installing LocalStack into $venv (about a minute)"
  rm -rf "$venv"
  mkdir -p "$state"
  "$(find_python)" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -c "$root/localstack/constraints.txt" 'localstack-core[runtime]==2026.3.0' cfn-lint
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation \
    "$root/localstack/moto-dynamodb"
  echo "$wanted" >"$stamp"
}

start() {
  if healthy; then
    echo "reusing the LocalStack already answering on $endpoint"
    return
  fi
  install
  mkdir -p "$state/data"
  echo "starting LocalStack on $endpoint (log: $log)"
  (
    cd "$state"
    # Host mode, loopback only, and no way out: any download it tries fails at once.
    OVERRIDE_IN_DOCKER=0 GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" \
      DNS_ADDRESS=0 DISABLE_EVENTS=1 SERVICES=sqs,dynamodb,cloudformation,sts \
      PROVIDER_OVERRIDE_DYNAMODB=moto SQS_ENDPOINT_STRATEGY=path \
      FILESYSTEM_ROOT="$state/data" OUTBOUND_HTTP_PROXY=http://127.0.0.1:9 \
      OUTBOUND_HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY= HTTPS_PROXY= \
      setsid "$venv/bin/python" -m localstack.runtime.main >"$log" 2>&1 &
    echo $! >"$pidfile"
  )
  for _ in $(seq 1 120); do
    if healthy; then
      echo "LocalStack is up"
      return
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "LocalStack exited while starting; the end of its log:" >&2
      tail -n 40 "$log" >&2
      rm -f "$pidfile"
      exit 1
    fi
    sleep 0.5
  done
  echo "LocalStack did not answer on $endpoint within 60 s; the end of its log:" >&2
  tail -n 40 "$log" >&2
  stop
  exit 1
}

stop() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  # setsid made it a process group leader: end the group, so no child outlives it.
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "LocalStack stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  running) healthy ;;
  *)
    echo "usage: $0 install|start|stop|running" >&2
    exit 2
    ;;
esac
