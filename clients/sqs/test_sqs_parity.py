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
