"""Deploys the storage resources of infra/template.yaml (tables and queues) to LocalStack.

LocalStack's community edition cannot run the functions or the HTTP API here, so the
integration tests deploy exactly the template's DynamoDB tables and SQS queues, through
CloudFormation, and run the function code against them. The stack's outputs are written as
an environment file for the tests and `make dev`.

usage: python deploy_storage.py ENDPOINT STACK_NAME ENV_FILE
"""

import json
import sys
from pathlib import Path

import boto3
from botocore.exceptions import ClientError
from cfnlint.decode import decode_str

STORAGE_TYPES = {"AWS::DynamoDB::Table", "AWS::SQS::Queue"}
OUTPUT_VARIABLES = {
    "ConfigTableName": "CONFIG_TABLE",
    "ContentTableName": "CONTENT_TABLE",
    "QueueTableName": "QUEUE_TABLE",
    "WorkQueueUrl": "WORK_QUEUE_URL",
    "WorkDeadLetterQueueUrl": "WORK_DLQ_URL",
}


def references(node):
    """Logical ids a template fragment refers to with Ref or Fn::GetAtt."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "Ref" and isinstance(value, str):
                yield value
            elif name == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else value.split(".")[0]
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def storage_template(path):
    template, matches = decode_str(Path(path).read_text())
    if template is None:
        sys.exit(f"{path} does not parse: {matches}")
    resources = {name: body for name, body in template["Resources"].items() if body["Type"] in STORAGE_TYPES}
    kept = set(resources) | set(template.get("Parameters", {}))
    outputs = {
        name: body
        for name, body in template.get("Outputs", {}).items()
        if set(references(body)) <= kept and name in OUTPUT_VARIABLES
    }
    used = set(references(resources))
    parameters = {name: body for name, body in template.get("Parameters", {}).items() if name in used}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": parameters,
        "Resources": resources,
        "Outputs": outputs,
    }


def deploy(endpoint, stack_name, body):
    cloudformation = boto3.client(
        "cloudformation",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        cloudformation.describe_stacks(StackName=stack_name)
        exists = True
    except ClientError:
        exists = False
    if exists:
        try:
            cloudformation.update_stack(StackName=stack_name, TemplateBody=body)
            cloudformation.get_waiter("stack_update_complete").wait(
                StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
        except ClientError as error:
            if "No updates" not in str(error):
                raise
    else:
        cloudformation.create_stack(StackName=stack_name, TemplateBody=body)
        cloudformation.get_waiter("stack_create_complete").wait(
            StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def main():
    endpoint, stack_name, env_file = sys.argv[1:4]
    template_path = Path(__file__).with_name("template.yaml")
    outputs = deploy(endpoint, stack_name, json.dumps(storage_template(template_path)))
    missing = [name for name in OUTPUT_VARIABLES if name not in outputs]
    if missing:
        sys.exit(f"the stack has no outputs {missing}")
    lines = [f"{variable}={outputs[name]}" for name, variable in OUTPUT_VARIABLES.items()]
    Path(env_file).write_text("\n".join(lines) + "\n")
    print(f"storage stack {stack_name} deployed; settings in {env_file}")


if __name__ == "__main__":
    main()
