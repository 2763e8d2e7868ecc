"""A KIP-848 consumer group (`group.protocol=consumer`) on a cluster of 3 brokers over one
PostgreSQL schema: kill -9 of the group's coordinator, and the next coordinator takes the
group over from the state the first one saved through the store. The members keep their
epochs and partitions (nothing revoked, nothing lost) and every record is read once."""
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import kwire
from clusterutil import bootstrap, wait_for

PARTITIONS = 4
# What a member meets while its coordinator is dead and the next one claims the group.
PASSING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
           KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TRANSPORT,
           KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError._MSG_TIMED_OUT}


class Member:
    def __init__(self, brokers, group, topic, name):
        self.name = name
        self.got = []
        self.revoked = []
        self.lost = []
        self.c = Consumer({
            "bootstrap.servers": bootstrap(*brokers), "group.id": group,
            "group.protocol": "consumer", "client.id": name, "enable.auto.commit": False,
            "auto.offset.reset": "earliest"})
        self.c.subscribe([topic], on_revoke=lambda _c, ps: self.revoked.extend(ps),
                         on_lost=lambda _c, ps: self.lost.extend(ps))

    def poll(self):
        msg = self.c.poll(0.05)
        if msg is None:
            return
        if msg.error():
            if msg.error().retriable() or msg.error().code() in PASSING:
                return
            raise KafkaException(msg.error())
        self.got.append(int(msg.value()))
        try:
            self.c.commit(message=msg, asynchronous=False)
        except KafkaException as e:
            if not (e.args[0].retriable() or e.args[0].code() in PASSING):
                raise

    def assigned(self):
        return {tp.partition for tp in self.c.assignment()}


def produce(brokers, topic, values):
    p = Producer({"bootstrap.servers": bootstrap(*brokers), "enable.idempotence": True,
                  "linger.ms": 5})
    for v in values:
        p.produce(topic, value=str(v).encode())
    assert p.flush(60) == 0, "undelivered records"


def test_consumer_group_survives_coordinator_kill(cluster):
    brokers = cluster.start(3)
    topic, group = "kip848-" + uuid.uuid4().hex[:6], "g-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": bootstrap(*brokers)})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(timeout=30)
    cluster.probe_topics.append(topic)
    members = [Member(brokers, group, topic, n) for n in ("a", "b")]

    def run_until(cond, what, timeout):
        def step():
            for m in members:
                m.poll()
            return cond()
        return wait_for(what, step, timeout=timeout, every=0, on_fail=lambda: {
            m.name: (sorted(m.assigned()), len(m.got)) for m in members})

    try:
        run_until(lambda: all(len(m.assigned()) == 2 for m in members),
                  "two members with two partitions each", 60)
        produce(brokers, topic, range(0, 200))
        run_until(lambda: sum(len(m.got) for m in members) >= 200, "the first 200 records", 60)
        before = {m.name: m.assigned() for m in members}
        for m in members:
            m.revoked.clear()
        err, coord, _, _ = kwire.find_coordinator(brokers[0].kafka_addr, group)
        assert err == 0, err
        dead = next(b for b in brokers if b.node_id == coord)
        live = [b for b in brokers if b is not dead]
        dead.stop("kill")
        print(f"kill -9 of broker {coord}, the group's coordinator")
        produce(live, topic, range(200, 400))
        run_until(lambda: sum(len(m.got) for m in members) >= 400,
                  "the records produced after the kill", 120)

        def moved():
            e, node, _, _ = kwire.find_coordinator(live[0].kafka_addr, group)
            return e == 0 and node != coord and node
        new_coord, _ = wait_for("a live coordinator", moved, timeout=60)
        # Heartbeats against the new coordinator for a while.
        deadline = time.time() + 8
        while time.time() < deadline:
            for m in members:
                m.poll()
        print(f"coordinator now broker {new_coord}")
        assert sorted(x for m in members for x in m.got) == list(range(400)), \
            "each record exactly once across the coordinator's kill -9"
        for m in members:
            assert m.lost == [] and m.revoked == [], \
                f"{m.name} lost {m.lost} and gave up {m.revoked} when the coordinator moved"
            assert m.assigned() == before[m.name], (m.name, before[m.name], m.assigned())
    finally:
        for m in members:
            m.c.close()
