"""Share groups (KIP-932) with confluent-kafka's ShareConsumer: one topic read three ways at
once, as a stream (a consumer group), as a Kafka queue (a share group of three share
consumers) and as an SQS queue; releases, lock expiry, the delivery limit, and kill -9."""
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, ShareConsumer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ResourceType)

from kafkautil import create_topic

try:  # the acknowledge types (confluent-kafka >= 2.14)
    from confluent_kafka import AcknowledgeType
except ImportError:  # pragma: no cover - the pinned client has it
    AcknowledgeType = None

PARTITIONS = 3


def set_group_configs(broker, group, **configs):
    """Sets share-group settings through IncrementalAlterConfigs on the GROUP resource."""
    admin = AdminClient({"bootstrap.servers": broker.kafka_addr})
    entries = [ConfigEntry(k.replace("_", "."), str(v),
                           incremental_operation=AlterConfigOpType.SET)
               for k, v in configs.items()]
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(timeout=30)


def describe_group_configs(broker, group):
    admin = AdminClient({"bootstrap.servers": broker.kafka_addr})
    res = ConfigResource(ResourceType.GROUP, group)
    got = admin.describe_configs([res])[res].result(timeout=30)
    return {k: v.value for k, v in got.items()}


def produce(broker, topic, values):
    p = Producer({"bootstrap.servers": broker.kafka_addr, "enable.idempotence": True,
                  "linger.ms": 5})
    errors = []
    for i, v in enumerate(values):
        p.produce(topic, key=b"k%d" % i, value=v,
                  on_delivery=lambda err, _m: err is not None and errors.append(err))
    assert p.flush(30) == 0, "undelivered records"
    assert not errors, errors


def share_consumer(broker, group, explicit=True):
    conf = {"bootstrap.servers": broker.kafka_addr, "group.id": group}
    if explicit:
        conf["share.acknowledgement.mode"] = "explicit"
    return ShareConsumer(conf)


def ack(consumer, msg, kind):
    consumer.acknowledge(msg, getattr(AcknowledgeType, kind))


def read_stream(broker, topic, group, want, timeout=60):
    """Every record of the topic through a classic consumer group: value -> times seen."""
    c = Consumer({"bootstrap.servers": broker.kafka_addr, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    seen = {}
    try:
        c.subscribe([topic])
        deadline = time.time() + timeout
        while sum(seen.values()) < want and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            seen[m.value()] = seen.get(m.value(), 0) + 1
    finally:
        c.close()
    return seen


def read_sqs(broker, topic, want, timeout=60):
    import boto3
    from botocore.config import Config
    sqs = boto3.client("sqs", endpoint_url=broker.http_url, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test",
                       config=Config(retries={"max_attempts": 1}, read_timeout=60))
    url = sqs.get_queue_url(QueueName=topic)["QueueUrl"]
    seen = {}
    deadline = time.time() + timeout
    while len(seen) < want and time.time() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                  WaitTimeSeconds=1).get("Messages", [])
        for m in got:
            body = m["Body"].encode()
            seen[body] = seen.get(body, 0) + 1
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return seen


_TAKE = threading.Lock()


def take(shared, v):
    """Removes `v` from `shared`; true when it was there (one reader wins)."""
    with _TAKE:
        if v in shared:
            shared.discard(v)
            return True
        return False


class ShareReader(threading.Thread):
    """A share consumer on its own thread: accepts every record, except that it releases
    values in `release_once` the first time it sees them and always releases `poison`."""

    def __init__(self, broker, group, topic, release_once=None, poison=()):
        """`release_once`: a set shared by the readers of a group (the first to see a value
        releases it and takes it out)."""
        super().__init__(daemon=True)
        self.c = share_consumer(broker, group)
        self.topic = topic
        self.release_once = release_once if release_once is not None else set()
        self.poison = set(poison)
        self.deliveries = []  # (value, partition, offset)
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            self.c.subscribe([self.topic])
            while not self.stop.is_set():
                for m in self.c.poll(0.5) or []:
                    if m.error():
                        continue
                    v = m.value()
                    self.deliveries.append((v, m.partition(), m.offset()))
                    if v in self.poison:
                        ack(self.c, m, "RELEASE")
                    elif take(self.release_once, v):
                        ack(self.c, m, "RELEASE")
                    else:
                        ack(self.c, m, "ACCEPT")
                self.c.commit_async()
        except Exception as e:  # surfaced by the test
            self.error = e
        finally:
            try:
                self.c.close()
            except Exception:
                pass


def run_share_group(readers, done, timeout):
    """Starts the readers not yet started, waits for `done` (at most `timeout` s), stops them."""
    for r in readers:
        if not r.is_alive() and r.ident is None:
            r.start()
    deadline = time.time() + timeout
    while time.time() < deadline and not done():
        time.sleep(0.2)
    for r in readers:
        r.stop.set()
    for r in readers:
        r.join(30)
        assert r.error is None, r.error


def test_group_configs_round_trip_and_refuse_bad_values(broker, unique_name):
    group = unique_name("sg")
    set_group_configs(broker, group, share_auto_offset_reset="earliest",
                      share_record_lock_duration_ms=5000)
    got = describe_group_configs(broker, group)
    assert got["share.auto.offset.reset"] == "earliest"
    assert got["share.record.lock.duration.ms"] == "5000"
    assert got["share.delivery.count.limit"] == "5"  # Kafka's default
    with pytest.raises(Exception) as e:
        set_group_configs(broker, group, share_auto_offset_reset="soonest")
    assert "soonest" in str(e.value)


def test_one_topic_read_as_a_stream_a_share_group_and_an_sqs_queue(broker, unique_name):
    topic = unique_name("three")
    create_topic(broker, topic, PARTITIONS)
    group = unique_name("sg")
    # Short heartbeats: the three members' assignment settles within a second or two.
    set_group_configs(broker, group, share_auto_offset_reset="earliest",
                      share_delivery_count_limit=2, share_heartbeat_interval_ms=500)
    n = 300
    values = [b"v%03d" % i for i in range(n)]
    poison = {b"v007", b"v150"}
    release_once = {b"v010", b"v011", b"v200"}
    good = set(values) - poison

    # The Kafka queue: three share consumers, in the group before the records arrive (a lone
    # first member would otherwise take every partition's records in its first fetch).
    to_release = set(release_once)
    readers = [ShareReader(broker, group, topic, release_once=to_release, poison=poison)
               for _ in range(3)]
    for r in readers:
        r.start()
    time.sleep(5)
    produce(broker, topic, values)

    # The stream: every record exactly once, read while the share group reads.
    stream = read_stream(broker, topic, unique_name("cg"), n)
    assert set(stream) == set(values) and all(c == 1 for c in stream.values()), stream

    def accepted():
        got = set()
        for r in readers:
            got.update(v for v, _, _ in r.deliveries)
        return good <= got and all(
            sum(1 for r in readers for v, _, _ in r.deliveries if v == p) >= 2 for p in poison)

    run_share_group(readers, accepted, 90)
    delivered = [d for r in readers for d in r.deliveries]
    seen = {v for v, _, _ in delivered}
    assert good <= seen, f"not delivered to the share group: {sorted(good - seen)[:10]}"
    for p in poison:
        times = sum(1 for v, _, _ in delivered if v == p)
        assert times == 2, f"{p} delivered {times} times with a delivery limit of 2"
    for v in release_once:
        times = sum(1 for d, _, _ in delivered if d == v)
        assert times >= 2, f"released {v} was not delivered again ({times} deliveries)"
    # More than one share consumer took part (3 partitions, 3 members).
    assert sum(1 for r in readers if r.deliveries) >= 2, [len(r.deliveries) for r in readers]

    # Nothing is left for a new member of the share group: everything was accepted or archived.
    late = share_consumer(broker, group)
    try:
        late.subscribe([topic])
        extra = []
        deadline = time.time() + 8
        while time.time() < deadline:
            extra += [m.value() for m in late.poll(0.5) or [] if not m.error()]
        assert extra == [], f"delivered again after acceptance or archiving: {extra[:10]}"
    finally:
        late.close()

    # The SQS queue of the same topic reads independently (lease group "sqs").
    queue = read_sqs(broker, topic, n)
    assert set(queue) == set(values), sorted(set(values) - set(queue))[:10]


def test_lock_expiry_redelivers_to_another_member(broker, unique_name):
    topic = unique_name("lock")
    create_topic(broker, topic, 1)
    group = unique_name("sg")
    set_group_configs(broker, group, share_auto_offset_reset="earliest",
                      share_record_lock_duration_ms=2000)
    produce(broker, topic, [b"a", b"b", b"c"])
    holder = share_consumer(broker, group)
    other = share_consumer(broker, group)
    try:
        holder.subscribe([topic])
        got = []
        deadline = time.time() + 30
        while len(got) < 3 and time.time() < deadline:
            got += [m for m in holder.poll(0.5) or [] if not m.error()]
        assert sorted(m.value() for m in got) == [b"a", b"b", b"c"]
        # The holder never acknowledges nor polls again: the locks lapse after 2 s.
        other.subscribe([topic])
        again = []
        deadline = time.time() + 30
        while len(again) < 3 and time.time() < deadline:
            for m in other.poll(0.5) or []:
                if not m.error():
                    again.append(m.value())
                    ack(other, m, "ACCEPT")
            other.commit_sync()
        assert sorted(again) == [b"a", b"b", b"c"]
    finally:
        other.close()
        holder.close()


def test_latest_is_the_default_start(broker, unique_name):
    topic = unique_name("latest")
    create_topic(broker, topic, 1)
    group = unique_name("sg")
    produce(broker, topic, [b"before"])
    c = share_consumer(broker, group, explicit=False)
    try:
        c.subscribe([topic])
        # Joining and the first fetch set the group's start at the end of the partition.
        deadline = time.time() + 6
        early = []
        while time.time() < deadline:
            early += [m.value() for m in c.poll(0.5) or [] if not m.error()]
        produce(broker, topic, [b"after"])
        got = []
        deadline = time.time() + 30
        while b"after" not in got and time.time() < deadline:
            got += [m.value() for m in c.poll(0.5) or [] if not m.error()]
        assert early == [] and got == [b"after"], (early, got)
    finally:
        c.close()


def test_nothing_acknowledged_is_lost_across_kill9(fresh_broker, unique_name):
    broker = fresh_broker
    topic = unique_name("k9")
    create_topic(broker, topic, PARTITIONS)
    group = unique_name("sg")
    set_group_configs(broker, group, share_auto_offset_reset="earliest",
                      share_record_lock_duration_ms=3000)
    values = [b"r%04d" % i for i in range(400)]
    produce(broker, topic, values[:200])
    first = ShareReader(broker, group, topic)
    run_share_group([first], lambda: len(first.deliveries) >= 100, 60)
    broker.stop(sig="kill")
    broker.start()
    produce(broker, topic, values[200:])
    readers = [ShareReader(broker, group, topic) for _ in range(3)]
    seen_before = {v for v, _, _ in first.deliveries}

    def complete():
        got = set(seen_before)
        for r in readers:
            got.update(v for v, _, _ in r.deliveries)
        return got >= set(values)

    run_share_group(readers, complete, 120)
    got = set(seen_before)
    for r in readers:
        got.update(v for v, _, _ in r.deliveries)
    assert got >= set(values), f"lost across kill -9: {sorted(set(values) - got)[:10]}"
    # Records accepted before the kill stay accepted (at least once, not all again).
    again = sum(1 for r in readers for v, _, _ in r.deliveries if v in seen_before)
    assert again < len(seen_before), f"{again} of {len(seen_before)} accepted records came back"


def test_membership_carries_on_across_kill9(fresh_broker, unique_name):
    """The restarted broker takes the share group's members over from the state the store
    kept (they keep heartbeating with their epochs, no new join), on every store; every
    record reaches the member."""
    broker = fresh_broker
    topic = unique_name("sgk9")
    create_topic(broker, topic, 1)
    group = unique_name("sg")
    set_group_configs(broker, group, share_auto_offset_reset="earliest",
                      share_heartbeat_interval_ms=500)
    produce(broker, topic, [b"a%d" % i for i in range(10)])
    reader = ShareReader(broker, group, topic)
    reader.start()
    try:
        deadline = time.time() + 60
        while len(reader.deliveries) < 10 and time.time() < deadline:
            time.sleep(0.2)
        assert len(reader.deliveries) >= 10, reader.deliveries
        broker.stop(sig="kill")
        with open(broker.log_path, "rb") as f:
            f.seek(0, 2)
            mark = f.tell()
        broker.start()
        produce(broker, topic, [b"b%d" % i for i in range(10)])
        deadline = time.time() + 90
        while len({v for v, _, _ in reader.deliveries}) < 20 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(5)  # heartbeats against the new broker process
    finally:
        reader.stop.set()
        reader.join(30)
    assert reader.error is None, reader.error
    seen = {v for v, _, _ in reader.deliveries}
    assert seen >= {b"b%d" % i for i in range(10)}, sorted(seen)
    with open(broker.log_path, "rb") as f:
        f.seek(mark)
        tail = f.read().decode(errors="replace").splitlines()
    after = [ln for ln in tail if group in ln]
    joined = [ln for ln in after if "share group member joined" in ln]
    assert any("share group taken over from its saved state" in ln for ln in after), tail[-30:]
    assert joined == [], joined
