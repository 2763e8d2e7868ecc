"""A damaged batch on disk costs only itself: after a clean stop and bytes flipped in the middle
of a segment, a librdkafka consumer reads every record before the damage and then gets a clear
error at it, the other partition is untouched, and `broker verify` names the file."""
import glob
import os
import struct
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from kafkautil import create_topic


def produce(broker, topic, partition, count, chunk):
    p = Producer({"bootstrap.servers": broker.kafka_addr, "linger.ms": 1})
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for start in range(0, count, chunk):
        for i in range(start, min(start + chunk, count)):
            p.produce(topic, partition=partition, value=b"v%06d-" % i + b"x" * 100,
                      on_delivery=on_delivery)
        # One flush per chunk: the segment holds many batches.
        assert p.flush(30) == 0
    assert not errors, errors


def batches(path):
    """(position, length, base offset, record count) of each batch of a segment file."""
    data = open(path, "rb").read()
    out, pos = [], 0
    while pos + 61 <= len(data):
        # A Kafka record batch (big-endian): base offset, length, ..., record count at 57.
        base, length = struct.unpack_from(">qI", data, pos)
        (count,) = struct.unpack_from(">I", data, pos + 57)
        out.append((pos, 12 + length, base, count))
        pos += 12 + length
    return out


def consume(broker, topic, partition, want_error, timeout=30):
    """Offsets read from the start of one partition, and the first error (if any)."""
    c = Consumer({"bootstrap.servers": broker.kafka_addr, "group.id": "damage-reader",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, partition, 0)])
    offsets, error = [], None
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                if not want_error and offsets:
                    break
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                error = m.error()
                break
            offsets.append(m.offset())
            assert m.value().startswith(b"v%06d-" % m.offset())
    finally:
        c.close()
    return offsets, error


def verify(broker):
    return subprocess.run([broker.bin, "verify", "--data-dir", os.path.join(broker.data_dir, "data")],
                          capture_output=True, timeout=120)


def test_damaged_batch_mid_segment_costs_only_itself(fresh_broker, unique_name):
    b = fresh_broker
    if b.store != "log":
        pytest.skip("damage on disk is a log store matter")
    topic = unique_name("damage")
    create_topic(b, topic, 2)
    produce(b, topic, 0, 3000, 50)
    produce(b, topic, 1, 200, 50)
    # A running broker holds the directory: verify refuses to check it.
    p = verify(b)
    assert p.returncode == 2 and b"in use" in p.stderr, p
    b.stop()

    [seg] = glob.glob(os.path.join(b.data_dir, "data", "topics", f"{topic}~*", "0", "*.log"))
    bs = batches(seg)
    assert len(bs) > 20, len(bs)
    pos, length, base, count = bs[len(bs) // 2]
    with open(seg, "r+b") as f:
        f.seek(pos + length - 40)
        data = bytearray(f.read(8))
        f.seek(pos + length - 40)
        f.write(bytes(x ^ 0xFF for x in data))

    # Offline check: non-zero exit, one line naming the file and byte.
    p = verify(b)
    out = p.stdout.decode()
    assert p.returncode == 1, (p.returncode, out, p.stderr)
    assert f"{seg}: byte {pos}: batch CRC mismatch (offsets {base}..={base + count - 1})" in out, out
    assert "1 problems" in out, out

    b.start()
    offsets, error = consume(b, topic, 0, want_error=True)
    assert offsets == list(range(base)), (len(offsets), base)
    assert error is not None, "no error at the damaged batch"
    assert error.code() == KafkaError.INVALID_MSG, error  # CORRUPT_MESSAGE (2)
    # The other partition is whole.
    other, err = consume(b, topic, 1, want_error=False)
    assert err is None and other == list(range(200)), (err, len(other))
    # One WARN naming the file, the byte and the offsets; one count in the metrics.
    log = open(b.log_path, errors="replace").read()
    warn = [line for line in log.splitlines() if "damaged batch" in line]
    assert warn and seg in warn[0] and f"byte={pos}" in warn[0] and f"first_offset={base}" in warn[0], warn
    assert len(warn) == 1, warn
    metrics = urllib.request.urlopen(f"{b.http_url}/metrics", timeout=10).read().decode()
    assert "broker_log_corrupt_batches_total 1" in metrics
    # Producing goes on with the next offset.
    produce(b, topic, 0, 1, 1)
