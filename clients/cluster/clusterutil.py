"""Several real `broker` processes over one PostgreSQL schema: a cluster, for the tests here.

Every test gets a fresh schema (so a fresh cluster); the brokers are killed and the schema
dropped at the end, whatever happened.
"""
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid

from brokerproc import Broker

HEARTBEAT_MS = 300
LAPSE_MS = 2000


def database_url():
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise AssertionError("the cluster tests need DATABASE_URL (a PostgreSQL the brokers share; "
                             "scripts/test exports one)")
    return url


class Cluster:
    """Brokers over one schema, started with short heartbeats and lapse."""

    def __init__(self, heartbeat_ms=HEARTBEAT_MS, lapse_ms=LAPSE_MS):
        self.url = database_url()
        self.schema = "cl_" + uuid.uuid4().hex[:12]
        self.heartbeat_ms = heartbeat_ms
        self.lapse_ms = lapse_ms
        self.brokers = []

    def cluster_args(self):
        return ["--cluster-heartbeat-ms", str(self.heartbeat_ms),
                "--cluster-lapse-ms", str(self.lapse_ms)]

    def new_broker(self, node_id=None, extra_args=()):
        """A broker of this cluster, not started yet (cleaned up with the cluster)."""
        b = Broker("postgres", self.cluster_args() + list(extra_args), schema=self.schema,
                   node_id=node_id)
        self.brokers.append(b)
        return b

    def add(self, node_id=None, extra_args=()):
        """Starts one more broker."""
        return self.new_broker(node_id, extra_args).start()

    def start(self, n, first_id=1):
        """Starts `n` brokers with node ids first_id, first_id+1, ..."""
        return [self.add(node_id=first_id + i) for i in range(n)]

    def cleanup(self):
        for b in self.brokers:
            try:
                b.cleanup()
            except Exception as e:  # keep cleaning the others
                print(f"cleanup of broker {b.node_id}: {e}")
        psql = shutil.which("psql")
        if psql:
            subprocess.run([psql, self.url, "-q", "-c", f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'],
                           capture_output=True, timeout=30)

    def logs(self, n=40):
        """The tails of every broker's log, for failure messages."""
        return "\n".join(f"--- broker {b.node_id} ({b.kafka_addr}) log:\n{b.log_tail(n)}"
                         for b in self.brokers)


def bootstrap(*brokers):
    return ",".join(b.kafka_addr for b in brokers)


def wait_for(what, check, timeout=30.0, every=0.1, on_fail=None):
    """Polls `check()` until it returns something truthy; returns (value, seconds taken)."""
    start = time.time()
    deadline = start + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
        except Exception as e:  # a broker mid-restart, say: keep polling
            last = f"{type(e).__name__}: {e}"
            time.sleep(every)
            continue
        if last:
            return last, time.time() - start
        time.sleep(every)
    extra = f"\n{on_fail()}" if on_fail else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}{extra}")


def metrics(broker):
    """The broker's /metrics counters as {name: value} (unlabelled lines only)."""
    with urllib.request.urlopen(broker.http_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*) ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out
