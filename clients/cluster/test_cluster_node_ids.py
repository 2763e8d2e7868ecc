"""Node ids of a cluster's brokers: unique among the live brokers, allocated from 1000 when not
given, and free again at once after a clean shutdown."""
import subprocess
import time

import kwire
from clusterutil import wait_for


def test_node_ids(cluster):
    # A lapse long enough that taking a stopped broker's id back at once shows it left (it did
    # not lapse).
    cluster.lapse_ms = 3000
    a = cluster.add(node_id=7)

    # A second broker asking for a live broker's id exits non-zero, saying why. (It first
    # waits one lapse + 1 s for the holder to lapse, in case the holder is its own crashed
    # predecessor; a live holder renews its registration meanwhile.)
    dup = cluster.new_broker(node_id=7)
    t0 = time.time()
    p = subprocess.run(dup.args(), capture_output=True, timeout=30)
    took = time.time() - t0
    out = (p.stdout + p.stderr).decode(errors="replace")
    said = [ln for ln in out.splitlines() if "held by a live broker" in ln] or [out.strip()[-300:]]
    print(f"duplicate --node-id 7: exit {p.returncode} after {took:.2f}s: {said[-1]}")
    assert p.returncode != 0, out
    assert "node id 7 is held by a live broker" in out
    budget = cluster.lapse_ms / 1000 + 1 + 3
    assert took < budget, f"the duplicate took {took:.1f}s to exit (budget {budget:.0f}s)"

    # Without --node-id the store allocates one from 1000 up; Metadata shows it.
    b = cluster.add()
    md, _ = wait_for("2 brokers in Metadata from the first broker",
                     lambda: (m := kwire.metadata(a.kafka_addr)) and len(m["brokers"]) == 2 and m)
    allocated = [n for n in md["brokers"] if n != 7]
    assert len(allocated) == 1 and allocated[0] >= 1000, md["brokers"]
    assert md["brokers"][allocated[0]] == ("127.0.0.1", b.kafka_port), md["brokers"]
    assert kwire.metadata(b.kafka_addr)["brokers"].keys() == {7, allocated[0]}
    print(f"allocated node id: {allocated[0]}")

    # A clean stop (SIGTERM) leaves the cluster: its id is free at once, well within the lapse.
    t0 = time.time()
    a.stop()
    again = cluster.add(node_id=7)
    took = time.time() - t0
    print(f"node id 7 taken again {took:.2f}s after its broker's SIGTERM (lapse {cluster.lapse_ms} ms)")
    assert took < cluster.lapse_ms / 1000, "too slow to show the id was freed before the lapse"
    assert "waiting up to" not in again.log_tail(200), again.log_tail(20)
    md = kwire.metadata(again.kafka_addr)
    assert md["brokers"].keys() == {7, allocated[0]}, md["brokers"]
    assert md["brokers"][7] == ("127.0.0.1", again.kafka_port)
