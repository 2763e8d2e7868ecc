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
