"""AWS-documented behaviours checked with boto3 (and the query protocol) against the broker:
message ids, deleting after the visibility timeout, FIFO batch rules, attribute-name
wildcards, tag and attribute edge cases, and normalised redrive policies."""
import json
import time
import urllib.parse
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError


def code_of(e):
    return e.value.response["Error"]["Code"]


def message_of(e):
    return e.value.response["Error"]["Message"]


def receive(sqs, url, **kw):
    kw.setdefault("MaxNumberOfMessages", 10)
    return sqs.receive_message(QueueUrl=url, **kw).get("Messages", [])


def query(broker, **params):
    """One query-protocol (form body, XML reply) request; returns (status, text)."""
    body = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(broker.http_url + "/", data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ---- 1. MessageId -------------------------------------------------------------------------

def test_message_id_is_a_random_uuid_kept_on_redelivery(sqs, unique_name):
    name = unique_name("mid")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sent = [sqs.send_message(QueueUrl=url, MessageBody=f"b{i}")["MessageId"] for i in range(3)]
    batch = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": f"e{i}", "MessageBody": f"x{i}"} for i in range(3)])["Successful"]
    sent += [e["MessageId"] for e in batch]
    for mid in sent:
        assert uuid.UUID(mid).version == 4, mid
    assert len(set(sent)) == len(sent)
    first = {m["MessageId"]: m["Body"] for m in receive(sqs, url, VisibilityTimeout=1)}
    assert set(first) == set(sent)
    time.sleep(1.3)
    again = {m["MessageId"]: m["Body"] for m in receive(sqs, url, VisibilityTimeout=30)}
    assert again == first, "a redelivery keeps the MessageId"

    # The same name again: the queue starts at offset 0 again, but ids are never repeated.
    sqs.delete_queue(QueueUrl=url)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    fresh = [sqs.send_message(QueueUrl=url, MessageBody=f"b{i}")["MessageId"] for i in range(3)]
    assert not set(fresh) & set(sent)
    assert {m["MessageId"] for m in receive(sqs, url)} == set(fresh)


def test_fifo_duplicate_send_returns_the_original_message_id(sqs, queue):
    url = queue("midfifo", fifo=True)
    a = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g",
                         MessageDeduplicationId="d1")
    b = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g",
                         MessageDeduplicationId="d1")
    assert a["MessageId"] == b["MessageId"]
    assert uuid.UUID(a["MessageId"]).version == 4
    (m,) = receive(sqs, url)
    assert m["MessageId"] == a["MessageId"]


# ---- 2. Delete / visibility after the timeout -----------------------------------------------

def test_delete_after_visibility_timeout_with_latest_handle_deletes(sqs, queue):
    url = queue("lapsed")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    (m,) = receive(sqs, url, VisibilityTimeout=1)
    time.sleep(1.3)
    # Not received again since: the handle is still the latest one, and AWS deletes.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert receive(sqs, url, WaitTimeSeconds=1) == []
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_delete_with_handle_of_an_older_receive_keeps_the_message(sqs, queue):
    url = queue("older")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    (first,) = receive(sqs, url, VisibilityTimeout=1)
    time.sleep(1.3)
    (second,) = receive(sqs, url, VisibilityTimeout=1)
    assert first["ReceiptHandle"] != second["ReceiptHandle"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # succeeds ...
    time.sleep(1.3)
    (third,) = receive(sqs, url, VisibilityTimeout=30)  # ... without deleting
    assert third["Body"] == "m"
    # The batch form behaves the same way.
    d = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "old", "ReceiptHandle": second["ReceiptHandle"]},
        {"Id": "new", "ReceiptHandle": third["ReceiptHandle"]}])
    assert sorted(e["Id"] for e in d["Successful"]) == ["new", "old"]
    assert receive(sqs, url, VisibilityTimeout=0) == []


def test_change_visibility_after_timeout(sqs, queue):
    url = queue("cmvlapsed")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    (first,) = receive(sqs, url, VisibilityTimeout=1)
    time.sleep(1.3)
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"],
                                      VisibilityTimeout=60)
    assert code_of(e) == "AWS.SimpleQueueService.MessageNotInflight"
    assert first["ReceiptHandle"] in message_of(e)
    # The message stayed visible.
    (second,) = receive(sqs, url, VisibilityTimeout=30)
    assert second["Body"] == "m"
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"],
                                      VisibilityTimeout=60)
    assert code_of(e) == "InvalidParameterValue"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"],
                                  VisibilityTimeout=0)
    assert [m["Body"] for m in receive(sqs, url)] == ["m"]


def test_fifo_delete_after_visibility_timeout_is_refused(sqs, queue):
    url = queue("fifolapsed", fifo=True)
    sqs.send_message(QueueUrl=url, MessageBody="m", MessageGroupId="g",
                     MessageDeduplicationId="d")
    (m,) = receive(sqs, url, VisibilityTimeout=1)
    time.sleep(1.3)
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert code_of(e) == "InvalidParameterValue"
    assert "The receipt handle has expired" in message_of(e)
    (again,) = receive(sqs, url, VisibilityTimeout=30)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
    assert receive(sqs, url, VisibilityTimeout=0) == []


# ---- 3. FIFO batch rules ------------------------------------------------------------------

def test_fifo_batch_entry_without_group_fails_the_whole_batch(sqs, queue):
    url = queue("fifobatch", fifo=True)
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "a", "MessageBody": "1", "MessageGroupId": "g", "MessageDeduplicationId": "1"},
            {"Id": "b", "MessageBody": "2", "MessageDeduplicationId": "2"}])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # AWS reports a missing group id inside a batch as InvalidParameterValue.
    assert code_of(e) == "InvalidParameterValue"
    assert message_of(e) == "The request must contain the parameter MessageGroupId."
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "a", "MessageBody": "1", "MessageGroupId": "g", "MessageDeduplicationId": "1"},
            {"Id": "b", "MessageBody": "2", "MessageGroupId": "g"}])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert code_of(e) == "InvalidParameterValue"
    assert "MessageDeduplicationId" in message_of(e)
    assert receive(sqs, url) == [], "nothing of a refused batch is sent"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_fifo_batch_with_content_based_dedup_needs_no_dedup_id(sqs, queue):
    url = queue("fifocbd", fifo=True, ContentBasedDeduplication="true")
    r = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "1", "MessageGroupId": "g"},
        {"Id": "b", "MessageBody": "2", "MessageGroupId": "g"}])
    assert len(r["Successful"]) == 2


# ---- 4. Attribute-name wildcards ----------------------------------------------------------

def test_message_attribute_name_wildcards(sqs, queue):
    url = queue("wild")
    attrs = {n: {"DataType": "String", "StringValue": n} for n in ("Hello", "Help", "Hi", "a.b")}
    sqs.send_message(QueueUrl=url, MessageBody="m", MessageAttributes=attrs)

    def names(**kw):
        (m,) = receive(sqs, url, VisibilityTimeout=0, **kw)
        return sorted(m.get("MessageAttributes", {})), sorted(m.get("Attributes", {}))

    assert names(MessageAttributeNames=["Hel.*"])[0] == ["Hello", "Help"]
    assert names(MessageAttributeNames=["All"])[0] == ["Hello", "Help", "Hi", "a.b"]
    assert names(MessageAttributeNames=[".*"])[0] == ["Hello", "Help", "Hi", "a.b"]
    assert names(MessageAttributeNames=["a.*"])[0] == ["a.b"]
    assert names(MessageAttributeNames=["Hi"])[0] == ["Hi"]
    assert names()[0] == []
    system = names(MessageSystemAttributeNames=["Approximate.*"])[1]
    assert system == ["ApproximateFirstReceiveTimestamp", "ApproximateReceiveCount"]
    assert "SentTimestamp" in names(MessageSystemAttributeNames=[".*"])[1]
    assert "SenderId" in names(MessageSystemAttributeNames=["All"])[1]


# ---- 6. Tags ------------------------------------------------------------------------------

def test_tag_and_untag_need_something_to_do(sqs, queue):
    url = queue("tags")
    with pytest.raises(ClientError) as e:
        sqs.tag_queue(QueueUrl=url, Tags={})
    assert code_of(e) == "MissingParameter"
    with pytest.raises(ClientError) as e:
        sqs.untag_queue(QueueUrl=url, TagKeys=[])
    assert code_of(e) == "MissingParameter"
    sqs.tag_queue(QueueUrl=url, Tags={"k": "v"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"k": "v"}


# ---- 7. GetQueueAttributes without applicable names ----------------------------------------

def test_get_queue_attributes_without_applicable_names_has_no_attributes(sqs, broker, queue):
    url = queue("noattrs")
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url)
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["FifoQueue"])
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
    assert "Attributes" in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])
    status, xml = query(broker, Action="GetQueueAttributes", QueueUrl=url)
    assert status == 200 and "<GetQueueAttributesResult></GetQueueAttributesResult>" in xml, xml
    status, xml = query(broker, Action="GetQueueAttributes", QueueUrl=url,
                        **{"AttributeName.1": "FifoQueue"})
    assert status == 200 and "<Attribute>" not in xml, xml
    status, xml = query(broker, Action="GetQueueAttributes", QueueUrl=url,
                        **{"AttributeName.1": "DelaySeconds"})
    assert status == 200 and "<Name>DelaySeconds</Name>" in xml, xml


# ---- 8. Redrive policies ------------------------------------------------------------------

def test_redrive_policies_are_validated_and_normalised(sqs, queue):
    dlq = queue("rdlq")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = queue("rsrc")
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})
    got = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])["Attributes"]
    policy = json.loads(got["RedrivePolicy"])
    assert policy == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
    assert isinstance(policy["maxReceiveCount"], int)

    for bad in ({"deadLetterTargetArn": dlq_arn},
                {"deadLetterTargetArn": "not-an-arn", "maxReceiveCount": 3},
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1001},
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3, "extra": 1}):
        with pytest.raises(ClientError) as e:
            sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": json.dumps(bad)})
        assert code_of(e) in ("InvalidAttributeValue", "InvalidParameterValue"), bad
        assert "RedrivePolicy" in message_of(e)

    sqs.set_queue_attributes(QueueUrl=dlq, Attributes={"RedriveAllowPolicy": json.dumps(
        {"redrivePermission": "byQueue", "sourceQueueArns": [dlq_arn.replace("rdlq", "rsrc")]})})
    got = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["RedriveAllowPolicy"])["Attributes"]
    assert json.loads(got["RedriveAllowPolicy"])["redrivePermission"] == "byQueue"
    for bad in ({"redrivePermission": "byQueue"}, {"redrivePermission": "sometimes"},
                {"redrivePermission": "allowAll", "sourceQueueArns": [dlq_arn]},
                {"redrivePermission": "byQueue", "sourceQueueArns": [dlq_arn] * 11}):
        with pytest.raises(ClientError) as e:
            sqs.set_queue_attributes(QueueUrl=dlq,
                                     Attributes={"RedriveAllowPolicy": json.dumps(bad)})
        assert code_of(e) == "InvalidAttributeValue", bad
        assert "RedriveAllowPolicy" in message_of(e)


# ---- 5. Error texts name the value and the limit --------------------------------------------

def test_range_errors_name_value_and_limits(sqs, queue):
    url = queue("errtext")
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="m", DelaySeconds=5000)
    assert code_of(e) == "InvalidParameterValue"
    assert message_of(e) == "Value 5000 for parameter DelaySeconds is invalid. Reason: Must be >= 0 and <= 900."
    with pytest.raises(ClientError) as e:
        sqs.receive_message(QueueUrl=url, VisibilityTimeout=43201)
    assert message_of(e) == ("Value 43201 for parameter VisibilityTimeout is invalid. "
                             "Reason: Must be >= 0 and <= 43200.")
    with pytest.raises(ClientError) as e:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert message_of(e) == ("Value 11 for parameter MaxNumberOfMessages is invalid. "
                             "Reason: Must be between 1 and 10, if provided.")
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "901"})
    assert code_of(e) == "InvalidAttributeValue"
    assert message_of(e) == "Value 901 for parameter DelaySeconds is invalid. Reason: Must be >= 0 and <= 900."


def test_list_dead_letter_source_queues_pages(sqs, queue):
    dlq = queue("pagedlq")
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})
    sources = sorted(queue(f"pagesrc{i}", RedrivePolicy=policy) for i in range(3))
    first = sqs.list_dead_letter_source_queues(QueueUrl=dlq, MaxResults=2)
    assert len(first["queueUrls"]) == 2 and "NextToken" in first
    rest = sqs.list_dead_letter_source_queues(QueueUrl=dlq, MaxResults=2, NextToken=first["NextToken"])
    assert "NextToken" not in rest
    assert sorted(first["queueUrls"] + rest["queueUrls"]) == sources
    assert sorted(sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"]) == sources
