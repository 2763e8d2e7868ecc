"""A group coordinator paused (SIGSTOP) past its lapse is fenced once it runs again: the group
moved to another broker meanwhile, and a late OffsetCommit the paused broker finds in its
socket when it wakes is refused and changes nothing."""
import logging
import re
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kwire
from clusterutil import bootstrap, metrics, wait_for

# The codes a broker that is no longer the coordinator may refuse a group request with.
NOT_THE_COORDINATOR = {kwire.NOT_COORDINATOR, kwire.COORDINATOR_NOT_AVAILABLE}


class JoinLog(logging.Handler):
    """Collects librdkafka's cgrp debug lines; the JoinGroup answers name the generation."""

    def __init__(self):
        super().__init__()
        self.joins = []  # (generation, member id)

    def emit(self, record):
        m = re.search(r"JoinGroup response: GenerationId (-?\d+), .*my MemberId (\S+),",
                      record.getMessage())
        if m and int(m.group(1)) >= 0:
            self.joins.append((int(m.group(1)), m.group(2)))


class Member(threading.Thread):
    """A confluent-kafka group member that keeps polling and commits what it consumed every
    0.3 s (synchronously) while `committing` is set."""

    def __init__(self, conf, topic):
        super().__init__(daemon=True)
        self.joinlog = JoinLog()
        log = logging.getLogger("member-" + uuid.uuid4().hex[:6])
        log.addHandler(self.joinlog)
        log.setLevel(logging.DEBUG)
        log.propagate = False
        self.consumer = Consumer(dict(conf, debug="cgrp", logger=log))
        self.topic = topic
        self.stop_flag = threading.Event()
        self.committing = threading.Event()
        self.committing.set()
        self.position = None
        self.member_id = None
        self.acked = []   # (offset, time) of acknowledged commits
        self.errors = []
        self.error = None

    def run(self):
        try:
            self.consumer.subscribe([self.topic])
            last = 0.0
            while not self.stop_flag.is_set():
                msg = self.consumer.poll(0.1)
                # (asked here: calling the consumer from another thread while poll() serves
                # the logger can deadlock on the GIL)
                self.member_id = self.consumer.memberid()
                if msg is not None and msg.error() is None:
                    self.position = msg.offset() + 1
                if (self.committing.is_set() and self.position is not None
                        and time.monotonic() - last > 0.3):
                    last = time.monotonic()
                    try:
                        r = self.consumer.commit(
                            offsets=[TopicPartition(self.topic, 0, self.position)],
                            asynchronous=False)
                        if r[0].error is None:
                            self.acked.append((r[0].offset, time.monotonic()))
                        else:
                            self.errors.append(str(r[0].error))
                    except KafkaException as e:
                        self.errors.append(str(e))
        except Exception as e:
            self.error = e
        finally:
            self.consumer.close()


def committed_via(brokers, group, topic):
    """(coordinator id, committed offset of partition 0) asking only `brokers`: FindCoordinator,
    then OffsetFetch at the coordinator it names."""
    for b in brokers:
        err, node, host, port = kwire.find_coordinator(b.kafka_addr, group)
        if err == 0:
            (off, perr), = kwire.offset_fetch(f"{host}:{port}", group, topic, [0]).values()
            return node, off if perr == 0 else f"error {perr}"
    return None


def test_paused_coordinator_is_fenced(cluster):
    brokers = cluster.start(3)
    topic, group = "paused", "g-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": bootstrap(*brokers)})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic] \
        .result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap(*brokers), "acks": "all"})
    for i in range(100):
        producer.produce(topic, value=str(i).encode(), partition=0)
    assert producer.flush(30) == 0

    member = Member({"bootstrap.servers": bootstrap(*brokers), "group.id": group,
                     "client.id": "member", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                     "heartbeat.interval.ms": 1000, "socket.timeout.ms": 5000}, topic)
    member.start()
    try:
        wait_for("a commit by the member", lambda: member.acked, timeout=30,
                 on_fail=cluster.diagnostics)
        err, coord, _, _ = kwire.find_coordinator(brokers[0].kafka_addr, group)
        assert err == 0
        x = next(b for b in brokers if b.node_id == coord)
        others = [b for b in brokers if b is not x]
        generation, member_id = member.joinlog.joins[-1]
        assert member_id == member.member_id, (member.joinlog.joins, member.member_id)
        before = metrics(x)
        committed_before = member.acked[-1][0]
        print(f"coordinator X = broker {coord}; member {member_id} generation {generation}; "
              f"committed {committed_before}")

        # SIGSTOP X past its lapse; the member keeps consuming and committing, and its group
        # moves to another broker.
        x.pause()
        paused = time.monotonic()
        # More records, through the other brokers, for the member to consume and commit.
        # (X is still in Metadata until its lapse: short timeouts, so that the producer soon
        # gives up on a connection to it)
        more = Producer({"bootstrap.servers": bootstrap(*others), "acks": "all",
                         "api.version.request.timeout.ms": 2000, "socket.timeout.ms": 5000})
        for i in range(300, 400):
            more.produce(topic, value=str(i).encode(), partition=0)
        assert more.flush(30) == 0, "records not delivered through the other brokers"
        print(f"100 more records delivered through the others {time.monotonic() - paused:.1f}s "
              "after SIGSTOP")

        def moved():
            got = committed_via(others, group, topic)
            return (got and got[0] != x.node_id and isinstance(got[1], int)
                    and got[1] > committed_before and time.monotonic() - paused
                    > 2.5 * cluster.lapse_ms / 1000 and got)

        (y_id, newer), _ = wait_for("the group to commit a newer offset through another broker",
                                       moved, timeout=60, every=0.2, on_fail=cluster.diagnostics)
        took = time.monotonic() - paused
        member.committing.clear()  # no more commits: what is stored now must stay
        time.sleep(1.0)
        y_id, newer = committed_via(others, group, topic)
        print(f"while X is stopped: coordinator is now broker {y_id}, committed offset {newer} "
              f"({took:.1f}s after SIGSTOP)")
        assert y_id != x.node_id and newer > committed_before

        # A late commit (moving the group back to 0) waits in X's socket while X is stopped.
        late = kwire.Conn(x.kafka_addr, timeout=20)
        cid = late.send(kwire.OFFSET_COMMIT, 2,
                        kwire.offset_commit_body(group, generation, member_id, {topic: {0: 0}}))
        stopped_for = time.monotonic() - paused
        x.resume()
        answer = kwire.offset_commit_result(late.recv(cid, timeout=20))
        late.close()
        code = answer[(topic, 0)]
        print(f"X stopped {stopped_for:.1f}s (lapse {cluster.lapse_ms} ms); late OffsetCommit "
              f"(generation {generation}, offset 0) answered with error code {code}")

        y_id2, after = committed_via(others, group, topic)
        print(f"committed offset read via broker {y_id2} after X woke: {after}")
        assert code in NOT_THE_COORDINATOR, f"X answered the late commit with {code}"
        assert after == newer, f"the late commit moved the group from {newer} to {after}"

        now = wait_for("X's metrics", lambda: metrics(x), timeout=10)[0]
        lost = now.get("broker_coordinator_lost_total")
        fenced = now.get("broker_fenced_writes_total")
        print(f"X /metrics: broker_coordinator_lost_total {before.get('broker_coordinator_lost_total')}"
              f" -> {lost}, broker_fenced_writes_total {before.get('broker_fenced_writes_total')}"
              f" -> {fenced}")
        assert lost is not None and lost >= 1, now
        assert member.error is None, member.error
    finally:
        member.stop_flag.set()
        if x_paused(cluster):
            for b in cluster.brokers:
                if b.paused:
                    b.resume()
        member.join(30)


def x_paused(cluster):
    return any(b.paused for b in cluster.brokers)
