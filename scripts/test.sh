#!/usr/bin/env bash
# Every test: starts LocalStack (or reuses one already on the port), lints the template,
# deploys its storage resources, runs the whole workspace's tests, and stops what it started.
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

echo "linting infra/template.yaml"
.localstack/venv/bin/cfn-lint infra/template.yaml

.localstack/venv/bin/python infra/deploy_storage.py "$endpoint" reprocess-test .localstack/test-stack.env
set -a
# shellcheck source=/dev/null
. .localstack/test-stack.env
set +a
export AWS_ENDPOINT_URL="$endpoint"

echo "make dev, walked as the README walks it"
scripts/dev-smoke.sh

cargo test --workspace --locked
