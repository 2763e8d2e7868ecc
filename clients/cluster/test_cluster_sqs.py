"""SQS clients (boto3) against a cluster of 3 brokers over one PostgreSQL schema: a queue is
the same queue through every broker (receipt handles, visibility, long polls, FIFO
deduplication), and messages in flight on a broker that is killed come back."""
import threading
import time
import uuid

import boto3
from botocore.config import Config

LONG_POLL_WAKE_MAX_S = 3.0  # a long poll on one broker wakes this soon after a send on another


def sqs_client(broker):
    """boto3 SQS client for one broker's HTTP API (no retries, so errors show at once)."""
    return boto3.client("sqs", endpoint_url=broker.http_url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}, read_timeout=60))


def receive(client, url, wait=1, visibility=None, n=10):
    kw = {"QueueUrl": url, "MaxNumberOfMessages": n, "WaitTimeSeconds": wait,
          "AttributeNames": ["All"]}
    if visibility is not None:
        kw["VisibilityTimeout"] = visibility
    return client.receive_message(**kw).get("Messages", [])


def receive_all(client, url, bodies, visibility, timeout=30):
    """Receives until every body in `bodies` was seen; returns {body: message}."""
    got = {}
    deadline = time.time() + timeout
    while set(got) != set(bodies) and time.time() < deadline:
        for m in receive(client, url, visibility=visibility):
            got[m["Body"]] = m
    missing = set(bodies) - set(got)
    assert not missing, f"not received within {timeout}s: {sorted(missing)}"
    return got


def queue_url(client, name):
    """The queue's URL as this broker gives it."""
    return client.get_queue_url(QueueName=name)["QueueUrl"]


def test_queue_across_brokers(cluster):
    a, b, c = cluster.start(3)
    sa, sb, sc = sqs_client(a), sqs_client(b), sqs_client(c)
    name = "cl-" + uuid.uuid4().hex[:10]
    sa.create_queue(QueueName=name)
    url_a, url_b, url_c = queue_url(sa, name), queue_url(sb, name), queue_url(sc, name)
    print(f"queue URLs: A {url_a}, B {url_b}, C {url_c}")
    assert url_a.endswith("/" + name) and url_b.endswith("/" + name) and url_c.endswith("/" + name)

    # Send via A, receive via B, delete via C.
    bodies = [f"one-{i}" for i in range(5)]
    for body in bodies:
        sa.send_message(QueueUrl=url_a, MessageBody=body)
    got = receive_all(sb, url_b, bodies, visibility=5)
    for m in got.values():
        sc.delete_message(QueueUrl=url_c, ReceiptHandle=m["ReceiptHandle"])
    assert receive(sa, url_a, wait=1) == [], "deleted messages came back"

    # A message received via B, made visible again via C (ChangeMessageVisibility), is
    # received again at once via A.
    sa.send_message(QueueUrl=url_a, MessageBody="two")
    (m,) = receive_all(sb, url_b, ["two"], visibility=60).values()
    assert receive(sa, url_a, wait=0) == [], "a message in flight was received again"
    sc.change_message_visibility(QueueUrl=url_c, ReceiptHandle=m["ReceiptHandle"],
                                 VisibilityTimeout=0)
    again = receive_all(sa, url_a, ["two"], visibility=60, timeout=5)["two"]
    assert again["MessageId"] == m["MessageId"]
    assert int(again["Attributes"]["ApproximateReceiveCount"]) == 2, again["Attributes"]
    sa.delete_message(QueueUrl=url_a, ReceiptHandle=again["ReceiptHandle"])

    # A long poll on B wakes soon after a send on A (the brokers share the store's
    # notifications); measured three times.
    wakes = []
    for i in range(3):
        result = {}

        def poll():
            result["messages"] = receive(sb, url_b, wait=10, n=1, visibility=30)
            result["at"] = time.monotonic()

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(1.0)
        assert t.is_alive(), f"the long poll returned before anything was sent: {result}"
        sent_at = time.monotonic()
        sa.send_message(QueueUrl=url_a, MessageBody=f"wake-{i}")
        t.join(20)
        assert not t.is_alive()
        wake = result["at"] - sent_at
        assert [m["Body"] for m in result["messages"]] == [f"wake-{i}"], result
        wakes.append(wake)
        sb.delete_message(QueueUrl=url_b, ReceiptHandle=result["messages"][0]["ReceiptHandle"])
    print("long poll on B woken by a send on A after " + ", ".join(f"{w:.3f}s" for w in wakes)
          + " (WaitTimeSeconds=10)")
    assert max(wakes) < LONG_POLL_WAKE_MAX_S, f"long poll wake latencies {wakes}"

    # FIFO: the same MessageDeduplicationId sent via A then via B is one message.
    fifo = name + ".fifo"
    sa.create_queue(QueueName=fifo, Attributes={"FifoQueue": "true"})
    fa, fb, fc = queue_url(sa, fifo), queue_url(sb, fifo), queue_url(sc, fifo)
    first = sa.send_message(QueueUrl=fa, MessageBody="once", MessageGroupId="g",
                            MessageDeduplicationId="dedup-1")
    second = sb.send_message(QueueUrl=fb, MessageBody="once", MessageGroupId="g",
                             MessageDeduplicationId="dedup-1")
    print(f"FIFO send via A: {first['MessageId']}, same deduplication id via B: "
          f"{second['MessageId']}")
    assert second["MessageId"] == first["MessageId"], (first, second)
    msgs = receive(sc, fc, wait=1, visibility=30)
    assert [m["Body"] for m in msgs] == ["once"], msgs
    sc.delete_message(QueueUrl=fc, ReceiptHandle=msgs[0]["ReceiptHandle"])
    assert receive(sc, fc, wait=1) == [], "the deduplicated send left a second message"

    # kill -9 B with messages in flight: after their visibility timeout they come back via
    # A and C; none is lost.
    bodies = [f"kill-{i}" for i in range(20)]
    for body in bodies:
        sa.send_message(QueueUrl=url_a, MessageBody=body)
    visibility = 5
    in_flight = {}
    deadline = time.time() + 15
    while len(in_flight) < 8 and time.time() < deadline:
        for m in receive(sb, url_b, visibility=visibility, n=4):
            in_flight[m["Body"]] = m
    assert len(in_flight) >= 8, f"only {len(in_flight)} received via B"
    received_at = time.monotonic()
    b.stop("kill")
    print(f"kill -9 of B with {len(in_flight)} messages in flight (visibility {visibility}s)")
    seen = {}   # body -> (time since the receive on B, broker)
    deadline = time.time() + 40
    turn = 0
    while set(seen) != set(bodies) and time.time() < deadline:
        client, url, which = [(sa, url_a, "A"), (sc, url_c, "C")][turn % 2]
        turn += 1
        for m in receive(client, url, wait=1, visibility=60):
            assert m["Body"] not in seen, f"{m['Body']} received twice after the kill"
            seen[m["Body"]] = (time.monotonic() - received_at, which)
            client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    missing = set(bodies) - set(seen)
    assert not missing, f"lost after the kill: {sorted(missing)}"
    back = {body: seen[body] for body in in_flight}
    print("in-flight messages received again after "
          + ", ".join(f"{t:.1f}s via {w}" for t, w in sorted(back.values())))
    early = {body: t for body, (t, _) in back.items() if t < visibility - 0.5}
    assert not early, f"received again before their visibility timeout ran out: {early}"
    assert receive(sc, url_c, wait=1) == [], "messages left after deleting them all"
