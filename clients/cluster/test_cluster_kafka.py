"""Kafka clients against a cluster of 3 brokers over one PostgreSQL schema: the live brokers in
Metadata, partition leaders spread and moved off a dead broker, and a consumer group that
survives its coordinator's kill -9."""
import logging
import os
import threading
import time
import uuid
from collections import defaultdict

from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

import kwire
from clusterutil import bootstrap, wait_for

# How long past session timeout + lapse the group may take to be stable again (2 cores, loaded).
STABLE_SLACK_S = 15


def create_topic(brokers, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap(*brokers)})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name] \
        .result(timeout=30)


def test_metadata_lists_live_brokers(cluster):
    brokers = cluster.start(3)
    expected = {b.node_id: ("127.0.0.1", b.kafka_port) for b in brokers}

    # Every broker lists all three, with their own addresses (a broker may take a heartbeat to
    # see the ones started after it).
    for b in brokers:
        md, _ = wait_for(f"3 brokers in Metadata from broker {b.node_id}",
                         lambda: (m := kwire.metadata(b.kafka_addr))["brokers"] == expected and m,
                         timeout=15, on_fail=cluster.diagnostics)
        assert md["brokers"] == expected
    for b in brokers:
        # and as confluent-kafka sees it, bootstrapped to this broker alone (once all agree:
        # librdkafka may ask any broker it learned of)
        cmd = AdminClient({"bootstrap.servers": b.kafka_addr}).list_topics(timeout=10)
        assert {n: (m.host, m.port) for n, m in cmd.brokers.items()} == expected

    create_topic(brokers, "spread", 12)
    leaders = {}
    for b in brokers:
        md = kwire.metadata(b.kafka_addr, ["spread"])
        t = md["topics"]["spread"]
        assert t["error"] == 0 and sorted(t["partitions"]) == list(range(12)), t
        leaders[b.node_id] = t["partitions"]
    # The brokers agree on the leaders, and each leads an even share (4 of 12).
    assert leaders[1] == leaders[2] == leaders[3], leaders
    print(f"leaders of the 12 partitions: {leaders[1]}")
    assert sorted(leaders[1].values()) == sorted(list(expected) * 4), leaders[1]

    # kill -9 a broker that leads something: the others drop it and move its partitions.
    dead = brokers[1]
    assert dead.node_id in leaders[1].values()
    dead.stop("kill")
    killed = time.time()
    live = [brokers[0], brokers[2]]
    live_ids = {b.node_id for b in live}

    def moved(b):
        md = kwire.metadata(b.kafka_addr, ["spread"])
        parts = md["topics"]["spread"]["partitions"]
        return (set(md["brokers"]) == live_ids and set(parts.values()) <= live_ids
                and len(parts) == 12 and parts)

    budget = cluster.lapse_ms / 1000 + 3 * cluster.heartbeat_ms / 1000 + 2.0
    seen = {}
    for b in live:
        parts, _ = wait_for(f"broker {b.node_id} to drop broker {dead.node_id}",
                            lambda: moved(b), timeout=30, on_fail=cluster.diagnostics)
        took = time.time() - killed
        print(f"broker {b.node_id}: {dead.node_id} gone from Metadata {took:.2f}s after kill -9 "
              f"(budget {budget:.1f}s); leaders now {parts}")
        assert took < budget, f"{took:.2f}s > lapse + 3 heartbeats + 2s slack"
        seen[b.node_id] = parts
    # Only once every live broker dropped it: librdkafka may send its Metadata request to any
    # broker it learned of, not only the one it was bootstrapped to.
    for b in live:
        parts = seen[b.node_id]
        cmd = AdminClient({"bootstrap.servers": b.kafka_addr}).list_topics("spread", timeout=10)
        assert set(cmd.brokers) == live_ids, cmd.brokers
        assert {p: m.leader for p, m in cmd.topics["spread"].partitions.items()} == parts
        # The 12 are spread evenly again (6 each), and at least half of the 8 partitions the
        # live brokers led keep their leader (rendezvous hashing, evened out per topic).
        assert sorted(parts.values()) == sorted(list(live_ids) * 6), parts
        kept = [p for p, leader in leaders[1].items() if leader != dead.node_id
                and parts[p] == leader]
        assert len(kept) >= 4, (leaders[1], parts)


class Ledger:
    """What the clients did, with times (time.monotonic), shared by their threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {}               # value -> index of the producer it was handed to
        self.acked = {}              # value -> (partition, offset): delivery report succeeded
        self.failed = {}             # value -> error of its delivery report
        self.consumed = []           # (consumer, assignment no, partition, offset, value)
        self.assigns = []            # (consumer, assignment no, partitions, time)
        self.commit_tries = defaultdict(list)   # partition -> [(offset, time)]
        self.commit_acks = defaultdict(list)    # partition -> [(offset, time)]
        self.commit_errors = []      # (consumer, error)


class GroupConsumer(threading.Thread):
    """A confluent-kafka group member: processes each record (records it in the ledger), then
    commits what it processed, synchronously, every few records and when partitions are
    revoked. A commit counts as done only when commit() returned no error for the partition."""

    def __init__(self, name, conf, topic, ledger):
        super().__init__(daemon=True, name=name)
        self.cname = name
        self.topic = topic
        self.ledger = ledger
        if os.environ.get("CLUSTER_CLIENT_DEBUG"):  # librdkafka debug contexts, to stderr
            conf = dict(conf, debug=os.environ["CLUSTER_CLIENT_DEBUG"],
                        logger=logging.getLogger(name))
        self.consumer = Consumer(conf)
        self.stop_flag = threading.Event()
        self.assignment_no = 0
        self.assigned = set()
        self.pending = {}   # partition -> next offset, processed but not committed
        self.last_ack = 0.0  # time.monotonic() of the last acknowledged commit
        self.error = None

    def commit(self):
        if not self.pending:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in sorted(self.pending.items())]
        now = time.monotonic()
        with self.ledger.lock:
            for tp in offsets:
                self.ledger.commit_tries[tp.partition].append((tp.offset, now))
        try:
            result = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            with self.ledger.lock:
                self.ledger.commit_errors.append((self.cname, str(e)))
            return  # kept pending: retried at the next commit
        done = time.monotonic()
        with self.ledger.lock:
            for tp in result:
                if tp.error is None:
                    self.ledger.commit_acks[tp.partition].append((tp.offset, done))
                    self.last_ack = done
                    if self.pending.get(tp.partition) == tp.offset:
                        del self.pending[tp.partition]
                else:
                    self.ledger.commit_errors.append((self.cname, str(tp.error)))

    def on_assign(self, consumer, partitions):
        self.assignment_no += 1
        self.assigned = {tp.partition for tp in partitions}
        with self.ledger.lock:
            self.ledger.assigns.append((self.cname, self.assignment_no, sorted(self.assigned),
                                        time.monotonic()))

    def on_revoke(self, consumer, partitions):
        self.commit()
        self.pending.clear()  # what could not be committed is another member's to redo
        self.assigned = set()

    def run(self):
        try:
            self.consumer.subscribe([self.topic], on_assign=self.on_assign,
                                    on_revoke=self.on_revoke, on_lost=self.on_revoke)
            last_commit = time.monotonic()
            while not self.stop_flag.is_set():
                msg = self.consumer.poll(0.1)
                if msg is not None and msg.error() is None:
                    with self.ledger.lock:
                        self.ledger.consumed.append((self.cname, self.assignment_no,
                                                     msg.partition(), msg.offset(),
                                                     int(msg.value())))
                    self.pending[msg.partition()] = msg.offset() + 1
                if time.monotonic() - last_commit > 0.3 or len(self.pending) > 50:
                    self.commit()
                    last_commit = time.monotonic()
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.consumer.close()


class Producers(threading.Thread):
    """One idempotent producer (acks=all) per bootstrap; numbered records, partition = n % P.
    A record counts as produced only when its delivery report succeeded."""

    def __init__(self, bootstraps, topic, partitions, ledger, rate=150):
        super().__init__(daemon=True, name="producers")
        self.topic = topic
        self.partitions = partitions
        self.ledger = ledger
        self.rate = rate  # records per second per producer
        self.producers = []
        for i, bs in enumerate(bootstraps):
            conf = {"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True,
                    "linger.ms": 5, "message.timeout.ms": 30000, "client.id": f"p{i}"}
            if os.environ.get("CLUSTER_PRODUCER_DEBUG"):  # librdkafka debug contexts
                conf.update(debug=os.environ["CLUSTER_PRODUCER_DEBUG"],
                            logger=logging.getLogger(f"p{i}"))
            self.producers.append(Producer(conf))
        self.stop_flag = threading.Event()
        self.next = 0
        self.errors = []

    def report(self, err, msg):
        v = int(msg.value())
        with self.ledger.lock:
            if err is None:
                self.ledger.acked[v] = (msg.partition(), msg.offset())
            else:
                self.ledger.failed[v] = str(err)

    def run(self):
        step = 0.05
        per_step = max(1, int(self.rate * step))
        while not self.stop_flag.is_set():
            for i, p in enumerate(self.producers):
                for _ in range(per_step):
                    n = self.next
                    self.next += 1
                    with self.ledger.lock:
                        self.ledger.sent[n] = i
                    try:
                        p.produce(self.topic, value=str(n).encode(), partition=n % self.partitions,
                                  on_delivery=self.report)
                    except (KafkaException, BufferError) as e:
                        with self.ledger.lock:
                            self.ledger.sent.pop(n, None)
                        self.errors.append(str(e))
                p.poll(0)
            time.sleep(step)

    def finish(self, timeout=40):
        self.stop_flag.set()
        self.join()
        for p in self.producers:
            left = p.flush(timeout)
            assert left == 0, f"{left} records still undelivered after {timeout}s"


def test_group_survives_coordinator_kill(cluster):
    """3 members, each bootstrapped to a different broker (a single broker each: librdkafka
    learns the others from Metadata, so the member whose broker dies still finds the rest);
    3 idempotent producers, one per broker, likewise. kill -9 the group's coordinator
    mid-stream.

    The clients start once every broker lists all three (cluster.start waits for that): a
    broker answers Metadata with the brokers it saw at its last heartbeat, and a client that
    bootstraps to a broker started first can otherwise learn only that broker (its producer
    then cannot fail over when that broker dies; a consumer may lose a Metadata request to
    a broker handle librdkafka drops and wait ~60 s to join)."""
    brokers = cluster.start(3)
    topic, partitions, group = "events", 6, "g-" + uuid.uuid4().hex[:8]
    create_topic(brokers, topic, partitions)
    cluster.probe_topics.append(topic)
    session_ms = 6000
    ledger = Ledger()
    consumers = [GroupConsumer(f"c{i}", {
        "bootstrap.servers": b.kafka_addr, "group.id": group, "client.id": f"c{i}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms, "heartbeat.interval.ms": 1000,
        "partition.assignment.strategy": "range"}, topic, ledger)
        for i, b in enumerate(brokers)]
    producers = Producers([b.kafka_addr for b in brokers], topic, partitions, ledger)
    try:
        for c in consumers:
            c.start()
        producers.start()
        expected_members = ["c0", "c1", "c2"]
        # DescribeGroups by hand (kwire) at the coordinator that FindCoordinator names: an
        # AdminClient polled while the coordinator is dead hit a librdkafka assertion
        # (rd_kafka_enq_once_del_source_return) once.
        asked = [b.kafka_addr for b in brokers]

        def stable(avoid=None):
            got = kwire.group_at(asked, group)
            return (got is not None and got[1:] == (0, "Stable", expected_members)
                    and got[0] != avoid and got)

        (coord, *_), took = wait_for("the group stable with 3 members", stable, timeout=60,
                                       every=0.25, on_fail=cluster.diagnostics)
        print(f"group stable with 3 members {took:.1f}s after start; coordinator {coord}")
        # The coordinator as AdminClient (FindCoordinator, DescribeGroups) sees it.
        admin = AdminClient({"bootstrap.servers": bootstrap(*brokers)})
        d = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert d.coordinator.id == coord and d.state == ConsumerGroupState.STABLE, d
        assert sorted(m.client_id for m in d.members) == expected_members, d.members
        del admin
        # Some work done and committed before the kill.
        wait_for("commits before the kill", lambda: len(ledger.commit_acks) == partitions
                 and len(ledger.consumed) > 500, timeout=30, on_fail=cluster.diagnostics)

        dead = next(b for b in brokers if b.node_id == coord)
        live = [b for b in brokers if b is not dead]
        dead.stop("kill")
        killed = time.monotonic()
        first_after_kill = producers.next
        print(f"kill -9 of broker {coord} (the coordinator) after {len(ledger.consumed)} records "
              "consumed")
        asked = [b.kafka_addr for b in live]
        # Stable again: DescribeGroups at a live coordinator shows the 3 members, and every
        # member has had a commit acknowledged since the kill (so it is back in the group, not
        # just listed).
        def back():
            got = stable(avoid=coord)
            return got and all(c.last_ack > killed for c in consumers) and got

        (new_coord, *_), took = wait_for(
            "the group stable again with 3 members committing through a live coordinator",
            back, timeout=90, every=0.25, on_fail=cluster.diagnostics)
        budget = (session_ms + cluster.lapse_ms) / 1000 + STABLE_SLACK_S
        print(f"group stable again with all 3 members {took:.1f}s after kill -9, coordinator "
              f"{new_coord} (budget: session {session_ms} ms + lapse {cluster.lapse_ms} ms + "
              f"{STABLE_SLACK_S} s slack = {budget:.0f} s)")
        # Keep producing a while on the new generation, then drain.
        time.sleep(2)
        producers.finish()
        with ledger.lock:
            acked = dict(ledger.acked)
        wait_for("every acknowledged record consumed",
                 lambda: set(acked) <= {v for *_, v in ledger.consumed}, timeout=60,
                 on_fail=lambda: f"missing: {sorted(set(acked) - {v for *_, v in ledger.consumed})[:20]}")
        time.sleep(1)  # last commits
        for c in consumers:
            c.stop_flag.set()
        for c in consumers:
            c.join(30)
            assert c.error is None, f"{c.cname}: {c.error!r}"
        assert took < budget, f"stable again after {took:.1f}s > {budget:.0f}s"
        check_ledger(ledger, partitions)
        # The store has each partition's last acknowledged commit (read through a live broker).
        committed = committed_offsets(live, group, topic, partitions)
        last_acked = {p: max(ledger.commit_acks[p], key=lambda a: a[1])[0]
                      for p in range(partitions)}
        print(f"committed offsets after the run: {committed}")
        assert committed == last_acked, (committed, last_acked)
        # Every producer got records acknowledged after the kill, the one whose bootstrap broker
        # died included (it fails over to the brokers it learned from Metadata).
        for i in range(len(producers.producers)):
            after = [v for v in ledger.acked if v >= first_after_kill and ledger.sent[v] == i]
            assert after, f"producer p{i} got no record acknowledged after the kill"

        # The killed broker comes back with its node id: everyone lists 3 brokers again.
        dead.start()
        expected = {b.node_id: ("127.0.0.1", b.kafka_port) for b in brokers}
        for b in brokers:
            _, took = wait_for(f"broker {b.node_id} listing the 3 brokers again",
                               lambda: kwire.metadata(b.kafka_addr)["brokers"] == expected,
                               timeout=15, on_fail=cluster.diagnostics)
        md = AdminClient({"bootstrap.servers": dead.kafka_addr}).list_topics(timeout=10)
        assert {n: (m.host, m.port) for n, m in md.brokers.items()} == expected
        print(f"broker {dead.node_id} restarted and listed by all 3")
    finally:
        producers.stop_flag.set()
        for c in consumers:
            c.stop_flag.set()
        for c in consumers:
            if c.is_alive():
                c.join(30)


def committed_offsets(brokers, group, topic, partitions):
    """{partition: committed offset} as confluent-kafka's AdminClient reads it (OffsetFetch at
    the group's coordinator), bootstrapped to `brokers`."""
    admin = AdminClient({"bootstrap.servers": bootstrap(*brokers)})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    got = admin.list_consumer_group_offsets([req], request_timeout=10)[group].result(timeout=15)
    return {tp.partition: tp.offset for tp in got.topic_partitions}


def check_ledger(ledger, partitions):
    """No acknowledged record lost; every record consumed twice was not committed when its
    partition was handed out again."""
    acked, consumed = ledger.acked, ledger.consumed
    values = {v for *_, v in consumed}
    lost = sorted(set(acked) - values)
    assert not lost, f"{len(lost)} acknowledged records never consumed: {lost[:20]}"
    assert values <= ledger.sent.keys(), \
        f"consumed values never sent: {sorted(values - ledger.sent.keys())[:20]}"
    # Each acked record was consumed from the partition and offset its delivery report named.
    where = {}
    for _, _, p, o, v in consumed:
        where.setdefault(v, set()).add((p, o))
    wrong = {v: (acked[v], where[v]) for v in acked if where[v] != {acked[v]}}
    assert not wrong, f"records read back at other places than acknowledged: {list(wrong.items())[:10]}"

    # Per assignment: offsets strictly increasing; the first one is where the partition resumed.
    runs = defaultdict(list)
    for c, n, p, o, _ in consumed:
        runs[(c, n, p)].append(o)
    assigned_at = {(c, n): t for c, n, _, t in ledger.assigns}
    duplicates = len(consumed) - len(values)
    for (c, n, p), offs in runs.items():
        assert offs == sorted(set(offs)), f"{c} assignment {n} partition {p}: offsets {offs[:50]}"
        resume, t = offs[0], assigned_at[(c, n)]
        acked_before = [o for o, ta in ledger.commit_acks[p] if ta < t]
        tried = {o for o, _ in ledger.commit_tries[p]}
        floor = max(acked_before, default=0)
        # Not before a commit that was acknowledged before the assignment (no re-delivery of
        # committed work), and at a committed position (0 before any commit).
        assert resume >= floor, (f"{c} assignment {n} resumed partition {p} at {resume}, before "
                                 f"the commit of {floor} acknowledged earlier")
        assert resume in tried or resume == 0, \
            f"{c} assignment {n} resumed partition {p} at {resume}: never committed ({sorted(tried)[-5:]})"
    redone = sum(len(o) for o in runs.values()) - len({(p, o) for _, _, p, o, _ in consumed})
    print(f"records: {len(ledger.sent)} sent, {len(acked)} acknowledged, {len(ledger.failed)} "
          f"failed, {len(consumed)} consumed ({duplicates} duplicates, {redone} re-deliveries); "
          f"{sum(len(v) for v in ledger.commit_acks.values())} commits acknowledged, "
          f"{len(ledger.commit_errors)} commit errors; assignments: "
          f"{[(c, n, ps) for c, n, ps, _ in ledger.assigns]}")
    if ledger.failed:
        print(f"failed deliveries (first 5): {list(ledger.failed.items())[:5]}")
    if ledger.commit_errors:
        print(f"commit errors (first 5): {ledger.commit_errors[:5]}")
