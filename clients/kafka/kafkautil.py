"""Helpers shared by the Kafka client tests (real clients only; no mocks)."""
import shutil
import subprocess

from confluent_kafka.admin import AdminClient, NewTopic


def require_kcat():
    path = shutil.which("kcat")
    if not path:
        raise RuntimeError("kcat is not installed: scripts/setup-clients installs the Debian package")
    return path


def create_topic(broker, name, partitions, config=None):
    admin = AdminClient({"bootstrap.servers": broker.kafka_addr})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            config=config or {})])
    futures[name].result(timeout=30)


def kcat(broker, *args, input_bytes=None, timeout=120):
    """Runs kcat against the broker and returns stdout bytes; fails with stderr on error."""
    cmd = [require_kcat(), "-b", broker.kafka_addr, *args]
    p = subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}: {p.stderr.decode(errors='replace')}\n"
                             f"broker log:\n{broker.log_tail()}")
    return p.stdout


def assert_single_broker_at(kcat_list_output, addr, store):
    """Checks that `kcat -L` lists exactly one broker, at `addr`, and returns its node id.
    A log-store broker is node 0; a PostgreSQL one with no --node-id is given an id by the
    store, from 1000 up (as Kafka's generated broker ids start above the reserved range)."""
    import re

    brokers = re.findall(r"broker (-?\d+) at (\S+)", kcat_list_output)
    assert len(brokers) == 1, kcat_list_output
    node, at = int(brokers[0][0]), brokers[0][1]
    assert at == addr, kcat_list_output
    if store == "postgres":
        assert node >= 1000, kcat_list_output
    else:
        assert node == 0, kcat_list_output
    return node
