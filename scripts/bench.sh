#!/usr/bin/env bash
# The benchmarks, against a LocalStack this starts (or reuses) and stops.
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

.localstack/venv/bin/python infra/deploy_storage.py "$endpoint" reprocess-bench .localstack/bench-stack.env
set -a
# shellcheck source=/dev/null
. .localstack/bench-stack.env
set +a
export AWS_ENDPOINT_URL="$endpoint"

cargo bench --locked -p integration-tests --bench requests
