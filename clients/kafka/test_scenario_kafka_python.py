"""The cross-client scenario (scenario.py) with kafka-python (its own pure-Python protocol code):
KafkaAdminClient, keyed produce with headers, a two-member consumer group, committed offsets
and resume, group description, topic deletion, and the admin operations kafka-python offers."""
import threading
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, OffsetSpec
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from kafka.structs import OffsetAndMetadata

import scenario as sc
from scenario import Seen, wait_until

TIMEOUT = 20


@pytest.fixture
def admin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.kafka_addr, client_id="kp-admin")
    yield a
    a.close()


def create(admin, topic, partitions=sc.PARTITIONS, configs=None):
    admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1,
                                 "configs": configs or {}}})


def produce(broker, topic, start, count, **extra):
    """Produces records start..start+count; returns {i: partition} from the record metadata."""
    p = KafkaProducer(bootstrap_servers=broker.kafka_addr, linger_ms=5, **extra)
    futures = {i: p.send(topic, key=sc.key(i), value=sc.value(i), headers=sc.headers(i))
               for i in range(start, start + count)}
    p.flush(TIMEOUT)
    out = {i: f.get(timeout=TIMEOUT).partition for i, f in futures.items()}
    p.close()
    return out


class Member:
    """A group member polling in a thread of its own, as an application would (a KafkaConsumer
    is not thread-safe, so only this thread touches it). It commits each record (synchronously)
    before it polls the next. close() stops the thread, which closes the consumer."""

    def __init__(self, broker, group, topic, name):
        self.name = name
        self.c = KafkaConsumer(topic, bootstrap_servers=broker.kafka_addr, group_id=group, client_id=name,
                               enable_auto_commit=False, auto_offset_reset="earliest",
                               session_timeout_ms=6000, heartbeat_interval_ms=300,
                               metadata_max_age_ms=2000)
        self.seen = []
        self.partitions = set()
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                for tp, recs in self.c.poll(timeout_ms=200, max_records=1).items():
                    for r in recs:
                        self.seen.append(Seen(self.name, r.partition, r.offset, r.key, r.value,
                                              list(r.headers)))
                        self.c.commit({tp: OffsetAndMetadata(r.offset + 1, "", -1)})
                self.partitions = {tp.partition for tp in self.c.assignment()}
        except Exception as e:  # reported by check() in the test thread
            self.error = e
        finally:
            self.c.close()

    def check(self):
        if self.error is not None:
            raise AssertionError(f"member {self.name} failed: {self.error!r}") from self.error

    def assigned(self):
        self.check()
        return set(self.partitions)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), f"member {self.name} did not stop"
        self.check()


def check_all(members):
    return lambda: [m.check() for m in members]


def state_of(members):
    return lambda: {m.name: (sorted(m.assigned()), len(m.seen)) for m in members}


def end_offsets(admin, topic):
    tps = {TopicPartition(topic, p): OffsetSpec.LATEST for p in range(sc.PARTITIONS)}
    return {tp.partition: r.offset for tp, r in admin.list_partition_offsets(tps).items()}


def group_offsets(admin, group, topic):
    return {tp.partition: om.offset for tp, om in admin.list_group_offsets({group: None})[group].items()
            if tp.topic == topic}


def test_admin_topic_lifecycle(admin, unique_name):
    topic = unique_name("kp-admin")
    r = admin.create_topics({topic: {"num_partitions": sc.PARTITIONS, "replication_factor": 1}})
    assert [(t["name"], t["error_code"], t["num_partitions"]) for t in r["topics"]] == [(topic, 0, sc.PARTITIONS)]
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})

    assert topic in admin.list_topics()
    [d] = admin.describe_topics([topic])
    assert (d["name"], d["error_code"], d["is_internal"]) == (topic, 0, False)
    assert sorted(p["partition_index"] for p in d["partitions"]) == list(range(sc.PARTITIONS))
    assert all(p["error_code"] == 0 and p["leader_id"] >= 0 for p in d["partitions"])
    assert topic in [t["name"] for t in admin.describe_topics()]

    r = admin.delete_topics([topic])
    assert [(t["name"], t["error_code"]) for t in r["topics"]] == [(topic, 0)]
    wait_until(lambda: topic not in admin.list_topics(), "the topic to disappear")
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([topic])


def test_group_scenario(broker, admin, unique_name):
    topic, group = unique_name("kp-grp"), unique_name("g")
    create(admin, topic)
    produced = produce(broker, topic, 0, sc.FIRST)

    a, b = Member(broker, group, topic, "a"), Member(broker, group, topic, "b")
    members = [a, b]

    def split():
        sa, sb = a.assigned(), b.assigned()
        return bool(sa) and bool(sb) and not (sa & sb) and (sa | sb) == set(range(sc.PARTITIONS))

    wait_until(lambda: split() and len(a.seen) + len(b.seen) >= sc.FIRST,
               "two members to split the partitions and consume the first records",
               step=check_all(members), state=state_of(members))
    sc.check_exactly_once(a.seen + b.seen, 0, sc.FIRST)

    produced.update(produce(broker, topic, sc.FIRST, sc.SECOND))
    sc.check_partitions_used(produced)
    total = sc.FIRST + sc.SECOND
    wait_until(lambda: len(a.seen) + len(b.seen) >= total, "the second records",
               step=check_all(members), state=state_of(members))
    second = [s for s in a.seen + b.seen if sc.index(s.value) >= sc.FIRST]
    assert {s.member for s in second} == {"a", "b"}, "both members got records once split"
    seen = a.seen + b.seen
    sc.check_exactly_once(seen, 0, total)
    sc.check_order_and_keys(seen, produced)

    ends = end_offsets(admin, topic)
    assert sum(ends.values()) == total
    assert group_offsets(admin, group, topic) == ends
    a.close()
    b.close()

    produced.update(produce(broker, topic, total, sc.AFTER_RESTART))
    c = Member(broker, group, topic, "c")
    wait_until(lambda: len(c.seen) >= sc.AFTER_RESTART, "the records produced after the restart",
               step=check_all([c]), state=state_of([c]))
    time.sleep(1.0)  # anything re-delivered would come with the first fetches
    sc.check_exactly_once(c.seen, total, sc.AFTER_RESTART)
    sc.check_order_and_keys(c.seen, produced)

    assert group in [g["group_id"] for g in admin.list_groups()]
    d = admin.describe_groups([group])[group]
    assert (d["error"], d["group_state"], d["protocol_type"]) == (None, "Stable", "consumer"), d
    assert [m["client_id"] for m in d["members"]] == ["c"]
    host = d["members"][0]["client_host"]
    [assigned] = d["members"][0]["member_assignment"]["assigned_partitions"]
    assert (assigned["topic"], sorted(assigned["partitions"])) == (topic, list(range(sc.PARTITIONS)))
    assert group_offsets(admin, group, topic) == end_offsets(admin, topic)
    c.close()
    wait_until(lambda: admin.describe_groups([group])[group]["group_state"] == "Empty",
               "the group to be Empty once its last member left")

    admin.delete_topics([topic])
    wait_until(lambda: topic not in admin.list_topics(), "the topic to disappear")

    sc.check_headers(a.seen + b.seen + c.seen)
    assert host == "/127.0.0.1", f"DescribeGroups client_host {host!r}: Kafka reports the member's address"


def read_all(broker, topic, partition, count, from_beginning=True):
    c = KafkaConsumer(bootstrap_servers=broker.kafka_addr, enable_auto_commit=False)
    tp = TopicPartition(topic, partition)
    c.assign([tp])
    if from_beginning:
        c.seek_to_beginning(tp)
    out = []
    deadline = time.time() + TIMEOUT
    while len(out) < count and time.time() < deadline:
        for recs in c.poll(timeout_ms=100).values():
            out.extend(recs)
    c.close()
    return out


def test_duplicate_header_keys_kept(broker, admin, unique_name):
    topic = unique_name("kp-hdr")
    create(admin, topic, 1)
    produce(broker, topic, 0, 5)
    assert [list(r.headers) for r in read_all(broker, topic, 0, 5)] == [sc.headers(i) for i in range(5)]


def test_create_partitions(broker, admin, unique_name):
    topic = unique_name("kp-cp")
    create(admin, topic)
    admin.create_partitions({topic: 5})
    wait_until(lambda: len(admin.describe_topics([topic])[0]["partitions"]) == 5,
               "metadata to show 5 partitions")
    p = KafkaProducer(bootstrap_servers=broker.kafka_addr)
    assert p.send(topic, value=b"in-4", partition=4).get(timeout=TIMEOUT).partition == 4
    p.close()
    assert [r.value for r in read_all(broker, topic, 4, 1)] == [b"in-4"]


def topic_config(admin, topic):
    return admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                  config_filter="all")["topic"][topic]


def test_describe_topic_config(admin, unique_name):
    topic = unique_name("kp-dc")
    create(admin, topic, 1, configs={"retention.ms": "3600000", "cleanup.policy": "delete"})
    cfg = topic_config(admin, topic)
    assert cfg["retention.ms"]["value"] == "3600000"
    assert cfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert cfg["cleanup.policy"]["value"] == "delete"
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
    assert "retention.ms" in modified


@pytest.mark.parametrize("incremental", [True, False], ids=["IncrementalAlterConfigs", "AlterConfigs"])
def test_alter_topic_config(admin, unique_name, incremental):
    topic = unique_name("kp-ac")
    create(admin, topic, 1, configs={"retention.ms": "3600000"})
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                        configs={"retention.ms": "7200000", "max.message.bytes": "500000"})],
                        incremental=incremental)
    cfg = topic_config(admin, topic)
    assert cfg["retention.ms"]["value"] == "7200000"
    assert cfg["max.message.bytes"]["value"] == "500000"


def test_delete_records(broker, admin, unique_name):
    topic = unique_name("kp-dr")
    create(admin, topic, 1)
    produce(broker, topic, 0, 10)
    tp = TopicPartition(topic, 0)
    r = admin.delete_records({tp: 4})
    assert r[tp]["low_watermark"] == 4, r
    assert admin.list_partition_offsets({tp: OffsetSpec.EARLIEST})[tp].offset == 4
    assert [m.offset for m in read_all(broker, topic, 0, 6)] == list(range(4, 10))


def test_list_offsets_by_timestamp(broker, admin, unique_name):
    topic = unique_name("kp-ts")
    create(admin, topic, 1)
    base = 1_700_000_000_000
    p = KafkaProducer(bootstrap_servers=broker.kafka_addr, linger_ms=5)
    for i in range(10):
        p.send(topic, value=b"v%d" % i, timestamp_ms=base + i * 1000)
    p.flush(TIMEOUT)
    p.close()
    tp = TopicPartition(topic, 0)
    c = KafkaConsumer(bootstrap_servers=broker.kafka_addr)
    for ts, want in [(base, 0), (base + 1, 1), (base + 9000, 9)]:
        r = c.offsets_for_times({tp: ts})[tp]
        assert (r.offset, r.timestamp) == (want, base + want * 1000), (ts, r)
    assert c.offsets_for_times({tp: base + 60_000})[tp] is None
    assert c.beginning_offsets([tp])[tp] == 0 and c.end_offsets([tp])[tp] == 10
    c.close()
    r = admin.list_partition_offsets({tp: base + 5000})[tp]
    assert (r.offset, r.timestamp) == (5, base + 5000)
    assert admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset == 10


def test_delete_group(broker, admin, unique_name):
    topic, group = unique_name("kp-dg"), unique_name("g")
    create(admin, topic, 1)
    produce(broker, topic, 0, 3)
    m = Member(broker, group, topic, "dg")
    wait_until(lambda: len(m.seen) >= 3, "three records", step=m.check)
    m.close()
    assert group in [g["group_id"] for g in admin.list_groups()]
    result = admin.delete_groups([group])  # {group_id: 'OK' or the error's class name}
    assert result == {group: "OK"}, result
    assert group not in [g["group_id"] for g in admin.list_groups()]
    assert admin.list_group_offsets({group: None})[group] == {}
