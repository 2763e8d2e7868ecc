"""The cross-client scenario (scenario.py) with confluent-kafka (librdkafka): admin, keyed
produce with headers, a two-member consumer group, committed offsets and resume, group
description, topic deletion, and the admin operations librdkafka offers on top."""
import time

from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError,
                             KafkaException, Producer, TopicCollection, TopicPartition)
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic, OffsetSpec, ResourceType)

import scenario as sc
from scenario import Seen, wait_until

TIMEOUT = 20


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.kafka_addr})


def create(broker, topic, partitions=sc.PARTITIONS, config=None):
    a = admin(broker)  # kept alive until the future resolves: a destroyed handle fails it
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                   config=config or {})])
    fs[topic].result(timeout=TIMEOUT)


def produce(broker, topic, start, count, **extra):
    """Produces records start..start+count (scenario keys, values, headers); returns
    {i: partition} from the delivery reports."""
    p = Producer({"bootstrap.servers": broker.kafka_addr, "linger.ms": 5, **extra})
    partition, errors = {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            partition[sc.index(msg.value())] = msg.partition()

    for i in range(start, start + count):
        p.produce(topic, key=sc.key(i), value=sc.value(i), headers=sc.headers(i), on_delivery=on_delivery)
    assert p.flush(TIMEOUT) == 0, "undelivered messages"
    assert not errors, errors
    assert len(partition) == count
    return partition


def consumer(broker, group, name):
    return Consumer({
        "bootstrap.servers": broker.kafka_addr,
        "group.id": group,
        "client.id": name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "topic.metadata.refresh.interval.ms": 2000,
    })


class Member:
    """A group member that commits each record (synchronously) before it polls the next."""

    def __init__(self, broker, group, topic, name):
        self.name = name
        self.c = consumer(broker, group, name)
        self.c.subscribe([topic])
        self.seen = []

    def poll(self):
        msg = self.c.poll(0.05)
        if msg is None:
            return
        if msg.error():
            raise KafkaException(msg.error())
        self.seen.append(Seen(self.name, msg.partition(), msg.offset(), msg.key(), msg.value(),
                              list(msg.headers() or [])))
        self.c.commit(message=msg, asynchronous=False)

    def assigned(self):
        return {tp.partition for tp in self.c.assignment()}

    def close(self):
        self.c.close()


def poll_all(members):
    return lambda: [m.poll() for m in members]


def state_of(members):
    return lambda: {m.name: (sorted(m.assigned()), len(m.seen)) for m in members}


def test_admin_topic_lifecycle(broker, unique_name):
    topic = unique_name("ck-admin")
    a = admin(broker)
    a.create_topics([NewTopic(topic, num_partitions=sc.PARTITIONS, replication_factor=1)])[topic] \
        .result(timeout=TIMEOUT)

    # Creating it again is refused with TOPIC_ALREADY_EXISTS.
    again = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic]
    try:
        again.result(timeout=TIMEOUT)
        raise AssertionError("creating an existing topic succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, e

    md = a.list_topics(timeout=TIMEOUT)
    assert topic in md.topics, sorted(md.topics)
    t = md.topics[topic]
    assert t.error is None, t.error
    assert sorted(t.partitions) == list(range(sc.PARTITIONS))
    assert all(p.leader in md.brokers for p in t.partitions.values())

    one = a.list_topics(topic=topic, timeout=TIMEOUT)
    assert sorted(one.topics[topic].partitions) == list(range(sc.PARTITIONS))

    desc = a.describe_topics(TopicCollection([topic]))[topic].result(timeout=TIMEOUT)
    assert desc.name == topic
    assert [p.id for p in desc.partitions] == list(range(sc.PARTITIONS))
    assert all(p.leader is not None for p in desc.partitions)

    a.delete_topics([topic])[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic not in a.list_topics(timeout=TIMEOUT).topics, "the topic to disappear")
    gone = a.describe_topics(TopicCollection([topic]))[topic]
    try:
        gone.result(timeout=TIMEOUT)
        raise AssertionError("describing a deleted topic succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e


def test_group_scenario(broker, unique_name):
    topic, group = unique_name("ck-grp"), unique_name("g")
    create(broker, topic)
    produced = produce(broker, topic, 0, sc.FIRST)

    # Two members share the group; together they consume everything from earliest.
    a, b = Member(broker, group, topic, "a"), Member(broker, group, topic, "b")
    members = [a, b]

    def split():
        sa, sb = a.assigned(), b.assigned()
        return bool(sa) and bool(sb) and not (sa & sb) and (sa | sb) == set(range(sc.PARTITIONS))

    wait_until(lambda: split() and len(a.seen) + len(b.seen) >= sc.FIRST,
               "two members to split the partitions and consume the first records",
               step=poll_all(members), state=state_of(members))
    sc.check_exactly_once(a.seen + b.seen, 0, sc.FIRST)

    # With the partitions split, new records reach both members.
    produced.update(produce(broker, topic, sc.FIRST, sc.SECOND))
    sc.check_partitions_used(produced)
    total = sc.FIRST + sc.SECOND
    wait_until(lambda: len(a.seen) + len(b.seen) >= total, "the second records",
               step=poll_all(members), state=state_of(members))
    second = [s for s in a.seen + b.seen if sc.index(s.value) >= sc.FIRST]
    assert {s.member for s in second} == {"a", "b"}, "both members got records once split"
    seen = a.seen + b.seen
    sc.check_exactly_once(seen, 0, total)
    sc.check_order_and_keys(seen, produced)

    # The committed offsets are the end of every partition.
    ends = {p: a.c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[1]
            for p in range(sc.PARTITIONS)}
    assert sum(ends.values()) == total
    committed = a.c.committed([TopicPartition(topic, p) for p in range(sc.PARTITIONS)], timeout=TIMEOUT)
    assert {tp.partition: tp.offset for tp in committed} == ends
    a.close()
    b.close()

    # A restarted member of the same group resumes at the committed offsets: only new records.
    produced.update(produce(broker, topic, total, sc.AFTER_RESTART))
    c = Member(broker, group, topic, "c")
    wait_until(lambda: len(c.seen) >= sc.AFTER_RESTART, "the records produced after the restart",
               step=poll_all([c]), state=state_of([c]))
    until = time.time() + 1.0  # anything re-delivered would come with the first fetches
    while time.time() < until:
        c.poll()
    sc.check_exactly_once(c.seen, total, sc.AFTER_RESTART)
    sc.check_order_and_keys(c.seen, produced)

    # The group as the admin API sees it: listed, Stable, one member holding every partition.
    ad = admin(broker)
    listed = ad.list_consumer_groups().result(timeout=TIMEOUT)
    assert group in [g.group_id for g in listed.valid], listed.valid
    d = ad.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
    assert d.state == ConsumerGroupState.STABLE, d.state
    assert [m.client_id for m in d.members] == ["c"]
    host = d.members[0].host
    assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == \
        list(range(sc.PARTITIONS))
    ends = {p: c.c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[1]
            for p in range(sc.PARTITIONS)}
    offsets = ad.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group] \
        .result(timeout=TIMEOUT)
    assert {tp.partition: tp.offset for tp in offsets.topic_partitions if tp.topic == topic} == ends
    c.close()
    wait_until(lambda: ad.describe_consumer_groups([group])[group].result(timeout=TIMEOUT).state
               == ConsumerGroupState.EMPTY, "the group to be Empty once its last member left")

    ad.delete_topics([topic])[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic not in ad.list_topics(timeout=TIMEOUT).topics, "the topic to disappear")

    # Last, so that a header or client_host bug does not hide the group checks above.
    sc.check_headers(a.seen + b.seen + c.seen)
    assert host == "/127.0.0.1", f"DescribeGroups client_host {host!r}: Kafka reports the member's address"


def read_all(broker, topic, partition, start=0, count=None, timeout=TIMEOUT):
    c = Consumer({"bootstrap.servers": broker.kafka_addr, "group.id": "unused-" + topic,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, start)])
    out = []
    deadline = time.time() + timeout
    while time.time() < deadline and (count is None or len(out) < count):
        m = c.poll(0.1)
        if m is None:
            if count is None:
                break
            continue
        if m.error():
            raise KafkaException(m.error())
        out.append(m)
    c.close()
    return out


def test_duplicate_header_keys_kept(broker, unique_name):
    topic = unique_name("ck-hdr")
    create(broker, topic, 1)
    produce(broker, topic, 0, 5)
    got = read_all(broker, topic, 0, count=5)
    assert [m.headers() for m in got] == [sc.headers(i) for i in range(5)]


def test_create_partitions(broker, unique_name):
    topic = unique_name("ck-cp")
    create(broker, topic)
    a = admin(broker)
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=TIMEOUT)
    wait_until(lambda: len(a.list_topics(topic=topic, timeout=TIMEOUT).topics[topic].partitions) == 5,
               "metadata to show 5 partitions")
    p = Producer({"bootstrap.servers": broker.kafka_addr})
    p.produce(topic, value=b"in-4", partition=4)
    assert p.flush(TIMEOUT) == 0
    assert [m.value() for m in read_all(broker, topic, 4, count=1)] == [b"in-4"]
    # Shrinking is refused with INVALID_PARTITIONS.
    try:
        a.create_partitions([NewPartitions(topic, 2)])[topic].result(timeout=TIMEOUT)
        raise AssertionError("reducing the partition count succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_PARTITIONS, e


def describe_config(a, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res])[res].result(timeout=TIMEOUT)


def test_describe_topic_config(broker, unique_name):
    topic = unique_name("ck-dc")
    create(broker, topic, 1, config={"retention.ms": "3600000", "cleanup.policy": "delete"})
    cfg = describe_config(admin(broker), topic)
    assert cfg["retention.ms"].value == "3600000", cfg["retention.ms"]
    assert not cfg["retention.ms"].is_default
    assert cfg["cleanup.policy"].value == "delete"


def test_alter_topic_config(broker, unique_name):
    topic = unique_name("ck-ac")
    create(broker, topic, 1, config={"retention.ms": "3600000"})
    a = admin(broker)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "500000", incremental_operation=AlterConfigOpType.SET),
    ])
    a.incremental_alter_configs([res])[res].result(timeout=TIMEOUT)
    cfg = describe_config(a, topic)
    assert cfg["retention.ms"].value == "7200000"
    assert cfg["max.message.bytes"].value == "500000"


def test_delete_records(broker, unique_name):
    topic = unique_name("ck-dr")
    create(broker, topic, 1)
    produce(broker, topic, 0, 10)
    a = admin(broker)
    tp = TopicPartition(topic, 0, 4)
    deleted = a.delete_records([tp])[tp].result(timeout=TIMEOUT)
    assert deleted.low_watermark == 4
    earliest = a.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()})
    assert earliest[TopicPartition(topic, 0)].result(timeout=TIMEOUT).offset == 4
    got = read_all(broker, topic, 0, start=-2, count=6)  # -2: OFFSET_BEGINNING
    assert [m.offset() for m in got] == list(range(4, 10))


def test_list_offsets_by_timestamp(broker, unique_name):
    topic = unique_name("ck-ts")
    create(broker, topic, 1)
    base = 1_700_000_000_000
    p = Producer({"bootstrap.servers": broker.kafka_addr, "linger.ms": 5})
    for i in range(10):
        p.produce(topic, value=b"v%d" % i, timestamp=base + i * 1000)
    assert p.flush(TIMEOUT) == 0
    a = admin(broker)
    tp = TopicPartition(topic, 0)
    for spec, want in [(OffsetSpec.for_timestamp(base), 0), (OffsetSpec.for_timestamp(base + 1), 1),
                       (OffsetSpec.for_timestamp(base + 9000), 9), (OffsetSpec.for_timestamp(base + 60_000), -1),
                       (OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 10)]:
        r = a.list_offsets({tp: spec})[tp].result(timeout=TIMEOUT)
        assert r.offset == want, (spec, r.offset, want)
    r = a.list_offsets({tp: OffsetSpec.for_timestamp(base + 5000)})[tp].result(timeout=TIMEOUT)
    assert (r.offset, r.timestamp) == (5, base + 5000)


def test_delete_group(broker, unique_name):
    topic, group = unique_name("ck-dg"), unique_name("g")
    create(broker, topic, 1)
    produce(broker, topic, 0, 3)
    c = consumer(broker, group, "dg")
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    deadline = time.time() + TIMEOUT
    while got < 3 and time.time() < deadline:
        m = c.poll(0.1)
        if m is not None and not m.error():
            got += 1
    assert got == 3
    c.commit(asynchronous=False)
    c.close()
    a = admin(broker)
    assert group in [g.group_id for g in a.list_consumer_groups().result(timeout=TIMEOUT).valid]
    a.delete_consumer_groups([group])[group].result(timeout=TIMEOUT)
    assert group not in [g.group_id for g in a.list_consumer_groups().result(timeout=TIMEOUT).valid]
    # A deleted group has no committed offsets: a new member starts from auto.offset.reset.
    c = consumer(broker, group, "dg2")
    committed = c.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)
    c.close()
    assert committed[0].offset < 0, committed
