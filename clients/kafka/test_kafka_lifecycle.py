"""The broker process: clean shutdown on SIGTERM/SIGINT, data kept across restarts, and one
clear line for bad settings."""
import os
import signal
import subprocess
import tempfile

import pytest

from kafkautil import assert_single_broker_at, create_topic, kcat


def stop_with(b, sig):
    b.proc.send_signal(sig)
    rc = b.proc.wait(timeout=30)
    b.proc = None
    return rc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly_and_data_survives(fresh_broker, unique_name, sig):
    b = fresh_broker
    topic = unique_name("life")
    create_topic(b, topic, 2)
    kcat(b, "-P", "-t", topic, "-K", ":", input_bytes=b"".join(b"k%d:v%d\n" % (i, i) for i in range(100)))
    rc = stop_with(b, sig)
    assert rc == 0, f"exit code {rc}\n{b.log_tail()}"
    log = b.log_tail(200)
    assert "store closed" in log, log
    if b.store == "log":
        assert os.path.exists(os.path.join(b.data_dir, "data", "clean-shutdown")), \
            "a clean shutdown leaves the log store needing no recovery"
    if b.store == "memory":
        return
    b.start()
    out = kcat(b, "-C", "-t", topic, "-e", "-q", "-f", "%k=%s\n")
    assert sorted(out.split()) == sorted(b"k%d=v%d" % (i, i) for i in range(100))


def run_broker(*args, env_extra=None):
    bin_ = os.environ.get("BROKER_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "broker"))
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env.update(env_extra or {})
    return subprocess.run([bin_, "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", *args],
                          capture_output=True, timeout=60, env=env)


def one_line_error(p):
    assert p.returncode != 0
    lines = [line for line in p.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_flag_is_one_line():
    line = one_line_error(run_broker("--store", "disk"))
    assert "disk" in line and "--store" in line


def test_bad_environment_value_is_one_line():
    line = one_line_error(run_broker(env_extra={"BROKER_DEFAULT_PARTITIONS": "many"}))
    assert "many" in line


def test_unusable_data_dir_is_one_line():
    with tempfile.NamedTemporaryFile() as f:
        line = one_line_error(run_broker("--store", "log", "--data-dir", f.name))
        assert f.name in line


def test_unreachable_database_is_retried_then_named():
    # The broker waits for PostgreSQL (WARN per retry), then gives up with one error line
    # naming where it looked.
    p = run_broker("--store", "postgres", "--database-url",
                   "postgres://postgres@127.0.0.1:1/postgres", "--pg-connect-timeout-secs", "2")
    assert p.returncode != 0
    lines = [line for line in p.stderr.decode().splitlines() if line.strip()]
    assert any("WARN" in line and "retrying" in line for line in lines[:-1]), lines
    last = lines[-1]
    assert "127.0.0.1" in last and "port 1" in last and "gave up" in last, last


def test_bad_config_file_is_one_line():
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write("kafka_adr = 1\n")
        f.flush()
        line = one_line_error(run_broker("--config", f.name))
        assert f.name in line


def test_help_explains_every_flag():
    p = run_broker("--help")
    assert p.returncode == 0
    out = p.stdout.decode()
    for flag in ["--store", "--data-dir", "--database-url", "--pg-schema", "--kafka-addr",
                 "--advertised-addr", "--http-addr", "--default-partitions", "--auto-create-topics",
                 "--default-durability", "--max-frame-bytes", "--config"]:
        assert flag in out, flag


def test_advertised_address_is_what_clients_are_told(store_kind):
    from brokerproc import Broker

    probe = Broker(store_kind)
    b = Broker(store_kind, extra_args=["--advertised-addr", f"localhost:{probe.kafka_port}"])
    b.kafka_port, b.kafka_addr = probe.kafka_port, probe.kafka_addr
    b.start()
    try:
        out = kcat(b, "-L").decode()
        assert_single_broker_at(out, f"localhost:{probe.kafka_port}", store_kind)
    finally:
        b.cleanup()
        probe.cleanup()
