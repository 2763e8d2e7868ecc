"""Behaviour 12: the region of each request (SigV4 credential scope, or the queue URL) picks
the queues it sees; queues of the same name in two regions are two queues. Queues of the
default region (us-east-1) keep their plain topic name; other regions' are stored as
`<region>.<name>`."""
import json
import time

import pytest
from confluent_kafka import Consumer

from sqsutil import aws_cli, queue_arn, sqs_client


def bodies(sqs, url, **kw):
    kw.setdefault("MaxNumberOfMessages", 10)
    return sorted(m["Body"] for m in sqs.receive_message(QueueUrl=url, **kw).get("Messages", []))


def first_record(broker, topic, group):
    c = Consumer({"bootstrap.servers": broker.kafka_addr, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        deadline = time.time() + 30
        while time.time() < deadline:
            msg = c.poll(1.0)
            if msg is not None and not msg.error():
                return msg.value()
        raise AssertionError(f"no record in topic {topic}")
    finally:
        c.close()


def test_same_name_in_two_regions_is_two_queues(broker, unique_name):
    us = sqs_client(broker)
    eu = sqs_client(broker, region="eu-west-1")
    name = unique_name("reg")
    us_url = us.create_queue(QueueName=name)["QueueUrl"]
    eu_url = eu.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})["QueueUrl"]
    assert us_url == f"{broker.http_url}/000000000000/{name}"
    assert eu_url == f"{broker.http_url}/queue/eu-west-1/000000000000/{name}"
    assert queue_arn(us, us_url) == f"arn:aws:sqs:us-east-1:000000000000:{name}"
    assert queue_arn(eu, eu_url) == f"arn:aws:sqs:eu-west-1:000000000000:{name}"
    assert eu.get_queue_url(QueueName=name)["QueueUrl"] == eu_url
    assert us.get_queue_url(QueueName=name)["QueueUrl"] == us_url
    with pytest.raises(us.exceptions.QueueDoesNotExist):
        sqs_client(broker, region="ap-south-1").get_queue_url(QueueName=name)

    us.send_message(QueueUrl=us_url, MessageBody="in us-east-1")
    eu.send_message(QueueUrl=eu_url, MessageBody="in eu-west-1")
    attrs = lambda c, u: c.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
    assert attrs(us, us_url)["VisibilityTimeout"] == "30"
    assert attrs(eu, eu_url)["VisibilityTimeout"] == "7"
    assert attrs(eu, eu_url)["ApproximateNumberOfMessages"] == "1"
    assert us.list_queues(QueueNamePrefix=name)["QueueUrls"] == [us_url]
    assert eu.list_queues(QueueNamePrefix=name)["QueueUrls"] == [eu_url]
    assert "QueueUrls" not in sqs_client(broker, region="ap-south-1").list_queues(QueueNamePrefix=name)

    # A URL that names its region wins over the client's region; the default region's URLs
    # name none, so they address the queue of that name in the client's region.
    assert bodies(us, eu_url, VisibilityTimeout=0) == ["in eu-west-1"]
    assert bodies(eu, us_url, VisibilityTimeout=0) == ["in eu-west-1"]
    assert bodies(us, us_url, VisibilityTimeout=0) == ["in us-east-1"]
    assert bodies(eu, eu_url) == ["in eu-west-1"]

    # Storage: the default region keeps the plain topic name (queues made before regions
    # existed stay readable), another region's queue is topic "<region>.<name>".
    assert first_record(broker, name, unique_name("g")) == b"in us-east-1"
    assert first_record(broker, f"eu-west-1.{name}", unique_name("g")) == b"in eu-west-1"

    eu.delete_queue(QueueUrl=eu_url)
    with pytest.raises(eu.exceptions.QueueDoesNotExist):
        eu.get_queue_url(QueueName=name)
    assert us.get_queue_url(QueueName=name)["QueueUrl"] == us_url


def test_redrive_policy_and_dead_letters_in_another_region(broker, unique_name):
    eu = sqs_client(broker, region="eu-central-1")
    dlq = eu.create_queue(QueueName=unique_name("regdlq"))["QueueUrl"]
    dlq_arn = queue_arn(eu, dlq)
    assert dlq_arn.startswith("arn:aws:sqs:eu-central-1:")
    src = eu.create_queue(QueueName=unique_name("regsrc"), Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})})["QueueUrl"]
    src_arn = queue_arn(eu, src)
    eu.send_message(QueueUrl=src, MessageBody="poison")
    assert bodies(eu, src, VisibilityTimeout=0) == ["poison"]
    assert bodies(eu, src) == []
    (m,) = eu.receive_message(QueueUrl=dlq, AttributeNames=["All"])["Messages"]
    assert m["Attributes"]["DeadLetterQueueSourceArn"] == src_arn
    assert eu.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]
    # SQS is regional: a us-east-1 queue cannot name the eu-central-1 queue as its DLQ.
    us = sqs_client(broker)
    us_src = us.create_queue(QueueName=unique_name("regus"))["QueueUrl"]
    with pytest.raises(us.exceptions.ClientError) as e:
        us.set_queue_attributes(QueueUrl=us_src, Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})})
    assert "Dead letter target does not exist" in e.value.response["Error"]["Message"]


def test_cli_region(broker, unique_name):
    name = unique_name("regcli")
    url = aws_cli(broker, "create-queue", "--queue-name", name, region="ap-southeast-2")["QueueUrl"]
    assert url == f"{broker.http_url}/queue/ap-southeast-2/000000000000/{name}"
    assert aws_cli(broker, "get-queue-url", "--queue-name", name, region="ap-southeast-2")["QueueUrl"] == url
    p = aws_cli(broker, "get-queue-url", "--queue-name", name, region="us-east-1", check=False)
    assert p.returncode != 0 and b"NonExistentQueue" in p.stderr + p.stdout
    aws_cli(broker, "send-message", "--queue-url", url, "--message-body", "hello", region="ap-southeast-2")
    got = aws_cli(broker, "receive-message", "--queue-url", url, region="ap-southeast-2")
    assert [m["Body"] for m in got["Messages"]] == ["hello"]
