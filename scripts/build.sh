#!/usr/bin/env bash
# Builds every function for Lambda: arm64, release, size-optimised, one `bootstrap` per
# function under target/lambda/<function>/, which infra/template.yaml points at.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=.tools/venv
if [ ! -x "$tools/bin/cargo-lambda" ]; then
  echo "installing cargo-lambda into $tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check 'cargo-lambda==1.9.2'
fi
export PATH="$PWD/$tools/bin:$PATH"
rustup target add aarch64-unknown-linux-gnu >/dev/null

functions=(reprocess-key reprocess-keys reprocess-all reprocess-reset reprocess-status
  admin transaction-execute access-fetch reprocess-worker)
bins=()
for function in "${functions[@]}"; do
  bins+=(--bin "$function")
done
cargo lambda build --release --arm64 --locked "${bins[@]}"
for function in "${functions[@]}"; do
  ls -l "target/lambda/$function/bootstrap" | awk -v f="$function" '{printf "%-22s %6.1f MB\n", f, $5 / 1048576}'
done
