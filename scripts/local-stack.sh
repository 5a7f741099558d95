# Sourced by the scripts that run against LocalStack. `use_local_stack NAME` installs LocalStack,
# starts it unless one already answers (a LocalStack started here is stopped when the script
# exits; one found running is left running), deploys the template's tables and queues as the
# stack NAME, and exports their names and the endpoint.
use_local_stack() {
  local stack=$1
  export AWS_EC2_METADATA_DISABLED=true
  endpoint="http://127.0.0.1:${LOCALSTACK_PORT:-4566}"

  # The pinned venv also carries the tools used below (cfn-lint, the storage deploy).
  localstack/localstack.sh install
  if localstack/localstack.sh running; then
    echo "reusing the LocalStack already answering on $endpoint"
  else
    localstack/localstack.sh start
    trap 'localstack/localstack.sh stop' EXIT
  fi

  .localstack/venv/bin/python infra/deploy_storage.py "$endpoint" "$stack" ".localstack/$stack.env"
  set -a
  # shellcheck source=/dev/null
  . ".localstack/$stack.env"
  set +a
  export AWS_ENDPOINT_URL="$endpoint"
}
