#!/usr/bin/env bash
# The whole service on this machine: LocalStack, the template's tables and queues, a demo
# storage unit, every route on http://127.0.0.1:$PORT and the worker. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."

export AWS_EC2_METADATA_DISABLED=true
endpoint="http://127.0.0.1:${LOCALSTACK_PORT:-4566}"

# The pinned venv also carries the tools the scripts use (cfn-lint, the storage deploy).
localstack/localstack.sh install
# A LocalStack already running is reused and left running; one started here is stopped.
if localstack/localstack.sh running; then
  echo "reusing the LocalStack already answering on $endpoint"
else
  localstack/localstack.sh start
  trap 'localstack/localstack.sh stop' EXIT
fi

.localstack/venv/bin/python infra/deploy_storage.py "$endpoint" reprocess-dev .localstack/dev-stack.env
set -a
# shellcheck source=/dev/null
. .localstack/dev-stack.env
set +a
export AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export PORT="${PORT:-3000}" RUST_LOG="${RUST_LOG:-info}"

cargo build --locked -p local-gateway
# Not exec: when the gateway ends on Ctrl-C, the trap above stops LocalStack.
target/debug/local-gateway || true
