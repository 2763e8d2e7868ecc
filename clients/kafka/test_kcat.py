"""kcat (Debian's 1.7.1 on librdkafka 2.0.2, or whatever `kcat` is installed) against the broker."""
import re
import time

import pytest

from kafkautil import assert_single_broker_at, create_topic, kcat

N = 10_000


def consume_all(broker, topic, fmt):
    # -e: exit at the end of every partition; fields split by \x1f, records by \x1e.
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt)
    return [r for r in out.split(b"\x1e") if r]


def test_kcat_10000_keyed_messages_round_trip(broker, unique_name):
    topic = unique_name("kcat")
    create_topic(broker, topic, 4)
    lines = b"".join(b"key-%d\x1fvalue-%d\n" % (i, i) for i in range(N))
    t0 = int(time.time() * 1000)
    kcat(broker, "-P", "-t", topic, "-K", "\x1f", "-H", "origin=kcat", "-H", "n=1", input_bytes=lines)
    t1 = int(time.time() * 1000)

    records = consume_all(broker, topic, "%p\x1f%o\x1f%k\x1f%s\x1f%h\x1f%T\x1e")
    assert len(records) == N, f"expected {N} records, got {len(records)}"
    per_partition = {}
    seen = set()
    for r in records:
        p, o, k, v, h, ts = r.split(b"\x1f")
        i = int(k.split(b"-")[1])
        assert v == b"value-%d" % i
        assert h == b"origin=kcat,n=1", h
        assert t0 - 1000 <= int(ts) <= t1 + 1000, (ts, t0, t1)
        per_partition.setdefault(int(p), []).append((int(o), i, int(ts)))
        seen.add(i)
    assert seen == set(range(N))
    assert len(per_partition) == 4, "keys should spread over all four partitions"
    for p, recs in per_partition.items():
        offsets = [o for o, _, _ in recs]
        assert offsets == list(range(len(recs))), f"partition {p}: offsets not dense from 0"
        idx = [i for _, i, _ in recs]
        assert idx == sorted(idx), f"partition {p}: records out of produce order"
        stamps = [t for _, _, t in recs]
        assert stamps == sorted(stamps), f"partition {p}: timestamps go backwards"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_compressed_batches_round_trip(broker, unique_name, codec):
    topic = unique_name(f"z-{codec}")
    create_topic(broker, topic, 1)
    values = [b"%s-%d-" % (codec.encode(), i) + b"x" * (i % 50) for i in range(500)]
    kcat(broker, "-P", "-t", topic, "-z", codec, "-K", "\x1f",
         input_bytes=b"".join(b"k%d\x1f%s\n" % (i, v) for i, v in enumerate(values)))
    records = consume_all(broker, topic, "%k\x1f%s\x1e")
    assert [r.split(b"\x1f")[1] for r in records] == values
    assert [r.split(b"\x1f")[0] for r in records] == [b"k%d" % i for i in range(len(values))]


def test_kcat_metadata_lists_the_broker_and_topic(broker, unique_name):
    topic = unique_name("meta")
    create_topic(broker, topic, 3)
    out = kcat(broker, "-L", "-t", topic).decode()
    node = assert_single_broker_at(out, broker.kafka_addr, broker.store)
    assert f'topic "{topic}" with 3 partitions' in out, out
    leaders = re.findall(r"partition \d+, leader (-?\d+)", out)
    assert leaders == [str(node)] * 3, out
