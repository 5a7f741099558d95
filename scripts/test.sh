#!/usr/bin/env bash
# Every test: starts LocalStack (or reuses one already on the port), lints the template,
# deploys its storage resources, runs the whole workspace's tests, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

export AWS_EC2_METADATA_DISABLED=true
endpoint="http://127.0.0.1:${LOCALSTACK_PORT:-4566}"

localstack/localstack.sh start
trap 'localstack/localstack.sh stop' EXIT

echo "linting infra/template.yaml"
.localstack/venv/bin/cfn-lint infra/template.yaml

.localstack/venv/bin/python infra/deploy_storage.py "$endpoint" reprocess-test .localstack/test-stack.env
set -a
# shellcheck source=/dev/null
. .localstack/test-stack.env
set +a
export AWS_ENDPOINT_URL="$endpoint"

cargo test --workspace --locked
