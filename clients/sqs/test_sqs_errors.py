"""Every limit of the API raises the boto3 exception AWS would."""
import json

import pytest
from botocore.exceptions import ClientError


def code_of(exc_info):
    return exc_info.value.response["Error"]["Code"]


@pytest.fixture
def url(queue):
    return queue("err")


def test_unknown_queue(sqs, url):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as e:
        sqs.get_queue_url(QueueName="no-such-queue-here")
    assert code_of(e) == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url + "-missing", MessageBody="x")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.receive_message(QueueUrl=url + "-missing")


@pytest.mark.parametrize("kw", [
    {"MaxNumberOfMessages": 11},
    {"MaxNumberOfMessages": 0},
    {"VisibilityTimeout": 43201},
    {"WaitTimeSeconds": 21},
])
def test_receive_limits(sqs, url, kw):
    with pytest.raises(ClientError) as e:
        sqs.receive_message(QueueUrl=url, **kw)
    assert code_of(e) == "InvalidParameterValue"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_send_limits(sqs, url):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", DelaySeconds=901)
    assert code_of(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (1024 * 1024 + 1))
    assert code_of(e) == "InvalidParameterValue"
    with pytest.raises(sqs.exceptions.InvalidMessageContents):
        sqs.send_message(QueueUrl=url, MessageBody="bad \x01 char")
    # Exactly 1 MiB is accepted.
    sqs.send_message(QueueUrl=url, MessageBody="x" * (1024 * 1024))


def test_batch_limits(sqs, url):
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)])
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=[])
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"},
                                                       {"Id": "a", "MessageBody": "y"}])
    with pytest.raises(sqs.exceptions.InvalidBatchEntryId):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "bad id!", "MessageBody": "x"}])
    with pytest.raises(sqs.exceptions.BatchRequestTooLong):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x" * 600_000},
                                                       {"Id": "b", "MessageBody": "x" * 600_000}])
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": "x"} for i in range(11)])


def test_receipt_handles(sqs, url):
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-receipt-handle")
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle="garbage", VisibilityTimeout=5)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    (m,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    (again,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30)["Messages"]
    # The first handle is stale now: visibility changes are refused, deletes are ignored.
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=5)
    assert code_of(e) == "InvalidParameterValue"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"], VisibilityTimeout=43201)
    assert code_of(e) == "InvalidParameterValue"


def test_queue_attribute_errors(sqs, unique_name, url):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName="bad name")
    assert code_of(e) == "InvalidParameterValue"
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.create_queue(QueueName=unique_name(), Attributes={"Bogus": "1"})
    for attrs in ({"VisibilityTimeout": "43201"}, {"DelaySeconds": "901"},
                  {"ReceiveMessageWaitTimeSeconds": "21"}, {"MaximumMessageSize": "1048577"},
                  {"RedrivePolicy": json.dumps({"deadLetterTargetArn": "x", "maxReceiveCount": 0})}):
        with pytest.raises(sqs.exceptions.InvalidAttributeValue):
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName=url.rsplit("/", 1)[1], Attributes={"VisibilityTimeout": "5"})
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=unique_name(), Attributes={"FifoQueue": "true"})
    assert code_of(e) == "InvalidParameterValue"


def test_fifo_errors(sqs, queue):
    url = queue("fifoerr", fifo=True)
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageDeduplicationId="d")
    assert code_of(e) == "MissingParameter"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g")
    assert code_of(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g",
                         MessageDeduplicationId="d", DelaySeconds=5)
    assert code_of(e) == "InvalidParameterValue"
