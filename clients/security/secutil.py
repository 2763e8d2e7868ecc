"""Helpers of the security tests: certificates made on the fly with the openssl CLI, brokers
with TLS/SASL listeners, client configurations."""
import os
import shutil
import socket
import struct
import subprocess
import tempfile

from brokerproc import Broker, free_port, wait_port


def _run(*args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


class Pki:
    """A CA and certificates it signs, as PEM files in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="broker-pki-")
        self.ca = self.path("ca.pem")
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", self.path("ca.key"), "-out", self.ca, "-days", "2",
             "-subj", "/CN=broker test CA")

    def path(self, name):
        return os.path.join(self.dir, name)

    def issue(self, name, subject, sans="DNS:localhost,IP:127.0.0.1"):
        """Writes NAME.pem and NAME.key signed by the CA; returns their paths."""
        key, csr, pem, ext = (self.path(name + s) for s in (".key", ".csr", ".pem", ".ext"))
        _run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
        with open(ext, "w") as f:
            f.write(f"subjectAltName={sans}\n")
        _run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.path("ca.key"),
             "-CAcreateserial", "-out", pem, "-days", "2", "-extfile", ext)
        return pem, key

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class SecureBroker(Broker):
    """A broker with a PLAINTEXT --kafka-addr (for start-up checks) plus the given listeners,
    each NAME=PROTOCOL on a free port; `port(NAME)` tells where."""

    def __init__(self, store, listeners, extra_args=()):
        super().__init__(store, extra_args)
        self.ports = {name: free_port() for name, _ in listeners}
        self.listeners = listeners

    def port(self, name):
        return self.ports[name]

    def bootstrap(self, name):
        return f"127.0.0.1:{self.ports[name]}"

    def args(self):
        a = super().args()
        for name, proto in self.listeners:
            a += ["--listener", f"{name}={proto}://127.0.0.1:{self.ports[name]}"]
        return a

    def start(self):
        super().start()
        for p in self.ports.values():
            wait_port(p, self.proc)
        return self


def api_versions_frame(correlation_id):
    """A Kafka ApiVersions v0 request frame."""
    client = b"sec-test"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client)) + client
    return struct.pack(">i", len(body)) + body


def read_frame(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf
    (n,) = struct.unpack(">i", exact(4))
    return exact(n)


def kcat(*args, timeout=60, input=None):
    return subprocess.run(["kcat", *args], capture_output=True, timeout=timeout, input=input)


def store_flags(broker):
    """The store flags of a (not running) Broker, for `broker users`."""
    if broker.store == "log":
        return ["--store", "log", "--data-dir", os.path.join(broker.data_dir, "data")]
    if broker.store == "postgres":
        return ["--store", "postgres", "--database-url", os.environ["DATABASE_URL"],
                "--pg-schema", broker.schema]
    raise RuntimeError("broker users needs the log or postgres store")


def add_user(broker, name, password, mechanism="SCRAM-SHA-256"):
    r = subprocess.run([broker.bin, "users", "add", name, "--mechanism", mechanism,
                        "--password-stdin", *store_flags(broker)],
                       input=password.encode() + b"\n", capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r


def metric(broker, name_and_labels):
    """The value of one metric line of /metrics (0 when absent)."""
    import urllib.request
    scheme = "http"
    text = urllib.request.urlopen(f"{scheme}://127.0.0.1:{broker.http_port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name_and_labels + " "):
            return float(line.split()[-1])
    return 0.0
