"""Fixtures of the cluster tests: a fresh cluster (PostgreSQL schema) per test.

These tests need DATABASE_URL and fail without it; scripts/test runs them once, in a stage
of their own (the per-store client runs skip this directory).
"""
import pytest

from clusterutil import Cluster


@pytest.fixture
def cluster():
    c = Cluster()
    try:
        yield c
    finally:
        c.cleanup()
