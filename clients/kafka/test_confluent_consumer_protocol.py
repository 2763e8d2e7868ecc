"""confluent-kafka (librdkafka) with `group.protocol=consumer` (KIP-848): the broker assigns
the partitions, rebalances are incremental, and classic members are kept out of the group."""
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from kafkautil import create_topic

PARTITIONS = 6


def produce_range(broker, topic, start, count):
    p = Producer({"bootstrap.servers": broker.kafka_addr, "linger.ms": 5,
                  "enable.idempotence": True})
    for i in range(start, start + count):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    assert p.flush(30) == 0, "undelivered messages"


# What a client meets while a restarted broker takes its groups back, and retries.
PASSING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
           KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TRANSPORT}


def passing(err):
    return err.retriable() or err.code() in PASSING


class Member:
    """A consumer of the new protocol that records what it reads and what it is given and
    loses in each rebalance callback."""

    def __init__(self, broker, group, topic, name):
        self.name = name
        self.got = []
        self.revoked = []
        self.lost = []
        self.c = Consumer({
            "bootstrap.servers": broker.kafka_addr,
            "group.id": group,
            "group.protocol": "consumer",
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        })
        self.c.subscribe([topic], on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _on_revoke(self, _consumer, partitions):
        self.revoked.extend(tp.partition for tp in partitions)

    def _on_lost(self, _consumer, partitions):
        self.lost.extend(tp.partition for tp in partitions)

    def poll(self, retriable_ok=False):
        """Reads one record and commits it; `retriable_ok`: errors a client retries by itself
        (NOT_COORDINATOR while a restarted broker takes its groups back) are let through."""
        msg = self.c.poll(0.05)
        if msg is None:
            return
        if msg.error():
            if retriable_ok and passing(msg.error()):
                return
            raise KafkaException(msg.error())
        self.got.append(int(msg.value()[1:]))
        # Committed before the next poll: a partition moving on resumes after it.
        try:
            self.c.commit(message=msg, asynchronous=False)
        except KafkaException as e:
            if not (retriable_ok and passing(e.args[0])):
                raise

    def assigned(self):
        return {tp.partition for tp in self.c.assignment()}

    def close(self):
        self.c.close()


def run_until(members, cond, what, timeout=90, retriable_ok=False):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in members:
            m.poll(retriable_ok)
        if cond():
            return
    state = {m.name: (sorted(m.assigned()), len(m.got)) for m in members}
    raise AssertionError(f"timed out waiting for {what}: {state}")


def split_evenly(members, each):
    sets = [m.assigned() for m in members]
    union = set().union(*sets)
    return (all(len(s) == each for s in sets) and len(union) == PARTITIONS
            and sum(len(s) for s in sets) == PARTITIONS)


def test_consumer_protocol_group_rebalances_incrementally(broker, unique_name):
    topic = unique_name("kip848")
    group = unique_name("g")
    create_topic(broker, topic, PARTITIONS)

    members = [Member(broker, group, topic, n) for n in ("a", "b", "c")]
    run_until(members, lambda: split_evenly(members, 2), "three members with two partitions each")

    # The group as ConsumerGroupDescribe reports it.
    admin = AdminClient({"bootstrap.servers": broker.kafka_addr})
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    assert sorted(m.client_id for m in described.members) == ["a", "b", "c"]
    assert sorted(tp.partition for m in described.members
                  for tp in m.assignment.topic_partitions) == list(range(PARTITIONS))
    listed = admin.list_consumer_groups().result(timeout=30)
    assert group in [g.group_id for g in listed.valid]

    produce_range(broker, topic, 0, 600)
    run_until(members, lambda: sum(len(m.got) for m in members) >= 600, "the first 600 records")
    assert sorted(x for m in members for x in m.got) == list(range(600)), \
        "each record exactly once across the members"

    # c leaves: a and b keep what they have (nothing revoked) and take c's partitions.
    before = {m.name: m.assigned() for m in members[:2]}
    for m in members[:2]:
        m.revoked.clear()
    members[2].close()
    remaining = members[:2]
    run_until(remaining, lambda: split_evenly(remaining, 3), "two members with three partitions each")
    for m in remaining:
        assert before[m.name] <= m.assigned(), (m.name, before[m.name], m.assigned())
        assert m.revoked == [], f"{m.name} lost partitions in an incremental rebalance: {m.revoked}"

    produce_range(broker, topic, 600, 300)
    run_until(remaining, lambda: sum(len(m.got) for m in members) >= 900, "the next 300 records")
    assert sorted(x for m in members for x in m.got) == list(range(900)), \
        "each record exactly once across the rebalance"

    # A classic member cannot join while the consumer group has members.
    classic = Consumer({
        "bootstrap.servers": broker.kafka_addr,
        "group.id": group,
        "group.protocol": "classic",
        "client.id": "classic",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
    })
    classic.subscribe([topic])
    refused = None
    deadline = time.time() + 30
    while refused is None and time.time() < deadline:
        for m in remaining:
            m.poll()
        msg = classic.poll(0.1)
        if msg is not None and msg.error():
            if msg.error().code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
                refused = msg.error()
            else:
                raise KafkaException(msg.error())
        elif msg is not None:
            raise AssertionError("the classic member read a record of the consumer group")
    assert refused is not None, "the classic member was not refused"
    assert classic.assignment() == []
    classic.close()
    for m in remaining:
        assert m.assigned(), m.name
        m.close()


def test_consumer_group_carries_on_across_a_broker_kill9(fresh_broker, unique_name):
    """The store keeps the coordinator's group state, so the members keep their epochs and
    partitions across a kill -9 of the broker, on every store: nothing is revoked or lost,
    and each record is read exactly once."""
    broker = fresh_broker
    topic = unique_name("kip848k9")
    group = unique_name("g")
    create_topic(broker, topic, PARTITIONS)
    members = [Member(broker, group, topic, n) for n in ("a", "b")]
    try:
        run_until(members, lambda: split_evenly(members, 3), "two members with three partitions each")
        produce_range(broker, topic, 0, 300)
        run_until(members, lambda: sum(len(m.got) for m in members) >= 300, "the first 300 records")
        before = {m.name: m.assigned() for m in members}
        for m in members:
            m.revoked.clear()

        broker.stop(sig="kill")
        broker.start()
        produce_range(broker, topic, 300, 300)
        run_until(members, lambda: sum(len(m.got) for m in members) >= 600,
                  "the records produced after the restart", timeout=120, retriable_ok=True)
        # A few more heartbeats against the new broker process.
        deadline = time.time() + 8
        while time.time() < deadline:
            for m in members:
                m.poll(retriable_ok=True)
        assert sorted(x for m in members for x in m.got) == list(range(600)), \
            "each record exactly once across the kill -9"
        for m in members:
            assert m.lost == [] and m.revoked == [], \
                f"{m.name} lost {m.lost} and gave up {m.revoked} across the restart"
            assert m.assigned() == before[m.name], (m.name, before[m.name], m.assigned())
    finally:
        for m in members:
            m.close()


def test_commit_outside_any_group_is_a_simple_group_commit(broker, unique_name):
    """A `group.protocol=consumer` client that never subscribes still sends its member id
    with epoch -1 when it commits: to a group with no members that is Kafka's "simple group"
    commit, accepted on every store (on PostgreSQL the group is claimed, so known, first)."""
    from confluent_kafka import TopicPartition
    topic = unique_name("simple")
    group = unique_name("g")
    create_topic(broker, topic, 2)
    c = Consumer({"bootstrap.servers": broker.kafka_addr, "group.id": group,
                  "group.protocol": "consumer", "enable.auto.commit": False})
    try:
        done = c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)],
                        asynchronous=False)
        assert all(tp.error is None for tp in done), done
        got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=30)
        assert [tp.offset for tp in got] == [5, 7], got
    finally:
        c.close()
