# The project's entry points; each installs what it needs first.
SHELL := bash

.PHONY: test dev bench build deploy localstack-stop

## The whole service locally on LocalStack, with a demo storage unit; PORT picks the port.
dev:
	@scripts/dev.sh

## Every test, against a LocalStack this starts (and stops) itself.
test:
	@scripts/test.sh

## AWS requests per item and side-by-side timings, on LocalStack.
bench:
	@scripts/bench.sh

## Every function for Lambda (arm64, release) under target/lambda/.
build:
	@scripts/build.sh

## Build, then deploy the stack with the SAM CLI; STACK_NAME and PARAMETERS as in the README.
deploy:
	@scripts/deploy.sh

## Stop a LocalStack left running by an interrupted run.
localstack-stop:
	@localstack/localstack.sh stop
