#!/usr/bin/env bash
# The whole service on this machine: LocalStack, the template's tables and queues, a demo
# storage unit, every route on http://127.0.0.1:$PORT and the worker. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/local-stack.sh
use_local_stack reprocess-dev

export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export PORT="${PORT:-3000}" RUST_LOG="${RUST_LOG:-info}"
cargo build --locked -p local-gateway
# Not exec: when the gateway ends on Ctrl-C, the trap set above stops LocalStack.
target/debug/local-gateway || true
