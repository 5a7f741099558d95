# The project's entry points; each installs what it needs first.
SHELL := bash

.PHONY: test dev bench build deploy localstack-stop

## Every test, against a LocalStack this starts (and stops) itself.
test:
	@scripts/test.sh

## Stop a LocalStack left running by an interrupted run.
localstack-stop:
	@localstack/localstack.sh stop
