"""Helpers shared by the SQS client tests (real clients only; no mocks)."""
import boto3
from botocore.config import Config


def sqs_client(broker, access_key="test", secret_key="test"):
    """A boto3 SQS client for the broker's HTTP API (no retries, so errors show at once)."""
    return boto3.client(
        "sqs",
        endpoint_url=broker.http_url,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )
