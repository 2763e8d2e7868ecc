"""Fixtures of the SQS client tests: boto3 clients pointed at the session's broker."""
import pytest

from sqsutil import sqs_client


@pytest.fixture
def sqs(broker):
    return sqs_client(broker)


@pytest.fixture
def queue(sqs, unique_name):
    """Creates a fresh queue (FIFO when `fifo`) with the given attributes; returns its URL."""
    def make(prefix="q", fifo=False, **attrs):
        name = unique_name(prefix) + (".fifo" if fifo else "")
        if fifo:
            attrs["FifoQueue"] = "true"
        attributes = {k: str(v) for k, v in attrs.items()}
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return make
