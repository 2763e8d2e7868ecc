"""Shared parts of the fault-injection suite: the broker process, raw Kafka requests,
process statistics, numbered messages and reading a topic back."""
import os
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ChaosError(Exception):
    """A scenario cannot run (missing tool or setting); reported as FAIL."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- raw Kafka requests

def kafka_frame(api_key, version, corr, body=b"", client_id=b"chaos"):
    """A size-prefixed request with a v1 (non-flexible) header."""
    head = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = head + body
    return struct.pack(">i", len(payload)) + payload


def metadata_request(corr):
    # Metadata v1 with an empty topic list: brokers and controller only.
    return kafka_frame(3, 1, corr, struct.pack(">i", 0))


def api_versions_request(corr):
    return kafka_frame(18, 0, corr)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def read_response(sock):
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    if size < 4 or size > 64 * 1024 * 1024:
        raise ConnectionError(f"bad response size {size}")
    data = recv_exact(sock, size)
    return struct.unpack(">i", data[:4])[0], data[4:]


def metadata_roundtrip(port, timeout=2.0):
    """One Metadata request on a fresh connection; returns its latency in seconds."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        corr = random.randint(1, 1 << 30)
        s.sendall(metadata_request(corr))
        got, _ = read_response(s)
        if got != corr:
            raise ConnectionError(f"correlation id {got} != {corr}")
    return time.monotonic() - t0


# ---------------------------------------------------------------- process statistics

def cpu_seconds(pid):
    """User + system CPU time the process has used."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0.0


def proc_status(pid):
    """VmRSS and VmHWM in KiB, and the number of open file descriptors."""
    out = {"rss_kb": 0, "hwm_kb": 0, "fds": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_kb"] = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    out["hwm_kb"] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


# ---------------------------------------------------------------- the broker process

class Broker:
    """A `broker` process on fixed ports; kill9()/start() keep its data."""

    def __init__(self, ctx, store, durability=None, partitions=1, data_dir=None, extra=(),
                 nofile=None):
        self.ctx = ctx
        self.store = store
        self.durability = durability
        self.partitions = partitions
        self.own_dir = data_dir is None
        self.work = tempfile.mkdtemp(prefix="chaos-")
        self.data_dir = data_dir or os.path.join(self.work, "data")
        self.kafka_port = free_port()
        self.http_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.schema = "chaos_" + os.urandom(5).hex()
        self.extra = list(extra)
        self.nofile = nofile
        self.proc = None
        self.log_path = os.path.join(self.work, "broker.log")
        self.starts = 0

    def args(self):
        a = [self.ctx.broker_bin, "--store", self.store,
             "--kafka-addr", self.bootstrap, "--http-addr", f"127.0.0.1:{self.http_port}",
             "--auto-create-topics", "true", "--default-partitions", str(self.partitions)]
        if self.durability:
            a += ["--default-durability", self.durability]
        if self.store == "log":
            a += ["--data-dir", self.data_dir]
        if self.store == "postgres":
            if not self.ctx.database_url:
                raise ChaosError("the postgres store needs DATABASE_URL")
            a += ["--database-url", self.ctx.database_url, "--pg-schema", self.schema]
        return a + self.extra

    def start(self, timeout=60.0):
        """Spawns the broker; returns seconds until a Metadata request was answered."""
        logf = open(self.log_path, "ab")
        logf.write(f"==== start {self.starts} ====\n".encode())
        logf.flush()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        t0 = time.monotonic()
        limit = None
        if self.nofile:
            n = self.nofile

            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        self.proc = subprocess.Popen(self.args(), stdout=logf, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=limit)
        logf.close()
        self.starts += 1
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ChaosError(f"broker exited at start with code {self.proc.returncode}: "
                                 f"{self.log_tail(8)}")
            try:
                metadata_roundtrip(self.kafka_port, timeout=1.0)
                return time.monotonic() - t0
            except (OSError, ConnectionError):
                time.sleep(0.01)
        raise ChaosError(f"broker did not answer Metadata within {timeout}s")

    def wait_http(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise ChaosError("HTTP port never accepted")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pid(self):
        return self.proc.pid if self.proc else None

    def stats(self):
        return proc_status(self.proc.pid) if self.alive() else {"rss_kb": 0, "hwm_kb": 0, "fds": 0}

    def kill9(self):
        if self.proc is None:
            return
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=20):
        return " | ".join(self.log_text().splitlines()[-n:])

    def panicked(self):
        """Lines of the broker log that report a panic."""
        return [l for l in self.log_text().splitlines() if "panicked" in l]

    def cleanup(self):
        self.stop()
        if self.ctx.keep:
            log(f"kept broker files in {self.work}")
            return
        shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------- numbered messages

def make_value(run, seq, pad=60):
    body = f"{run}:{seq}:".encode() + bytes([97 + seq % 26]) * pad
    return body + b":" + f"{zlib.crc32(body):08x}".encode()


def parse_value(value):
    """(run, seq) of a value made by make_value, or None when it is corrupt."""
    if value is None:
        return None
    try:
        body, crc = value.rsplit(b":", 1)
        if f"{zlib.crc32(body):08x}".encode() != crc:
            return None
        run, seq, _ = body.split(b":", 2)
        return run.decode(), int(seq)
    except ValueError:
        return None


class AckingProducer:
    """An idempotent acks=all librdkafka producer of numbered messages, on its own thread.

    Only messages with a successful delivery report count as acknowledged. A fatal
    producer error (e.g. a lost sequence) is recorded and a new producer is made."""

    def __init__(self, bootstrap, topic, run, rate_per_s=2000, extra_conf=None):
        import confluent_kafka as ck
        self.ck = ck
        self.conf = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 30000,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 500,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 300,
            "socket.connection.setup.timeout.ms": 3000,
            "topic.metadata.refresh.interval.ms": 1000,
            "log_level": 2,
            "log.connection.close": False,
        }
        self.conf.update(extra_conf or {})
        self.topic = topic
        self.run = run
        self.rate = rate_per_s
        self.acked = {}        # seq -> (partition, offset, monotonic ack time)
        self.failed = {}       # seq -> error string
        self.errors = []       # (time, error string, fatal, retriable)
        self.fatal = 0
        self.sent = 0
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.producer = self._new()

    def _new(self):
        conf = dict(self.conf)
        conf["error_cb"] = self._on_error
        return self.ck.Producer(conf)

    def _on_error(self, err):
        with self.lock:
            self.errors.append((time.monotonic(), str(err), err.fatal(), err.retriable()))
            if err.fatal():
                self.fatal += 1

    def _report(self, seq):
        def cb(err, msg):
            with self.lock:
                if err is None:
                    self.acked[seq] = (msg.partition(), msg.offset(), time.monotonic())
                else:
                    self.failed[seq] = err.name() if hasattr(err, "name") else str(err)
        return cb

    def start(self):
        self.thread.start()
        return self

    def _loop(self):
        while not self.stop_ev.is_set():
            try:
                self._step()
            except self.ck.KafkaException as e:
                # librdkafka raises fatal errors (e.g. a broker that lost the producer's
                # sequence) from poll(): record, and go on with a new producer
                with self.lock:
                    self.errors.append((time.monotonic(), str(e), True, False))
                self._replace()

    def _step(self):
        """Produces up to 10 ms worth of messages and serves delivery reports."""
        t0 = time.monotonic()
        for _ in range(max(1, self.rate // 100)):
            seq = self.sent
            try:
                self.producer.produce(self.topic, value=make_value(self.run, seq),
                                      key=str(seq).encode(), on_delivery=self._report(seq))
                self.sent += 1
            except BufferError:
                break
        self.producer.poll(0)
        with self.lock:
            fatal = self.fatal
        if fatal:
            self._replace()
        rest = 0.01 - (time.monotonic() - t0)
        self.producer.poll(max(0.0, rest))

    def _replace(self):
        try:
            self.producer.flush(5)
        except Exception:
            pass
        with self.lock:
            self.fatal = 0
        self.producer = self._new()

    def stop(self, flush_timeout=45.0):
        self.stop_ev.set()
        self.thread.join()
        try:
            left = self.producer.flush(flush_timeout)
        except self.ck.KafkaException as e:
            with self.lock:
                self.errors.append((time.monotonic(), str(e), True, False))
            left = len(self.producer)
        self.producer = None  # closes its connections
        return left

    def snapshot(self):
        with self.lock:
            return dict(self.acked), dict(self.failed), list(self.errors)


def read_topic(bootstrap, topic, timeout=60.0):
    """Every record of every partition from the log start to the high watermark:
    {partition: [(offset, value)]}."""
    import confluent_kafka as ck
    from confluent_kafka import TopicPartition
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-reader-" + os.urandom(4).hex(),
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "enable.partition.eof": True, "fetch.wait.max.ms": 100,
                     "log_level": 2})
    try:
        md = c.list_topics(topic, timeout=10)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            raise ChaosError(f"topic {topic} not readable: {tmd.error if tmd else 'missing'}")
        parts = sorted(tmd.partitions)
        out = {}
        ends = {}
        tps = []
        for p in parts:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = (lo, hi)
            out[p] = []
            if hi > lo:
                tps.append(TopicPartition(topic, p, lo))
        if tps:
            c.assign(tps)
        pending = {tp.partition for tp in tps}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == ck.KafkaError._PARTITION_EOF:
                    if m.offset() >= ends[m.partition()][1]:
                        pending.discard(m.partition())
                    continue
                raise ChaosError(f"read error: {m.error()}")
            out[m.partition()].append((m.offset(), m.value()))
            if m.offset() + 1 >= ends[m.partition()][1]:
                pending.discard(m.partition())
        if pending:
            raise ChaosError(f"could not read partitions {sorted(pending)} to the end within {timeout}s")
        return out, ends
    finally:
        c.close()


def check_log(records, ends, run, acked, exact_offsets=True):
    """Checks a read-back topic against the acknowledged messages.

    Returns a dict of counts: missing (acked, absent), dup_acked (acked, present more than
    once), moved (acked, at another offset), corrupt, foreign, gaps (offset holes)."""
    seen = {}
    corrupt = foreign = gaps = 0
    for p, recs in records.items():
        lo, hi = ends[p]
        expected = lo
        for off, val in recs:
            if off != expected:
                gaps += 1
            expected = off + 1
            parsed = parse_value(val)
            if parsed is None:
                corrupt += 1
                continue
            if parsed[0] != run:
                foreign += 1
                continue
            seen.setdefault(parsed[1], []).append((p, off))
        if expected != hi and recs:
            gaps += 1
    missing = [s for s in acked if s not in seen]
    dup_acked = [s for s in acked if len(seen.get(s, ())) > 1]
    dup_any = [s for s, v in seen.items() if len(v) > 1]
    moved = [s for s in acked if s in seen and exact_offsets
             and (acked[s][0], acked[s][1]) not in seen[s]]
    return {"missing": missing, "dup_acked": dup_acked, "dup_any": dup_any, "moved": moved,
            "corrupt": corrupt, "foreign": foreign, "gaps": gaps,
            "present": len(seen)}


def pct(values, q):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]
