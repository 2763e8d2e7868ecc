"""Log compaction (cleanup.policy=compact) through the Kafka protocol with confluent-kafka:
many updates of a set of keys, with tombstones, end up as one record per live key with its
latest value, deleted keys vanish after delete.retention.ms, the stored bytes shrink, and a
broker killed with SIGKILL while it cleans loses and duplicates nothing.

COMPACTION_RECORDS / COMPACTION_KEYS size the run (scripts/test: the defaults; the long run
in scripts/compaction-long: 1,000,000 over 10,000)."""
import json
import os
import random
import time
import urllib.request

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from brokerproc import Broker

RECORDS = int(os.environ.get("COMPACTION_RECORDS", "100000"))
KEYS = int(os.environ.get("COMPACTION_KEYS", "2000"))
DELETE_RETENTION_MS = 4000
# Unique-key filler after the data, so that the data sits in closed segments (the log
# store never cleans its active segment).
FILLER = 40


def cleaner_broker(store_kind):
    return Broker(store_kind, extra_args=["--cleaner-check-ms", "500"]).start()


def create_compacted(b, topic):
    admin = AdminClient({"bootstrap.servers": b.kafka_addr})
    config = {
        "cleanup.policy": "compact",
        "segment.bytes": str(256 * 1024),
        "delete.retention.ms": str(DELETE_RETENTION_MS),
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
    }
    for f in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        f.result(30)


def produce_history(b, topic, seed=7):
    """Every key updated RECORDS / KEYS times in shuffled rounds; every tenth key ends with
    a tombstone. Returns {key: latest value or None}."""
    rnd = random.Random(seed)
    p = Producer({"bootstrap.servers": b.kafka_addr, "linger.ms": 20,
                  "compression.type": "lz4", "batch.num.messages": 2000})
    latest = {}
    rounds = RECORDS // KEYS
    keys = [f"key-{k:06d}" for k in range(KEYS)]
    n = 0
    for r in range(rounds):
        rnd.shuffle(keys)
        for k in keys:
            last_round = r == rounds - 1
            tomb = last_round and int(k[4:]) % 10 == 0
            value = None if tomb else f"{k}:{r}:{'x' * 40}"
            p.produce(topic, key=k, value=value, partition=0)
            latest[k] = value
            n += 1
            if n % 20000 == 0:
                p.poll(0)
        p.flush(60)
    assert p.flush(60) == 0
    # One record per batch, so that segments roll within the filler.
    f = Producer({"bootstrap.servers": b.kafka_addr, "batch.num.messages": 1, "linger.ms": 0})
    for i in range(FILLER):
        f.produce(topic, key=f"filler-{i}", value="f" * 20000, partition=0)
    assert f.flush(60) == 0
    return latest


def read_all(b, topic):
    """Every record of partition 0 from the start, as (offset, key, value)."""
    c = Consumer({"bootstrap.servers": b.kafka_addr, "group.id": "verify",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.max.bytes": 4 << 20})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            for m in c.consume(5000, timeout=1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        return got
                    raise KafkaException(m.error())
                got.append((m.offset(), m.key().decode(), None if m.value() is None else m.value().decode()))
    finally:
        c.close()
    raise AssertionError(f"reading {topic} did not reach its end within 120 s ({len(got)} records)")


def partition_bytes(b, topic):
    with urllib.request.urlopen(f"{b.http_url}/api/v1/topics/{topic}", timeout=30) as r:
        info = json.load(r)
    sizes = [p["bytes"] for p in info["partitions"]]
    # The memory store keeps no bytes to report.
    return None if None in sizes else sum(sizes)


def compacted_view(records):
    """{key: value} of the data keys, and whether every key appears at most once."""
    seen = {}
    dupes = 0
    for _, k, v in records:
        if k.startswith("filler-"):
            continue
        if k in seen:
            dupes += 1
        seen[k] = v
    return seen, dupes


def wait_compacted(b, topic, latest, timeout_s=240):
    """Waits until the data keys appear once each with their latest value and the deleted
    ones are gone; returns the records read last."""
    live = {k: v for k, v in latest.items() if v is not None}
    deadline = time.time() + timeout_s
    while True:
        records = read_all(b, topic)
        seen, dupes = compacted_view(records)
        if dupes == 0 and seen == live:
            return records
        if time.time() > deadline:
            wrong = [k for k in latest if seen.get(k) != latest[k] and not (latest[k] is None and k not in seen)]
            raise AssertionError(
                f"not compacted within {timeout_s} s: {len(records)} records, {dupes} duplicate "
                f"keys, {len(wrong)} keys not at their latest value (e.g. {wrong[:3]})\n{b.log_tail(20)}")
        time.sleep(1.0)


def check_offsets(records, high_watermark):
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)), "offsets repeat or go backwards"
    assert offsets[-1] == high_watermark - 1, (offsets[-1], high_watermark)


def high_watermark(b, topic):
    c = Consumer({"bootstrap.servers": b.kafka_addr, "group.id": "hw"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[1]
    finally:
        c.close()


def test_compaction_keeps_the_latest_value_of_each_key(store_kind, unique_name):
    topic = unique_name("compacted")
    b = cleaner_broker(store_kind)
    try:
        create_compacted(b, topic)
        latest = produce_history(b, topic)
        hw = high_watermark(b, topic)
        assert hw == RECORDS // KEYS * KEYS + FILLER
        before = partition_bytes(b, topic)
        records = wait_compacted(b, topic, latest)
        check_offsets(records, hw)
        after = partition_bytes(b, topic)
        assert (after is None) == (store_kind == "memory"), (store_kind, after)
        live = sum(1 for v in latest.values() if v is not None)
        # About live records plus the filler plus one segment's worth of overhead.
        bound = live * 200 + FILLER * 20100 + 2 * 256 * 1024
        if after is not None:
            assert after <= bound, f"{after} bytes stored after compaction (bound {bound}, before {before})"
            assert after < before / 2, (before, after)
        # Appends go on at the high watermark after compaction.
        p = Producer({"bootstrap.servers": b.kafka_addr})
        p.produce(topic, key="key-000001", value="after", partition=0)
        assert p.flush(30) == 0
        assert high_watermark(b, topic) == hw + 1
    finally:
        b.cleanup()


def test_compaction_refuses_records_without_a_key(broker, unique_name):
    topic = unique_name("compacted-nokey")
    create_compacted(broker, topic)
    errors = []
    p = Producer({"bootstrap.servers": broker.kafka_addr, "linger.ms": 50})

    def report(err, msg):
        errors.append(err)

    p.produce(topic, key="k", value="keyed", partition=0, on_delivery=report)
    p.flush(30)
    p.produce(topic, value="no key", partition=0, on_delivery=report)
    p.flush(30)
    assert errors[0] is None, errors
    assert errors[1] is not None and errors[1].code() == KafkaError.INVALID_RECORD, errors
    assert high_watermark(broker, topic) == 1


def test_compaction_survives_sigkill_while_cleaning(store_kind, unique_name):
    topic = unique_name("compacted-kill")
    b = cleaner_broker(store_kind)
    try:
        create_compacted(b, topic)
        latest = produce_history(b, topic, seed=11)
        hw = high_watermark(b, topic)
        rnd = random.Random(3)
        for _ in range(4):
            # The cleaner runs every 0.5 s: kill it somewhere inside a pass.
            time.sleep(rnd.uniform(0.2, 1.5))
            b.stop("kill")
            b.start()
            records = read_all(b, topic)
            seen, _ = compacted_view(records)
            check_offsets(records, hw)
            # Nothing lost: every key still has its latest value (or, deleted, at most its
            # tombstone).
            missing = [k for k, v in latest.items() if v is not None and seen.get(k) != v]
            assert not missing, f"{len(missing)} keys lost their latest value after kill -9"
        records = wait_compacted(b, topic, latest)
        check_offsets(records, hw)
    finally:
        b.cleanup()
