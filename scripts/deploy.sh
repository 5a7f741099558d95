#!/usr/bin/env bash
# Builds the functions and deploys the stack to the AWS account of the current credentials.
#   STACK_NAME   the CloudFormation stack (default: reprocess)
#   PARAMETERS   template parameter overrides, e.g. "ApiAuthorization=JWT JwtIssuer=https://..."
set -euo pipefail
cd "$(dirname "$0")/.."

tools=.tools/venv
if [ ! -x "$tools/bin/sam" ]; then
  echo "installing the AWS SAM CLI into $tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check 'aws-sam-cli==1.170.0'
fi
scripts/build.sh

overrides=()
if [ -n "${PARAMETERS:-}" ]; then
  overrides=(--parameter-overrides "$PARAMETERS")
fi
# SAM keeps its telemetry and metadata under HOME; the project's folder keeps them local.
HOME="$PWD/.tools" SAM_CLI_TELEMETRY=0 "$tools/bin/sam" deploy \
  --template-file infra/template.yaml \
  --stack-name "${STACK_NAME:-reprocess}" \
  --capabilities CAPABILITY_IAM \
  --resolve-s3 \
  --no-fail-on-empty-changeset \
  "${overrides[@]}"
