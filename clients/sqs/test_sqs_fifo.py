"""FIFO queues through boto3: order within a group, independent groups, deduplication."""
import pytest


def receive(sqs, url, **kw):
    kw.setdefault("MaxNumberOfMessages", 10)
    kw.setdefault("MessageSystemAttributeNames", ["All"])
    return sqs.receive_message(QueueUrl=url, **kw).get("Messages", [])


def test_order_within_group_and_independent_groups(sqs, queue):
    url = queue("order", fifo=True)
    for i in range(3):
        for g in ("a", "b"):
            sqs.send_message(QueueUrl=url, MessageBody=f"{g}{i}", MessageGroupId=g,
                             MessageDeduplicationId=f"{g}-{i}")
    got = receive(sqs, url)
    # As many messages of each group as possible, each group in order.
    by_group = {}
    for m in got:
        by_group.setdefault(m["Attributes"]["MessageGroupId"], []).append(m["Body"])
    assert by_group == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}
    assert receive(sqs, url) == [], "both groups are locked while their messages are in flight"
    for m in got:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert receive(sqs, url) == []


# ---- 9. Several messages of one group per receive --------------------------------------------

def test_one_receive_returns_several_messages_of_a_group_in_order(sqs, queue):
    url = queue("fifomany", fifo=True)
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"g{i}", MessageGroupId="g",
                         MessageDeduplicationId=f"d{i}")
    first = receive(sqs, url, MaxNumberOfMessages=3)
    assert [m["Body"] for m in first] == ["g0", "g1", "g2"]
    seq = [int(m["Attributes"]["SequenceNumber"]) for m in first]
    assert seq == sorted(seq)
    # The group is locked while any of its messages is in flight.
    assert receive(sqs, url) == []
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[2]["ReceiptHandle"])
    assert receive(sqs, url) == [], "g1 is still in flight"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[1]["ReceiptHandle"])
    rest = receive(sqs, url)
    assert [m["Body"] for m in rest] == ["g3", "g4"]


def test_group_stays_locked_while_a_later_message_is_in_flight(sqs, queue):
    url = queue("fifolock", fifo=True)
    for i in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g",
                         MessageDeduplicationId=f"d{i}")
    m0, m1 = receive(sqs, url)
    assert [m0["Body"], m1["Body"]] == ["m0", "m1"]
    # m0 becomes visible again, but m1 of its group is still in flight: nothing is returned
    # until m1 is deleted (or its visibility timeout passes).
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m0["ReceiptHandle"], VisibilityTimeout=0)
    assert receive(sqs, url) == []
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m1["ReceiptHandle"])
    (again,) = receive(sqs, url)
    assert again["Body"] == "m0"
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_blocked_group_does_not_block_others(sqs, queue):
    url = queue("indep", fifo=True)
    sqs.send_message(QueueUrl=url, MessageBody="a0", MessageGroupId="a", MessageDeduplicationId="1")
    sqs.send_message(QueueUrl=url, MessageBody="a1", MessageGroupId="a", MessageDeduplicationId="2")
    (a0,) = receive(sqs, url, MaxNumberOfMessages=1)
    assert a0["Body"] == "a0"
    sqs.send_message(QueueUrl=url, MessageBody="b0", MessageGroupId="b", MessageDeduplicationId="3")
    assert [m["Body"] for m in receive(sqs, url)] == ["b0"]


def test_deduplication_by_id_and_content(sqs, queue):
    url = queue("dedup", fifo=True)
    r1 = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="same")
    r2 = sqs.send_message(QueueUrl=url, MessageBody="y", MessageGroupId="g", MessageDeduplicationId="same")
    assert r1["MessageId"] == r2["MessageId"]
    assert r1["SequenceNumber"] == r2["SequenceNumber"]
    got = receive(sqs, url)
    assert [m["Body"] for m in got] == ["x"]

    cb = queue("cbd", fifo=True, ContentBasedDeduplication="true")
    r = sqs.send_message_batch(QueueUrl=cb, Entries=[
        {"Id": "1", "MessageBody": "same", "MessageGroupId": "g"},
        {"Id": "2", "MessageBody": "same", "MessageGroupId": "g"},
        {"Id": "3", "MessageBody": "different", "MessageGroupId": "g"}])
    ids = {e["Id"]: e["MessageId"] for e in r["Successful"]}
    assert ids["1"] == ids["2"] != ids["3"]
    again = sqs.send_message(QueueUrl=cb, MessageBody="same", MessageGroupId="g")
    assert again["MessageId"] == ids["1"]
    attrs = sqs.get_queue_attributes(QueueUrl=cb, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "2"


def test_deduplication_survives_restart(fresh_broker, unique_name):
    from sqsutil import sqs_client
    if fresh_broker.store == "memory":
        pytest.skip("the memory store keeps nothing across a restart by design")
    sqs = sqs_client(fresh_broker)
    url = sqs.create_queue(QueueName=unique_name("restart") + ".fifo",
                           Attributes={"FifoQueue": "true"})["QueueUrl"]
    first = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d")
    fresh_broker.restart()
    sqs = sqs_client(fresh_broker)
    url = sqs.get_queue_url(QueueName=url.rsplit("/", 1)[1])["QueueUrl"]
    second = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d")
    assert second["MessageId"] == first["MessageId"]
    assert [m["Body"] for m in receive(sqs, url)] == ["x"]
