"""Shared pytest fixtures: a real `broker` process per test session.

Environment:
  BROKER_BIN    path of the broker binary (default: target/debug/broker)
  BROKER_STORE  log | postgres | memory (default: log)
  DATABASE_URL  required when BROKER_STORE=postgres
"""
import os
import uuid

import pytest

from brokerproc import Broker


@pytest.fixture(scope="session")
def store_kind():
    return os.environ.get("BROKER_STORE", "log")


@pytest.fixture(scope="session")
def broker(store_kind):
    b = Broker(store_kind).start()
    yield b
    b.cleanup()


@pytest.fixture
def fresh_broker(store_kind):
    """A broker of its own for tests that restart or break it."""
    b = Broker(store_kind).start()
    yield b
    b.cleanup()


@pytest.fixture
def unique_name():
    def make(prefix="t"):
        return f"{prefix}-{uuid.uuid4().hex[:10]}"
    return make


def pytest_report_header(config):
    """The client versions this run tests (this interpreter's venv, and the KafkaJS installs)."""
    import json
    import sys

    from brokerproc import ROOT

    found = []
    for mod, name in [("confluent_kafka", "confluent-kafka"), ("kafka", "kafka-python"), ("aiokafka", "aiokafka")]:
        try:
            m = __import__(mod)
        except ImportError:
            found.append(f"{name} MISSING")
            continue
        found.append(f"{name} {m.__version__}")
        if mod == "confluent_kafka":
            found[-1] += f" (librdkafka {m.libversion()[0]})"
    for label, sub in [("kafkajs", "node_modules"), ("kafkajs newest", os.path.join("latest", "node_modules"))]:
        try:
            with open(os.path.join(ROOT, "clients", "js", sub, "kafkajs", "package.json")) as f:
                found.append(f"{label} {json.load(f)['version']}")
        except OSError:
            pass
    return f"clients ({sys.prefix}): " + ", ".join(found)
