# The project's entry points; each installs what it needs first.
SHELL := bash

.PHONY: test dev bench build deploy localstack-stop

## The whole service locally on LocalStack, with a demo storage unit; PORT picks the port.
dev:
	@scripts/dev.sh

## Every test, against a LocalStack this starts (and stops) itself.
test:
	@scripts/test.sh

## Stop a LocalStack left running by an interrupted run.
localstack-stop:
	@localstack/localstack.sh stop
