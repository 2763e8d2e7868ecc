"""Behaviour 5: validation errors carry AWS's error code and AWS's text, which names the
offending value and the rule (texts recorded from AWS where known, e.g. in LocalStack's
snapshot tests against AWS; the others follow AWS's "Value X for parameter Y is invalid.
Reason: Z." form)."""
import pytest
from botocore.exceptions import ClientError

from sqsutil import code_of, message_of, status_of


def fails(call, **kw):
    with pytest.raises(ClientError) as e:
        call(**kw)
    assert status_of(e) == 400, e.value.response
    return code_of(e), message_of(e)


def test_request_parameter_ranges(sqs, queue):
    url = queue("texts")
    assert fails(sqs.send_message, QueueUrl=url, MessageBody="m", DelaySeconds=5000) == (
        "InvalidParameterValue",
        "Value 5000 for parameter DelaySeconds is invalid. Reason: Must be >= 0 and <= 900.")
    assert fails(sqs.receive_message, QueueUrl=url, WaitTimeSeconds=21) == (
        "InvalidParameterValue",
        "Value 21 for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.")
    assert fails(sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=0) == (
        "InvalidParameterValue",
        "Value 0 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    (m,) = sqs.receive_message(QueueUrl=url)["Messages"]
    assert fails(sqs.change_message_visibility, QueueUrl=url, ReceiptHandle=m["ReceiptHandle"],
                 VisibilityTimeout=43201) == (
        "InvalidParameterValue",
        "Value 43201 for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200.")


def test_batch_entry_errors(sqs, queue):
    url = queue("batchtexts")
    assert fails(sqs.send_message_batch, QueueUrl=url,
                 Entries=[{"Id": "bad id!", "MessageBody": "x"}]) == (
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
        "It can be at most 80 letters long.")
    assert fails(sqs.send_message_batch, QueueUrl=url,
                 Entries=[{"Id": "a" * 81, "MessageBody": "x"}])[0] == \
        "AWS.SimpleQueueService.InvalidBatchEntryId"
    assert fails(sqs.delete_message_batch, QueueUrl=url,
                 Entries=[{"Id": "dup", "ReceiptHandle": "x"}, {"Id": "dup", "ReceiptHandle": "y"}]) == (
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "Id dup repeated.")
    assert fails(sqs.send_message_batch, QueueUrl=url,
                 Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)]) == (
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        "Maximum number of entries per request are 10. You have sent 11.")


def test_sizes(sqs, queue):
    url = queue("sizetexts", MaximumMessageSize=1024)
    assert fails(sqs.send_message, QueueUrl=url, MessageBody="x" * 1025) == (
        "InvalidParameterValue",
        "One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes.")
    assert fails(sqs.send_message_batch, QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "x" * 600}, {"Id": "b", "MessageBody": "y" * 500}]) == (
        "AWS.SimpleQueueService.BatchRequestTooLong",
        "Batch requests cannot be longer than 1024 bytes. You have sent 1100 bytes.")
    # Exactly at the limit is accepted.
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1024)


def test_message_attribute_names_types_and_values(sqs, queue):
    url = queue("attrtexts")

    def send(attrs):
        return fails(sqs.send_message, QueueUrl=url, MessageBody="m", MessageAttributes=attrs)

    code, text = send({"AWS.reserved": {"DataType": "String", "StringValue": "v"}})
    assert code == "InvalidParameterValue"
    assert text.startswith("Value AWS.reserved for parameter MessageAttribute.Name is invalid. Reason: ")
    assert "AWS." in text.split("Reason:")[1]
    code, text = send({"a..b": {"DataType": "String", "StringValue": "v"}})
    assert code == "InvalidParameterValue" and "Value a..b for parameter" in text and "period" in text
    code, text = send({"bad name": {"DataType": "String", "StringValue": "v"}})
    assert code == "InvalidParameterValue" and "Value bad name for parameter" in text
    assert send({"k": {"DataType": "Strange", "StringValue": "v"}}) == (
        "InvalidParameterValue",
        "The type of message (user) attribute 'k' is invalid. You must use only the following "
        "supported type prefixes: Binary, Number, String.")
    assert send({"ErrorDetails": {"DataType": "String", "StringValue": ""}}) == (
        "InvalidParameterValue",
        "Message (user) attribute 'ErrorDetails' must contain a non-empty value of type 'String'.")
    code, text = send({"n": {"DataType": "Number", "StringValue": "twelve"}})
    assert code == "InvalidParameterValue"
    assert text.startswith("Value twelve for parameter MessageAttribute.n.StringValue is invalid.")
    code, text = send({f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)})
    assert (code, text) == ("InvalidParameterValue",
                            "Number of message attributes [11] exceeds the allowed maximum [10].")


def test_message_body_characters(sqs, queue):
    url = queue("chartexts")
    with pytest.raises(sqs.exceptions.InvalidMessageContents) as e:
        sqs.send_message(QueueUrl=url, MessageBody="bad \x01 char")
    assert message_of(e) == (
        "Invalid binary character '#x1' was found in the message body, the set of allowed "
        "characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF")


def test_fifo_ids(sqs, queue):
    url = queue("fifotexts", fifo=True)
    assert fails(sqs.send_message, QueueUrl=url, MessageBody="m", MessageGroupId="group 123",
                 MessageDeduplicationId="d") == (
        "InvalidParameterValue",
        "Value group 123 for parameter MessageGroupId is invalid. Reason: MessageGroupId can only "
        "include alphanumeric and punctuation characters. 1 to 128 in length.")
    long_id = "a" * 129
    assert fails(sqs.send_message, QueueUrl=url, MessageBody="m", MessageGroupId="g",
                 MessageDeduplicationId=long_id) == (
        "InvalidParameterValue",
        f"Value {long_id} for parameter MessageDeduplicationId is invalid. Reason: "
        "MessageDeduplicationId can only include alphanumeric and punctuation characters. 1 to 128 in length.")
    assert fails(sqs.send_message, QueueUrl=url, MessageBody="m", MessageGroupId="g",
                 MessageDeduplicationId="d", DelaySeconds=2) == (
        "InvalidParameterValue",
        "Value 2 for parameter DelaySeconds is invalid. Reason: The request include parameter "
        "that is not valid for this queue type.")
    assert fails(sqs.send_message, QueueUrl=url, MessageBody="m", MessageDeduplicationId="d") == (
        "MissingParameter", "The request must contain the parameter MessageGroupId.")
    standard = queue("stdtexts")
    assert fails(sqs.send_message, QueueUrl=standard, MessageBody="m",
                 MessageDeduplicationId="d1") == (
        "InvalidParameterValue",
        "Value d1 for parameter MessageDeduplicationId is invalid. Reason: The request include "
        "parameter that is not valid for this queue type.")


def test_queue_attribute_names_and_values(sqs, queue, unique_name):
    std = queue("qattr")
    fifo = queue("qattrfifo", fifo=True)
    assert fails(sqs.set_queue_attributes, QueueUrl=std, Attributes={"FifoQueue": "true"}) == (
        "InvalidAttributeName", "Unknown Attribute FifoQueue.")
    assert fails(sqs.set_queue_attributes, QueueUrl=fifo, Attributes={"FifoQueue": "false"}) == (
        "InvalidAttributeValue",
        "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported.")
    assert fails(sqs.create_queue, QueueName=unique_name(),
                 Attributes={"ContentBasedDeduplication": "true"}) == (
        "InvalidAttributeName", "Unknown Attribute ContentBasedDeduplication.")
    assert fails(sqs.create_queue, QueueName=unique_name(),
                 Attributes={"DeduplicationScope": "queue"}) == (
        "InvalidAttributeName", "You can specify the DeduplicationScope only when FifoQueue is set to true.")
    assert fails(sqs.create_queue, QueueName=unique_name(),
                 Attributes={"FifoThroughputLimit": "perQueue"}) == (
        "InvalidAttributeName", "You can specify the FifoThroughputLimit only when FifoQueue is set to true.")
    assert fails(sqs.set_queue_attributes, QueueUrl=std, Attributes={"Bogus": "1"}) == (
        "InvalidAttributeName", "Unknown Attribute Bogus.")
    assert fails(sqs.set_queue_attributes, QueueUrl=std, Attributes={"VisibilityTimeout": "50000"}) == (
        "InvalidAttributeValue",
        "Value 50000 for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200.")
    code, text = fails(sqs.set_queue_attributes, QueueUrl=fifo,
                       Attributes={"DeduplicationScope": "everywhere"})
    assert code == "InvalidAttributeValue" and text.startswith(
        "Value everywhere for parameter DeduplicationScope is invalid. Reason: ")
    code, text = fails(sqs.set_queue_attributes, QueueUrl=std, Attributes={"Policy": "not json"})
    assert code == "InvalidAttributeValue" and text.startswith(
        "Value not json for parameter Policy is invalid. Reason: ")


def test_tags(sqs, queue):
    url = queue("tagtexts")
    long_key = "k" * 129
    code, text = fails(sqs.tag_queue, QueueUrl=url, Tags={long_key: "v"})
    assert code == "InvalidParameterValue"
    assert text == (f"Value {long_key} for parameter TagKey is invalid. Reason: Tag keys must be "
                    "between 1 and 128 characters in length.")
    code, text = fails(sqs.tag_queue, QueueUrl=url, Tags={"k": "v" * 257})
    assert code == "InvalidParameterValue" and "parameter TagValue is invalid" in text and "256" in text
    sqs.tag_queue(QueueUrl=url, Tags={f"t{i}": "v" for i in range(50)})
    code, text = fails(sqs.tag_queue, QueueUrl=url, Tags={"one-more": "v"})
    assert code == "InvalidParameterValue" and "51" in text and "50" in text
    assert len(sqs.list_queue_tags(QueueUrl=url)["Tags"]) == 50, "a refused TagQueue changes nothing"
