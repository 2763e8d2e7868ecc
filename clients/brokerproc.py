"""A real `broker` process for tests: start, stop, restart with the same data."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on {port} within {timeout}s")


class Broker:
    """A running broker process; restart() keeps its data."""

    def __init__(self, store, extra_args=(), schema=None, node_id=None):
        """`schema` (postgres): the schema to use, shared by the brokers of one cluster (default:
        a fresh one). `node_id`: passed as --node-id (default: none, the store's choice)."""
        self.store = store
        self.bin = os.environ.get("BROKER_BIN", os.path.join(ROOT, "target", "debug", "broker"))
        if not os.path.exists(self.bin):
            raise RuntimeError(f"broker binary not found at {self.bin}: run `cargo build -p broker-server`")
        self.data_dir = tempfile.mkdtemp(prefix="broker-test-")
        self.kafka_port = free_port()
        self.http_port = free_port()
        self.kafka_addr = f"127.0.0.1:{self.kafka_port}"
        self.http_addr = f"127.0.0.1:{self.http_port}"
        self.http_url = f"http://{self.http_addr}"
        self.schema = schema or "t_" + uuid.uuid4().hex[:12]
        self.node_id = node_id
        self.extra_args = list(extra_args)
        self.paused = False
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "broker.log")

    def args(self):
        a = [self.bin, "--store", self.store, "--kafka-addr", self.kafka_addr,
             "--http-addr", self.http_addr, "--auto-create-topics", "true",
             "--default-partitions", "1"]
        if self.store == "log":
            a += ["--data-dir", os.path.join(self.data_dir, "data")]
        if self.store == "postgres":
            url = os.environ.get("DATABASE_URL")
            if not url:
                raise RuntimeError("BROKER_STORE=postgres needs DATABASE_URL (scripts/test sets it)")
            a += ["--database-url", url, "--pg-schema", self.schema]
        if self.node_id is not None:
            a += ["--node-id", str(self.node_id)]
        return a + self.extra_args

    def start(self):
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_port(self.kafka_port, self.proc)
        wait_port(self.http_port, self.proc)
        return self

    @property
    def pid(self):
        """The running process's pid (None when stopped)."""
        return self.proc.pid if self.proc is not None else None

    def pause(self):
        """SIGSTOP: the process stays alive but does nothing until resume()."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        """SIGCONT after pause()."""
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self, sig="term"):
        if self.proc is None:
            return
        if self.paused:  # a stopped process would not act on SIGTERM
            self.resume()
        if sig == "kill":
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        """`with Broker(store) as b:` starts it, and cleans it up at the end."""
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
