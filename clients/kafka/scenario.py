"""The cross-client scenario: the records every client produces and the checks on what a
consumer group of it received. Each test_scenario_<client>.py drives its own client through
the same steps and hands what it saw to these checks, so every client is held to the same
Kafka behaviour.

A seen record is a `Seen(member, partition, offset, key, value, headers)` with key and value
as bytes and headers as a list of (str, bytes) pairs in wire order.
"""
import time
from collections import namedtuple

PARTITIONS = 3
FIRST = 60        # produced before the group starts; consumed from earliest
SECOND = 30       # produced once both members hold partitions: both must get some
AFTER_RESTART = 15  # produced after the members closed; a new member sees only these
KEYS = 30         # distinct keys, so the default partitioner of every client uses all 3

Seen = namedtuple("Seen", "member partition offset key value headers")


def key(i):
    return b"key-%02d" % (i % KEYS)


def value(i):
    return b"v%05d" % i


def headers(i):
    """Two headers with the same key: Kafka keeps both, in order, after the first."""
    return [("seq", b"%d" % i), ("dup", b"first-%d" % i), ("dup", b"second-%d" % i)]


def index(v):
    """The i of value(i)."""
    return int(v[1:])


def wait_until(cond, what, timeout=20.0, step=None, state=None):
    """Calls step() (e.g. one poll round) until cond() holds; fails with `what` and state()."""
    deadline = time.time() + timeout
    while True:
        if step is not None:
            step()
        if cond():
            return
        if time.time() > deadline:
            extra = f": {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        if step is None:
            time.sleep(0.1)


def check_exactly_once(seen, start, count):
    """Every value(start..start+count) was seen exactly once across the members."""
    got = sorted(index(s.value) for s in seen)
    want = list(range(start, start + count))
    dups = sorted({i for i in got if got.count(i) > 1})
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not dups and not missing and not extra, \
        f"exactly once broken: duplicates {dups}, missing {missing}, unexpected {extra}"


def check_order_and_keys(seen, produced_partition):
    """Per partition, offsets and produce order agree and nothing is skipped; a key lives in one
    partition, the one the producer's delivery report named."""
    by_partition = {}
    for s in seen:
        by_partition.setdefault(s.partition, []).append(s)
    for p, recs in by_partition.items():
        # Each member saw its share of the partition in offset order...
        for m in {r.member for r in recs}:
            offs = [r.offset for r in recs if r.member == m]
            assert offs == sorted(offs) and len(set(offs)) == len(offs), \
                f"member {m} saw partition {p} out of order: {offs}"
        # ...and offset order is produce order.
        ordered = sorted(recs, key=lambda r: r.offset)
        idx = [index(r.value) for r in ordered]
        assert idx == sorted(idx), f"partition {p}: offset order is not produce order: {idx}"
    for s in seen:
        i = index(s.value)
        assert s.key == key(i), f"record {i}: key {s.key!r}, want {key(i)!r}"
        assert produced_partition[i] == s.partition, \
            f"record {i} consumed from partition {s.partition}, produced to {produced_partition[i]}"


def check_headers(seen):
    bad = [(index(s.value), s.headers) for s in seen if s.headers != headers(index(s.value))]
    assert not bad, (f"{len(bad)} of {len(seen)} records lost their headers; first: "
                     f"record {bad[0][0]} has {bad[0][1]!r}, want {headers(bad[0][0])!r}")


def check_partitions_used(produced_partition):
    used = set(produced_partition.values())
    assert used == set(range(PARTITIONS)), \
        f"the {KEYS} keys should spread over all {PARTITIONS} partitions, got {sorted(used)}"
