"""A queue is a topic: Kafka producers feed queues and queue senders feed Kafka consumers."""
import time
import urllib.request

from confluent_kafka import Consumer, Producer


def metrics(broker):
    return urllib.request.urlopen(broker.http_url + "/metrics", timeout=10).read().decode()


def test_kafka_to_queue(sqs, broker, unique_name):
    name = unique_name("k2q")
    p = Producer({"bootstrap.servers": broker.kafka_addr})
    for i in range(3):
        p.produce(name, key=b"k", value=f"from-kafka-{i}".encode())
    assert p.flush(30) == 0
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=5)["Messages"]
    assert sorted(m["Body"] for m in got) == [f"from-kafka-{i}" for i in range(3)]
    for m in got:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    text = metrics(broker)
    assert f'broker_topic_appended_records_total{{topic="{name}"}} 3' in text
    assert 'broker_kafka_request_duration_seconds_count{api="Produce"}' in text


def test_queue_to_kafka(sqs, broker, unique_name):
    name = unique_name("q2k")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="from-sqs",
                     MessageAttributes={"color": {"DataType": "String", "StringValue": "red"}})
    group = unique_name("g")
    c = Consumer({"bootstrap.servers": broker.kafka_addr, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([name])
        deadline = time.time() + 30
        msg = None
        while time.time() < deadline:
            msg = c.poll(1.0)
            if msg is not None and not msg.error():
                break
        assert msg is not None and not msg.error(), f"no record from the queue's topic: {msg and msg.error()}"
        assert msg.value() == b"from-sqs"
        headers = dict(msg.headers() or [])
        assert headers["sqs.attr.color"] == b"red"
        assert headers["sqs.type.color"] == b"String"
        sqs.send_message(QueueUrl=url, MessageBody="second")
        c.commit(message=msg, asynchronous=False)
        # The group committed past the first record; the second is its lag.
        assert f'broker_consumer_group_lag{{group="{group}",topic="{name}"}} 1' in metrics(broker)
    finally:
        c.close()
