"""DynamoDB for LocalStack through moto.

LocalStack's own DynamoDB providers forward to DynamoDB Local, a Java program fetched on first
use; where nothing can be fetched, this provider answers every operation from the moto backend
that LocalStack already bundles. Select it with PROVIDER_OVERRIDE_DYNAMODB=moto.

moto's tables take no locks, while LocalStack serves requests on many threads: two conditional
writes to one item could both pass their condition. DynamoDB applies each write atomically, so
this provider serves one DynamoDB request at a time.
"""

import threading

from localstack.aws.api.dynamodb import DynamodbApi
from localstack.services.moto import MotoFallbackDispatcher
from localstack.services.plugins import Service, aws_provider

_one_at_a_time = threading.Lock()


class MotoDynamoDBProvider(DynamodbApi):
    """Implements no operation itself: the fallback dispatcher hands each one to moto."""


def _serialized(handler):
    def serve(context, request):
        with _one_at_a_time:
            return handler(context, request)

    return serve


def _dispatch_table(provider):
    table = MotoFallbackDispatcher(provider)
    return {operation: _serialized(handler) for operation, handler in table.items()}


@aws_provider(api="dynamodb", name="moto")
def dynamodb_moto():
    return Service.for_provider(MotoDynamoDBProvider(), dispatch_table_factory=_dispatch_table)
