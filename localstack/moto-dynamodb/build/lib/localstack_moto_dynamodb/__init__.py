"""DynamoDB for LocalStack through moto.

LocalStack's own DynamoDB providers forward to DynamoDB Local, a Java program fetched on first
use; where nothing can be fetched, this provider answers every operation from the moto backend
that LocalStack already bundles. Select it with PROVIDER_OVERRIDE_DYNAMODB=moto.
"""

from localstack.aws.api.dynamodb import DynamodbApi
from localstack.services.moto import MotoFallbackDispatcher
from localstack.services.plugins import Service, aws_provider


class MotoDynamoDBProvider(DynamodbApi):
    """Implements no operation itself: the fallback dispatcher hands each one to moto."""


@aws_provider(api="dynamodb", name="moto")
def dynamodb_moto():
    return Service.for_provider(MotoDynamoDBProvider(), dispatch_table_factory=MotoFallbackDispatcher)
