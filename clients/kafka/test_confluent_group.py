"""confluent-kafka (librdkafka) consumer groups, produce, offsets_for_times, compression."""
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from kafkautil import create_topic


def describe_group(broker, group):
    admin = AdminClient({"bootstrap.servers": broker.kafka_addr})
    listed = admin.list_consumer_groups().result(timeout=30)
    assert group in [g.group_id for g in listed.valid], listed.valid
    return admin.describe_consumer_groups([group])[group].result(timeout=30)

PARTITIONS = 4


def producer(broker, **extra):
    conf = {"bootstrap.servers": broker.kafka_addr, "linger.ms": 5}
    conf.update(extra)
    return Producer(conf)


def produce_batch(broker, topic, start, count):
    p = producer(broker, **{"enable.idempotence": True})
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(start, start + count):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, on_delivery=on_delivery)
    assert p.flush(30) == 0, "undelivered messages"
    assert not errors, errors


def consumer(broker, group, name):
    c = Consumer({
        "bootstrap.servers": broker.kafka_addr,
        "group.id": group,
        "client.id": name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 60000,
        "topic.metadata.refresh.interval.ms": 2000,
    })
    return c


class Member:
    def __init__(self, broker, group, topic, name):
        self.name = name
        self.c = consumer(broker, group, name)
        self.c.subscribe([topic])
        self.got = []

    def poll(self):
        msg = self.c.poll(0.05)
        if msg is None:
            return
        if msg.error():
            raise KafkaException(msg.error())
        self.got.append(int(msg.value()[1:]))
        # Commit each record before the next poll: whatever is seen is committed.
        self.c.commit(message=msg, asynchronous=False)

    def assigned(self):
        return {tp.partition for tp in self.c.assignment()}

    def close(self):
        self.c.close()


def run_until(members, cond, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in members:
            m.poll()
        if cond():
            return
    state = {m.name: (sorted(m.assigned()), len(m.got)) for m in members}
    raise AssertionError(f"timed out waiting for {what}: {state}")


def test_group_splits_partitions_resumes_and_survives_rebalance(broker, unique_name):
    topic = unique_name("grp")
    group = unique_name("g")
    create_topic(broker, topic, PARTITIONS)
    produce_batch(broker, topic, 0, 200)

    a = Member(broker, group, topic, "a")
    b = Member(broker, group, topic, "b")
    members = [a, b]

    def split():
        sa, sb = a.assigned(), b.assigned()
        return sa and sb and not (sa & sb) and (sa | sb) == set(range(PARTITIONS))

    run_until(members, lambda: split() and len(a.got) + len(b.got) >= 200, "two members to split and consume")
    assert sorted(a.got + b.got) == list(range(200)), "first 200 records, each exactly once"

    # b leaves; a restarted member with the same group resumes from the committed offsets.
    b.close()
    members = [a]
    produce_batch(broker, topic, 200, 200)
    b2 = Member(broker, group, topic, "b2")
    members = [a, b2]
    run_until(members, lambda: len(a.got) + len(b.got) + len(b2.got) >= 400, "records after the restart")
    everything = a.got + b.got + b2.got
    assert sorted(everything) == list(range(400)), "no loss, no duplicates across the restart"
    run_until(members, lambda: a.assigned() and b2.assigned(), "both members to hold partitions")

    # A third member joins: everyone rebalances and keeps consuming.
    c = Member(broker, group, topic, "c")
    members = [a, b2, c]
    run_until(members, lambda: a.assigned() and b2.assigned() and c.assigned()
              and len(a.assigned() | b2.assigned() | c.assigned()) == PARTITIONS,
              "three members to share the partitions")
    described = describe_group(broker, group)
    assert described.state == ConsumerGroupState.STABLE, described.state
    assert sorted(m.client_id for m in described.members) == ["a", "b2", "c"]
    assigned = [tp.partition for m in described.members for tp in m.assignment.topic_partitions]
    assert sorted(assigned) == list(range(PARTITIONS))
    produce_batch(broker, topic, 400, 200)
    run_until(members, lambda: len(a.got) + len(b.got) + len(b2.got) + len(c.got) >= 600,
              "records after the third member joined")
    everything = a.got + b.got + b2.got + c.got
    assert sorted(everything) == list(range(600)), "no loss, no duplicates across the rebalance"
    for m in members:
        m.close()


def test_committed_offsets_are_reported(broker, unique_name):
    topic = unique_name("commit")
    group = unique_name("g")
    create_topic(broker, topic, 1)
    produce_batch(broker, topic, 0, 10)
    c = consumer(broker, group, "solo")
    c.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    deadline = time.time() + 30
    while seen < 10 and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            seen += 1
    assert seen == 10
    c.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
    got = c.committed([TopicPartition(topic, 0)], timeout=10)
    assert got[0].offset == 7
    c.close()


def test_offsets_for_times(broker, unique_name):
    topic = unique_name("times")
    create_topic(broker, topic, 1)
    p = producer(broker)
    base = 1_700_000_000_000
    for i in range(20):
        p.produce(topic, value=b"v%d" % i, timestamp=base + i * 1000)
    assert p.flush(30) == 0
    c = consumer(broker, unique_name("g"), "times")
    for ts, want in [(base, 0), (base + 1, 1), (base + 5000, 5), (base + 19_000, 19), (base + 50_000, -1)]:
        r = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
        assert r[0].error is None
        assert r[0].offset == want, (ts, r[0].offset, want)
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (lo, hi) == (0, 20)
    c.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_confluent_compressed_round_trip(broker, unique_name, codec):
    topic = unique_name(f"cz-{codec}")
    create_topic(broker, topic, 1)
    p = producer(broker, **{"compression.type": codec, "linger.ms": 50})
    values = [(b"%d-" % i) * (i % 40 + 1) for i in range(300)]
    for i, v in enumerate(values):
        p.produce(topic, key=b"k%d" % i, value=v, headers=[("codec", codec.encode())])
    assert p.flush(30) == 0
    c = consumer(broker, unique_name("g"), "z")
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while len(got) < len(values) and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        assert m.headers() == [("codec", codec.encode())]
        got.append(m.value())
    assert got == values
    c.close()
