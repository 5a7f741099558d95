#!/usr/bin/env bash
# Every test: LocalStack and the template's storage resources, the template's lint, `make dev`
# walked as the README walks it, and the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/local-stack.sh
use_local_stack reprocess-test

echo "linting infra/template.yaml"
.localstack/venv/bin/cfn-lint infra/template.yaml

echo "make dev, walked as the README walks it"
scripts/dev-smoke.sh

cargo test --workspace --locked 2>&1 | tee .localstack/cargo-test.log
# One line for the whole run, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "all suites: %d passed, %d failed\n", passed, failed }' \
  .localstack/cargo-test.log
