"""Byte-rate quotas with real clients (confluent-kafka): a producer or consumer over its
quota gets Kafka's throttle time in the responses (librdkafka reports it to throttle_cb)
and the broker counts it in /metrics; a principal whose quota is lifted is never
throttled."""
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from secutil import SecureBroker, add_user, metric

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
RATE = 20000  # bytes per second


@pytest.fixture(scope="module")
def quota_broker(store_kind):
    if store_kind not in ("log", "postgres"):
        pytest.skip("broker users needs a persistent store")
    b = SecureBroker(store_kind, [("SASL", "SASL_PLAINTEXT")],
                     ["--producer-byte-rate", str(RATE), "--consumer-byte-rate", str(RATE),
                      "--client-quota", "User:bob=producer_byte_rate=0",
                      "--client-quota", "User:bob=consumer_byte_rate=0",
                      "--allow-everyone-if-no-acl"])
    for u, p in USERS.items():
        add_user(b, u, p)
    b.start()
    yield b
    b.cleanup()


def conf(b, user, throttles):
    return {"bootstrap.servers": b.bootstrap("SASL"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user,
            "sasl.password": USERS[user],
            "throttle_cb": lambda ev: throttles.append(ev.throttle_time)}


def produce(b, user, topic, n, size=1000):
    throttles = []
    p = Producer({**conf(b, user, throttles), "linger.ms": 5, "message.timeout.ms": 60000})
    errors = []
    for i in range(n):
        p.produce(topic, value=b"x" * size, on_delivery=lambda e, m: e and errors.append(e))
        p.poll(0)
    assert p.flush(60) == 0
    p.poll(0.5)
    assert errors == []
    return throttles


def test_a_producer_over_its_quota_is_throttled_and_a_lifted_one_is_not(quota_broker):
    b = quota_broker
    topic = f"quota-{uuid.uuid4().hex[:8]}"
    before = metric(b, 'broker_quota_throttled_total{quota="producer_byte_rate"}')
    # 300 kB at 20 kB/s are due over 15 s; the window counts 10 s: about 5 s of throttle.
    alice = produce(b, "alice", topic, 300)
    assert alice and max(alice) > 0, alice
    assert max(alice) <= 11000, alice
    assert metric(b, 'broker_quota_throttled_total{quota="producer_byte_rate"}') > before
    # bob's quota is lifted (0): the same load is never throttled.
    bob = produce(b, "bob", topic, 300)
    assert bob == [] or max(bob) == 0, bob


def test_a_consumer_over_its_quota_is_throttled(quota_broker):
    b = quota_broker
    topic = f"quota-c-{uuid.uuid4().hex[:8]}"
    produce(b, "bob", topic, 400)
    got = {}
    for user in ("bob", "alice"):
        throttles = []
        c = Consumer({**conf(b, user, throttles), "group.id": f"g-{uuid.uuid4().hex[:6]}",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, 0, 0)])
        n = 0
        import time
        deadline = time.time() + 60
        while n < 400 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                n += 1
        c.poll(0.5)
        c.close()
        assert n == 400, f"{user} read {n} of 400"
        got[user] = throttles
    # 400 kB in a fetch or two: alice (20 kB/s) is throttled, bob (lifted) is not.
    assert got["alice"] and max(got["alice"]) > 0, got
    assert got["bob"] == [] or max(got["bob"]) == 0, got
    assert metric(b, 'broker_quota_throttled_total{quota="consumer_byte_rate"}') > 0
