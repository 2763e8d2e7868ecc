"""Scenario 5: hostile clients against one broker while a well-behaved client is served."""
import os
import random
import socket
import struct
import threading
import time

import resource

from harness import (Broker, api_versions_request, cpu_seconds, kafka_frame, log, make_value,
                     metadata_roundtrip, pct)

RSS_BOUND_MB = 512          # peak RSS (VmHWM) allowed during the attacks
LATENCY_BOUND_S = 10.0      # slowest well-behaved request allowed (generous: a 2-core box)


class WellBehaved:
    """Kafka Metadata on a fresh connection, an acks=all produce and an SQS
    send/receive/delete, in a loop; records latencies and failures."""

    def __init__(self, b):
        import boto3
        import confluent_kafka as ck
        from botocore.config import Config
        self.b = b
        self.lat = {"metadata": [], "produce": [], "sqs": []}
        self.failures = []
        self.stop_ev = threading.Event()
        self.producer = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "all",
                                     "enable.idempotence": True, "linger.ms": 0,
                                     "log_level": 2, "log.connection.close": False})
        self.sqs = boto3.client("sqs", endpoint_url=b.http_url, region_name="us-east-1",
                                aws_access_key_id="chaos", aws_secret_access_key="chaos",
                                config=Config(retries={"max_attempts": 1}, connect_timeout=10,
                                              read_timeout=20))
        self.qurl = self.sqs.create_queue(QueueName="chaos-good-q")["QueueUrl"]
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.n = 0

    def _loop(self):
        while not self.stop_ev.is_set():
            self.n += 1
            try:
                self.lat["metadata"].append(metadata_roundtrip(self.b.kafka_port, timeout=LATENCY_BOUND_S))
            except Exception as e:
                self.failures.append(f"metadata: {e}")
            t0 = time.monotonic()
            res = []
            self.producer.produce("chaos-good", value=make_value("good", self.n),
                                  on_delivery=lambda err, msg: res.append(err))
            left = self.producer.flush(LATENCY_BOUND_S)
            if left or not res or res[0] is not None:
                self.failures.append(f"produce: {res[0] if res else 'no delivery report'}")
            else:
                self.lat["produce"].append(time.monotonic() - t0)
            t0 = time.monotonic()
            try:
                body = f"good-{self.n}"
                self.sqs.send_message(QueueUrl=self.qurl, MessageBody=body)
                r = self.sqs.receive_message(QueueUrl=self.qurl, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                for m in r.get("Messages", []):
                    self.sqs.delete_message(QueueUrl=self.qurl, ReceiptHandle=m["ReceiptHandle"])
                self.lat["sqs"].append(time.monotonic() - t0)
            except Exception as e:
                self.failures.append(f"sqs: {type(e).__name__}: {e}")
            self.stop_ev.wait(0.1)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_ev.set()
        self.thread.join(timeout=60)
        self.producer = None


def _connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def _drain_close(s, wait=0.5):
    """Reads whatever the broker answers for a short while, then closes."""
    try:
        s.settimeout(wait)
        while s.recv(65536):
            pass
    except OSError:
        pass
    finally:
        s.close()


def attack_random_bytes(port, n, rnd):
    for _ in range(n):
        s = _connect(port)
        try:
            s.sendall(rnd.randbytes(rnd.randint(1, 65536)))
        except OSError:
            pass
        _drain_close(s, 0.05)


def attack_truncated(port, n, rnd, keep):
    body = kafka_frame(3, 1, 7, struct.pack(">i", 0))
    for i in range(n):
        s = _connect(port)
        cut = rnd.randint(1, len(body) - 1)
        try:
            s.sendall(body[:cut])
        except OSError:
            pass
        if i % 2:
            keep.append(s)  # held open, half a frame sent
        else:
            s.close()
    # a frame whose declared size is shorter than its header
    for size in (0, 1, 3, 6):
        s = _connect(port)
        try:
            s.sendall(struct.pack(">i", size) + b"\x00" * size + b"\x00\x12\x00\x00")
        except OSError:
            pass
        _drain_close(s, 0.2)


def attack_huge_sizes(port, keep):
    for size in (0x7FFFFFFF, -1, -0x80000000, 0x10000000, 200 * 1024 * 1024):
        s = _connect(port)
        try:
            s.sendall(struct.pack(">i", size) + b"\x00\x03\x00\x01" + b"x" * 1000)
        except OSError:
            pass
        _drain_close(s, 0.2)
    # just under the default 100 MiB frame limit: a broker that allocates the announced size
    # up front would need 20 x 100 MiB here
    for _ in range(20):
        s = _connect(port)
        try:
            s.sendall(struct.pack(">i", 100 * 1024 * 1024 - 16) + b"\x00\x03\x00\x01" + b"x" * 1000)
        except OSError:
            pass
        keep.append(s)


def attack_idle(port, n, keep):
    opened = 0
    for _ in range(n):
        try:
            keep.append(_connect(port))
            opened += 1
        except OSError:
            break
    return opened


def attack_non_reader(port, conns, max_bytes):
    """Pipelines ApiVersions requests and never reads the answers; returns the sockets and
    how many requests the broker took before it stopped reading (backpressure)."""
    socks = []
    sent_total = 0
    one = api_versions_request(1)
    blob = one * 1000
    for _ in range(conns):
        s = _connect(port)
        s.setblocking(False)
        socks.append(s)
    for s in socks:
        sent = 0
        deadline = time.monotonic() + 10
        blocked_since = None
        while sent < max_bytes and time.monotonic() < deadline:
            try:
                sent += s.send(blob)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 1.0:
                    break  # the broker stopped reading: backpressure
                time.sleep(0.01)
            except OSError:
                break
        sent_total += sent
    log(f"non-readers: the broker took {sent_total // len(one)} pipelined requests "
        f"({sent_total // 1024} KiB) on {conns} connections")
    return socks, sent_total


def http_raw(port, data, read=True, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        if not read:
            return None
        buf = b""
        try:
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
        line = buf.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
    finally:
        s.close()


def sqs_request(target, body, extra=b""):
    return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
            b"X-Amz-Target: AmazonSQS." + target + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def attack_sqs(b, rnd, n):
    """Malformed JSON and oversized bodies; returns {status: count}."""
    statuses = {}
    qurl = f"{b.http_url}/000000000000/chaos-good-q".encode()
    bodies = [b"{", b"[]", b"null", b'{"QueueUrl": 5}', b'{"QueueUrl": "' + qurl + b'"}',
              b'{"QueueUrl": "' + qurl + b'", "MessageBody": {"a": 1}}',
              b"[" * 100000, b'{"QueueUrl": "\xff\xfe"}', b'{"MaxNumberOfMessages": 1e400}',
              b'{"QueueUrl": "' + qurl + b'", "Entries": [' + b"{}," * 5000 + b"{}]}"]
    targets = [b"SendMessage", b"ReceiveMessage", b"SendMessageBatch", b"CreateQueue",
               b"DeleteMessage", b"Nope", b""]
    for i in range(n):
        body = bodies[i % len(bodies)] if i < 3 * len(bodies) else rnd.randbytes(rnd.randint(0, 4096))
        st = http_raw(b.http_port, sqs_request(targets[i % len(targets)], body))
        statuses[st] = statuses.get(st, 0) + 1
    # an oversized message body (3 MiB, limit 1 MiB) and an oversized request (32 MiB)
    big = b'{"QueueUrl": "' + qurl + b'", "MessageBody": "' + b"x" * (3 << 20) + b'"}'
    statuses["3MiB message"] = http_raw(b.http_port, sqs_request(b"SendMessage", big))
    statuses["32MiB request"] = http_raw(b.http_port, sqs_request(b"SendMessage", b"y" * (32 << 20)))
    # a body announced as huge that never comes (connection held, then closed)
    s = socket.create_connection(("127.0.0.1", b.http_port), timeout=5)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: AmazonSQS.SendMessage\r\n"
              b"Content-Length: 1000000000000\r\n\r\n{")
    time.sleep(0.5)
    s.close()
    return statuses


def fd_exhaustion(ctx):
    """A broker limited to 256 open files gets 400 connections: it must not die or spin,
    and must serve again once they close. Returns a list of problems and a summary."""
    b = Broker(ctx, "memory", nofile=256)
    socks = []
    problems = []
    try:
        b.start()
        for _ in range(400):
            try:
                socks.append(socket.create_connection(("127.0.0.1", b.kafka_port), timeout=2))
            except OSError:
                break  # the broker stopped accepting: its limit (or the backlog) is reached
        cpu0 = cpu_seconds(b.pid())
        time.sleep(2.0)
        spent = cpu_seconds(b.pid()) - cpu0
        if not b.alive():
            problems.append(f"broker died when out of file descriptors: {b.log_tail(3)}")
            return problems, "died"
        if spent > 1.0:
            problems.append(f"broker spun when out of file descriptors ({spent:.1f} CPU s in 2 s)")
        for s in socks:
            s.close()
        socks.clear()
        time.sleep(1.0)
        try:
            metadata_roundtrip(b.kafka_port, timeout=10)
        except (OSError, ConnectionError) as e:
            problems.append(f"not serving after the connections closed: {e}")
        return problems, f"fd limit 256: {spent:.2f} CPU s in 2 s while exhausted, served again after"
    finally:
        for s in socks:
            s.close()
        b.cleanup()


def hostile(ctx):
    rnd = random.Random(7)
    b = Broker(ctx, "log", partitions=1)
    keep = []
    try:
        b.start()
        b.wait_http()
        good = WellBehaved(b).start()
        peaks = []
        problems = []
        sqs_statuses = {}
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        idle = min(ctx.scale(2000, 5000), max(100, soft - 400))
        steps = [
            ("random bytes", lambda: attack_random_bytes(b.kafka_port, ctx.scale(300, 2000), rnd)),
            ("truncated frames", lambda: attack_truncated(b.kafka_port, ctx.scale(200, 1000), rnd, keep)),
            ("huge sizes", lambda: attack_huge_sizes(b.kafka_port, keep)),
            ("idle connections", lambda: log(f"opened {attack_idle(b.kafka_port, idle, keep)} idle connections")),
            ("non-reading clients", lambda: keep.extend(attack_non_reader(b.kafka_port, 4, ctx.scale(50 << 20, 200 << 20))[0])),
            ("malformed SQS", lambda: sqs_statuses.update(attack_sqs(b, rnd, ctx.scale(300, 2000)))),
        ]
        for name, fn in steps:
            t0 = time.monotonic()
            try:
                fn()
            except OSError as e:
                log(f"{name}: client side error {e}")
            st = b.stats()
            peaks.append((name, st["hwm_kb"] // 1024, st["fds"]))
            log(f"{name}: done in {time.monotonic() - t0:.1f}s, RSS {st['rss_kb'] // 1024} MB, "
                f"peak {st['hwm_kb'] // 1024} MB, fds {st['fds']}, alive {b.alive()}")
            if not b.alive():
                problems.append(f"broker died during '{name}': {b.log_tail(5)}")
                break
        log(f"SQS answers: {sqs_statuses}")
        bad_sqs = {k: v for k, v in sqs_statuses.items()
                   if (isinstance(k, int) and not 200 <= k < 500)
                   or (isinstance(k, str) and v not in (400, 413))}
        if bad_sqs:
            problems.append(f"malformed or oversized SQS requests not answered with a clear 4xx: {bad_sqs}")
        time.sleep(ctx.scale(3, 10))  # the good client keeps going with everything held open
        st = b.stats()
        for s in keep:
            try:
                s.close()
            except OSError:
                pass
        keep.clear()
        time.sleep(2)
        after = b.stats()
        good.stop()
        hwm = st["hwm_kb"] // 1024
        fd_problems, fd_summary = fd_exhaustion(ctx)
        problems += fd_problems
        if b.alive() and hwm > RSS_BOUND_MB:
            problems.append(f"peak RSS {hwm} MB over the bound of {RSS_BOUND_MB} MB")
        if b.panicked():
            problems.append(f"panic: {b.panicked()[0]}")
        if good.failures:
            problems.append(f"well-behaved client failed {len(good.failures)} times "
                            f"(first: {good.failures[0]})")
        lat = {k: v for k, v in good.lat.items()}
        worst = max((max(v) for v in lat.values() if v), default=0)
        if worst > LATENCY_BOUND_S:
            problems.append(f"well-behaved latency {worst:.1f}s over {LATENCY_BOUND_S}s")
        if not lat["produce"]:
            problems.append("well-behaved client never produced")
        lat_txt = ", ".join(f"{k} p50 {pct(v, 0.5) * 1000:.0f} / p99 {pct(v, 0.99) * 1000:.0f} / "
                            f"max {max(v) * 1000:.0f} ms" for k, v in lat.items() if v)
        summary = (f"SQS answers {sqs_statuses}; peak RSS {hwm} MB (bound {RSS_BOUND_MB}), fds {st['fds']} held -> "
                   f"{after['fds']} after release, RSS after release {after['rss_kb'] // 1024} MB; "
                   f"well-behaved ({good.n} rounds): {lat_txt}; {fd_summary}")
        return not problems, "; ".join(problems + [summary]), {
            "peaks": peaks, "hwm_mb": hwm, "latency_ms": {k: [round(pct(v, q) * 1000, 1) for q in (0.5, 0.99, 1.0)]
                                                           for k, v in lat.items() if v},
            "good_failures": good.failures[:10]}
    finally:
        for s in keep:
            try:
                s.close()
            except OSError:
                pass
        b.cleanup()
