#!/usr/bin/env bash
# The benchmarks: AWS requests per item and side-by-side timings, on LocalStack.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/local-stack.sh
use_local_stack reprocess-bench

cargo bench --locked -p integration-tests --bench requests
