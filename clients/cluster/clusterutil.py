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

import kwire
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
        self.probe_topics = []  # topics the diagnostics ask each broker about

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
        """Starts `n` brokers with node ids first_id, first_id+1, ... and waits until every
        one of them lists all of them in Metadata (a broker learns of the ones started after
        it at its next heartbeat)."""
        brokers = [self.add(node_id=first_id + i) for i in range(n)]
        self.wait_converged(brokers)
        return brokers

    def wait_converged(self, brokers, timeout=15):
        """Waits until every broker in `brokers` lists exactly `brokers` in Metadata."""
        expected = {b.node_id: ("127.0.0.1", b.kafka_port) for b in brokers}
        for b in brokers:
            wait_for(f"broker {b.node_id} to list brokers {sorted(expected)}",
                     lambda: kwire.metadata(b.kafka_addr)["brokers"] == expected,
                     timeout=timeout, on_fail=self.logs)

    def cleanup(self):
        keep = os.environ.get("CLUSTER_KEEP_LOGS")  # a directory to copy the brokers' logs to
        for b in self.brokers:
            try:
                b.stop("kill")
            except Exception as e:
                print(f"kill of broker {b.node_id}: {e}")
            if keep:
                os.makedirs(keep, exist_ok=True)
                for suffix in ("", ".gdb"):
                    if os.path.exists(b.log_path + suffix):
                        shutil.copy(b.log_path + suffix, os.path.join(
                            keep, f"{self.schema}-broker{b.node_id}-{b.kafka_port}.log{suffix}"))
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

    def pg_activity(self):
        """PostgreSQL sessions that are not idle (what the brokers wait on), for failure
        messages."""
        psql = shutil.which("psql")
        if not psql:
            return "(no psql for pg_stat_activity)"
        q = ("select pid, state, wait_event_type, wait_event, now() - xact_start as xact_age, "
             "left(query, 160) from pg_stat_activity where state <> 'idle' and pid <> pg_backend_pid()")
        p = subprocess.run([psql, self.url, "-X", "-c", q], capture_output=True, timeout=30)
        return (p.stdout + p.stderr).decode(errors="replace")

    def diagnostics(self):
        """Logs, a Metadata probe of every running broker (does it answer within 3 s?) and
        PostgreSQL's busy sessions."""
        probes = []
        for b in self.brokers:
            if b.proc is None:
                continue
            for topics in [None] + [[t] for t in self.probe_topics]:
                t = time.time()
                try:
                    kwire.metadata(b.kafka_addr, topics, timeout=3)
                    probes.append(f"broker {b.node_id}: Metadata {topics or 'all'} answered in "
                                  f"{time.time() - t:.2f}s")
                except Exception as e:
                    probes.append(f"broker {b.node_id}: Metadata {topics or 'all'} probe failed: "
                                  f"{type(e).__name__}: {e}")
        return (self.logs() + "\n--- probes:\n" + "\n".join(probes)
                + "\n--- pg_stat_activity (not idle):\n" + self.pg_activity()
                + "\n--- sockets of the brokers' Kafka ports (ss -tnpoi):\n" + self.sockets()
                + self.backtraces())

    def backtraces(self):
        """With CLUSTER_GDB=1: every thread's stack of every running broker (gdb), to see a
        blocked thread; written to a file next to each broker's log."""
        gdb = shutil.which("gdb")
        if not os.environ.get("CLUSTER_GDB") or not gdb:
            return ""
        out = []
        for b in self.brokers:
            if b.proc is None:
                continue
            p = subprocess.run([gdb, "-p", str(b.pid), "-batch", "-ex", "thread apply all bt"],
                               capture_output=True, timeout=120)
            path = b.log_path + ".gdb"
            with open(path, "wb") as f:
                f.write(p.stdout + p.stderr)
            out.append(f"broker {b.node_id}: thread stacks in {path}")
        return "\n--- gdb:\n" + "\n".join(out)

    def sockets(self):
        """`ss -tn` lines of connections to the brokers' Kafka ports (Recv-Q/Send-Q show who
        sits on unread bytes)."""
        ss = shutil.which("ss")
        if not ss:
            return "(no ss)"
        ports = {f":{b.kafka_port}" for b in self.brokers}
        p = subprocess.run([ss, "-tnpoiH"], capture_output=True, timeout=30)
        lines = p.stdout.decode(errors="replace").splitlines()
        # -i puts each socket's details on a line of its own, after the socket's line
        out, keep = [], False
        for ln in lines:
            if not ln.startswith(("\t", " ")):
                keep = any(pt + " " in ln + " " for pt in ports)
            if keep:
                out.append(ln)
        return "\n".join(out)


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
