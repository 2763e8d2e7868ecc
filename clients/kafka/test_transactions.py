"""Kafka transactions (KIP-98) with confluent-kafka: what read_committed and read_uncommitted
consumers see of committed, aborted and open transactions, fencing of a zombie producer, the
broker aborting a transaction past its timeout, and a consume-transform-produce loop that
stays exactly once while the broker is killed with SIGKILL."""
import multiprocessing
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from kafkautil import create_topic


def txn_producer(broker, txn_id, **extra):
    conf = {"bootstrap.servers": broker.kafka_addr, "transactional.id": txn_id, "linger.ms": 5}
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def consumer(broker, isolation, group=None, **extra):
    conf = {"bootstrap.servers": broker.kafka_addr,
            "group.id": group or "g-" + uuid.uuid4().hex[:8],
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "isolation.level": isolation}
    conf.update(extra)
    return Consumer(conf)


def drain(c, topics, idle_s=3.0, limit_s=60.0, subscribe=True):
    """Every message of `topics` until none arrives for `idle_s`, as (partition, offset,
    value) triples (`subscribe=False`: a consumer subscribed before reads on)."""
    if subscribe:
        c.subscribe(topics)
    got, last, start = [], time.time(), time.time()
    while time.time() - last < idle_s and time.time() - start < limit_s:
        for m in c.consume(500, timeout=0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            got.append((m.partition(), m.offset(), m.value()))
            last = time.time()
    return got


def in_txn(p, topic, values, partition=0, commit=True):
    p.begin_transaction()
    for v in values:
        p.produce(topic, value=v, partition=partition)
    p.flush(30)
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)


def test_read_committed_sees_committed_transactions_only(broker, unique_name):
    topic = unique_name("txn")
    create_topic(broker, topic, 1)
    p = txn_producer(broker, unique_name("tid"))
    in_txn(p, topic, [b"a%d" % i for i in range(10)])
    in_txn(p, topic, [b"b%d" % i for i in range(10)], commit=False)
    in_txn(p, topic, [b"c%d" % i for i in range(10)])
    # One left open: read_committed consumers stop before it.
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, value=b"d%d" % i, partition=0)
    p.flush(30)

    committed = consumer(broker, "read_committed")
    got = [v for _, _, v in drain(committed, [topic])]
    assert got == [b"a%d" % i for i in range(10)] + [b"c%d" % i for i in range(10)]
    # 10 + 10 + 10 records and 3 markers, then 5 records of the open transaction: a
    # read_committed consumer's end of the partition is the last stable offset (33).
    low, high = committed.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (low, high) == (0, 33)

    uncommitted = consumer(broker, "read_uncommitted")
    values = [v for _, _, v in drain(uncommitted, [topic])]
    assert uncommitted.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 38)
    assert values == ([b"a%d" % i for i in range(10)] + [b"b%d" % i for i in range(10)]
                      + [b"c%d" % i for i in range(10)] + [b"d%d" % i for i in range(5)])

    p.commit_transaction(30)
    later = [v for _, _, v in drain(committed, [topic], subscribe=False)]
    assert later == [b"d%d" % i for i in range(5)]
    committed.close()
    uncommitted.close()


def test_a_second_producer_fences_the_first(broker, unique_name):
    topic = unique_name("fence")
    create_topic(broker, topic, 1)
    tid = unique_name("tid")
    first = txn_producer(broker, tid)
    first.begin_transaction()
    first.produce(topic, value=b"zombie", partition=0)
    first.flush(30)
    second = txn_producer(broker, tid)  # aborts first's transaction, bumps the epoch
    in_txn(second, topic, [b"live"])
    try:
        first.commit_transaction(30)
        raise AssertionError("the fenced producer committed")
    except KafkaException as e:
        assert e.args[0].fatal() or e.args[0].code() in (
            KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), e
    got = [v for _, _, v in drain(consumer(broker, "read_committed"), [topic])]
    assert got == [b"live"]


def test_the_broker_aborts_a_transaction_past_its_timeout(broker, unique_name):
    topic = unique_name("timeout")
    create_topic(broker, topic, 1)
    slow = txn_producer(broker, unique_name("tid"), **{"transaction.timeout.ms": 2000})
    slow.begin_transaction()
    for i in range(5):
        slow.produce(topic, value=b"late%d" % i, partition=0)
    slow.flush(30)
    other = txn_producer(broker, unique_name("tid"))
    in_txn(other, topic, [b"on-time"])
    c = consumer(broker, "read_committed")
    deadline = time.time() + 20
    got = []
    c.subscribe([topic])
    while time.time() < deadline and not got:
        got = [v for _, _, v in drain(c, [topic], idle_s=1.0, subscribe=False)]
    assert got == [b"on-time"], "the timed-out transaction must end (aborted) for the LSO to move"
    try:
        slow.commit_transaction(10)
        raise AssertionError("a transaction the broker aborted was committed")
    except KafkaException:
        pass
    c.close()


N_INPUT = 3000
KILLS = 4


def transform_loop(broker_addr, src, dst, group, tid, done):
    """Reads `src`, writes each record's value prefixed to `dst` inside a transaction that
    also commits the consumer's offsets; on any error starts over with a fresh producer
    (which fences the last one) and consumer (which resumes at the committed offsets).
    Runs in a process of its own (see the test)."""
    while not done.is_set():
        p = c = None
        try:
            p = Producer({"bootstrap.servers": broker_addr, "transactional.id": tid,
                          "linger.ms": 5, "transaction.timeout.ms": 10000})
            p.init_transactions(30)
            # A short session, so a replaced worker's member leaves the group soon.
            c = Consumer({"bootstrap.servers": broker_addr, "group.id": group,
                          "auto.offset.reset": "earliest", "enable.auto.commit": False,
                          "isolation.level": "read_committed",
                          "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
            c.subscribe([src])
            while not done.is_set():
                msgs = [m for m in c.consume(25, timeout=0.5) if not m.error()]
                if not msgs:
                    continue
                p.begin_transaction()
                for m in msgs:
                    p.produce(dst, key=m.key(), value=b"t:" + m.value(), partition=m.partition())
                # Slow enough that the kills land inside transactions.
                p.flush(30)
                time.sleep(0.05)
                p.send_offsets_to_transaction(c.position(c.assignment()),
                                              c.consumer_group_metadata(), 30)
                p.commit_transaction(30)
        except KafkaException as e:
            print(f"transform worker: {e}", flush=True)
            time.sleep(0.5)
        finally:
            if c is not None:
                try:
                    c.close()
                except KafkaException:
                    pass


# A worker that makes no progress this long after the broker came back is stuck in
# librdkafka (see below) and is replaced, as an application's supervisor would.
STUCK_S = 25.0


def test_consume_transform_produce_is_exactly_once_under_sigkill(fresh_broker, unique_name):
    """The broker is SIGKILLed KILLS times while a consume-transform-produce loop runs; the
    read_committed output must hold every input exactly once.

    librdkafka (2.15, 2.16) can hang in send_offsets_to_transaction after a broker restart
    that comes back within a second: it waits for a group-coordinator handle it dropped and
    ignores the call's timeout (librdkafka issues 5456 and 5511). The worker therefore runs in
    a process of its own, and a worker stuck for STUCK_S is killed and replaced by one with
    the same transactional.id, whose InitProducerId fences the stuck one: exactly once must
    hold through that too."""
    b = fresh_broker
    src, dst = unique_name("src"), unique_name("dst")
    create_topic(b, src, 2)
    create_topic(b, dst, 2)
    feed = Producer({"bootstrap.servers": b.kafka_addr, "enable.idempotence": True})
    for i in range(N_INPUT):
        feed.produce(src, key=b"%d" % i, value=b"%d" % i, partition=i % 2)
    assert feed.flush(30) == 0
    group, tid = unique_name("ctp"), unique_name("tid")
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Event()

    def start_worker():
        w = ctx.Process(target=transform_loop, args=(b.kafka_addr, src, dst, group, tid, done),
                        daemon=True)
        w.start()
        return w

    worker = start_worker()
    kills, progress_at_kills, replaced = 0, [], 0
    check = consumer(b, "read_committed", group=group)

    def progress():
        parts = [TopicPartition(src, 0), TopicPartition(src, 1)]
        return sum(max(tp.offset, 0) for tp in check.committed(parts, timeout=30))

    try:
        deadline = time.time() + 300
        last, moved_at = -1, time.time()
        while time.time() < deadline:
            time.sleep(1.5)
            done_so_far = progress()
            if done_so_far >= N_INPUT:
                break
            if done_so_far != last:
                last, moved_at = done_so_far, time.time()
            if kills < KILLS:
                progress_at_kills.append(done_so_far)
                b.stop("kill")
                kills += 1
                b.start()
                moved_at = time.time()
            elif time.time() - moved_at > STUCK_S:
                worker.kill()
                worker.join(10)
                worker = start_worker()
                replaced += 1
                moved_at = time.time()
        else:
            raise AssertionError(f"input not consumed in time ({replaced} workers replaced)\n"
                                 f"broker log:\n{b.log_tail(150)}")
    finally:
        done.set()
        worker.join(60)
        if worker.is_alive():
            worker.kill()
    print(f"{kills} broker kills, {replaced} stuck workers replaced")
    out = drain(consumer(b, "read_committed"), [dst], idle_s=3.0)
    values = sorted(int(v[2:]) for _, _, v in out)
    dupes = len(values) - len(set(values))
    assert dupes == 0, f"{dupes} records written twice after {kills} kills"
    assert values == list(range(N_INPUT)), f"{N_INPUT - len(set(values))} records missing"
    # Everything the aborted attempts wrote is in the log but never read committed.
    raw = drain(consumer(b, "read_uncommitted"), [dst], idle_s=3.0)
    assert len(raw) >= N_INPUT
    # The kills came while the loop was part way through the input.
    assert kills == KILLS, progress_at_kills
    assert all(0 < n < N_INPUT for n in progress_at_kills[1:]), progress_at_kills
