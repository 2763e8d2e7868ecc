"""TLS on Kafka listeners with real clients (kcat, confluent-kafka): SSL, mTLS, and a
certificate reload (SIGHUP) that new connections see while old ones keep working."""
import os
import shutil
import signal
import socket
import ssl
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

from secutil import Pki, SecureBroker, api_versions_frame, kcat, read_frame


@pytest.fixture(scope="module")
def pki():
    p = Pki()
    p.server = p.issue("server", "/CN=localhost")
    p.alice = p.issue("alice", "/O=Example/CN=alice")
    yield p
    p.cleanup()


def roundtrip(conf, topic, n=5):
    p = Producer({**conf, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=f"m{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": "g-" + uuid.uuid4().hex[:6], "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [f"m{i}".encode() for i in range(n)]


def test_ssl_listener_with_confluent_and_kcat(store_kind, pki, unique_name):
    cert, key = pki.server
    b = SecureBroker(store_kind, [("SECURE", "SSL")],
                     ["--tls-cert", cert, "--tls-key", key]).start()
    try:
        conf = {"bootstrap.servers": b.bootstrap("SECURE"), "security.protocol": "SSL",
                "ssl.ca.location": pki.ca}
        topic = unique_name("tls")
        roundtrip(conf, topic)
        tls = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.ca}", "-b", b.bootstrap("SECURE")]
        r = kcat(*tls, "-P", "-t", topic, input=b"from-kcat\n")
        assert r.returncode == 0, r.stderr
        r = kcat(*tls, "-C", "-t", topic, "-o", "-1", "-e", "-q")
        assert r.returncode == 0 and r.stdout.strip() == b"from-kcat", r
        # Metadata over the SSL listener advertises the SSL listener's port.
        r = kcat(*tls, "-L", "-t", topic)
        assert f"127.0.0.1:{b.port('SECURE')}".encode() in r.stdout, r.stdout
        # A client that does not trust the CA is refused at the handshake.
        r = kcat("-X", "security.protocol=SSL", "-b", b.bootstrap("SECURE"), "-L", "-m", "5", timeout=30)
        assert r.returncode != 0
    finally:
        b.cleanup()


def test_mtls_client_certificate_is_required(store_kind, pki, unique_name):
    cert, key = pki.server
    # An SSL listener with a client CA authenticates clients, so ACLs apply (default deny);
    # the PLAINTEXT listener's User:ANONYMOUS administers them.
    b = SecureBroker(store_kind, [("MTLS", "SSL")],
                     ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", pki.ca,
                      "--super-users", "User:ANONYMOUS"]).start()
    try:
        base = {"bootstrap.servers": b.bootstrap("MTLS"), "security.protocol": "SSL",
                "ssl.ca.location": pki.ca}
        alice_cert, alice_key = pki.alice
        alice = {**base, "ssl.certificate.location": alice_cert, "ssl.key.location": alice_key}
        topic = unique_name("mtls")
        # No ACL for the certificate's principal yet: refused.
        p = Producer({**alice, "message.timeout.ms": 8000})
        errors = []
        p.produce(topic, b"x", on_delivery=lambda e, m: e and errors.append(e))
        p.flush(15)
        assert errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
        # The principal is the certificate subject as Kafka writes it.
        admin = AdminClient({"bootstrap.servers": b.kafka_addr})
        for f in admin.create_acls([
            AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:CN=alice,O=Example",
                       "*", AclOperation.ALL, AclPermissionType.ALLOW),
            AclBinding(ResourceType.GROUP, "g-", ResourcePatternType.PREFIXED, "User:CN=alice,O=Example",
                       "*", AclOperation.ALL, AclPermissionType.ALLOW),
        ], request_timeout=20).values():
            f.result(20)
        roundtrip(alice, topic)
        r = kcat("-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.ca}",
                 "-b", b.bootstrap("MTLS"), "-L", "-m", "5", timeout=30)
        assert r.returncode != 0, "served a client without a certificate"
    finally:
        b.cleanup()


def peer_cert_and_conn(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname="localhost")
    return s, s.getpeercert(binary_form=True)


def test_certificate_reload_on_sighup(store_kind, pki):
    d = pki.path("live")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "server.pem"), os.path.join(d, "server.key")
    first = pki.issue("first", "/CN=localhost/O=first")
    second = pki.issue("second", "/CN=localhost/O=second")
    shutil.copy(first[0], cert)
    shutil.copy(first[1], key)
    b = SecureBroker(store_kind, [("SECURE", "SSL")],
                     ["--tls-cert", cert, "--tls-key", key]).start()
    try:
        old, old_der = peer_cert_and_conn(b.port("SECURE"), pki.ca)
        old.sendall(api_versions_frame(1))
        assert len(read_frame(old)) > 8
        # A broken file is refused and the old certificate stays.
        with open(cert, "w") as f:
            f.write("garbage")
        b.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        _, der = peer_cert_and_conn(b.port("SECURE"), pki.ca)
        assert der == old_der
        assert "TLS reload failed" in b.log_tail()
        shutil.copy(second[0], cert)
        shutil.copy(second[1], key)
        b.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while True:
            new, new_der = peer_cert_and_conn(b.port("SECURE"), pki.ca)
            if new_der != old_der or time.time() > deadline:
                break
            new.close()
            time.sleep(0.2)
        assert new_der != old_der, "new connections still get the old certificate"
        with open(second[0]) as f:
            assert ssl.DER_cert_to_PEM_cert(new_der).split()[2] == f.read().split()[2]
        new.sendall(api_versions_frame(2))
        assert len(read_frame(new)) > 8
        # The connection opened before the reload still works.
        old.sendall(api_versions_frame(3))
        assert len(read_frame(old)) > 8
        assert b.proc.poll() is None
    finally:
        b.cleanup()


def test_https_listener_serves_sqs(store_kind, pki):
    cert, key = pki.server
    b = SecureBroker(store_kind, [], ["--tls-cert", cert, "--tls-key", key, "--http-tls"]).start()
    try:
        import boto3
        sqs = boto3.client("sqs", endpoint_url=f"https://127.0.0.1:{b.http_port}", region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="y", verify=pki.ca)
        url = sqs.create_queue(QueueName="tls-" + uuid.uuid4().hex[:6])["QueueUrl"]
        assert url.startswith("https://")
        sqs.send_message(QueueUrl=url, MessageBody="over tls")
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
        assert got[0]["Body"] == "over tls"
        # Plain HTTP on the TLS port is not served.
        with socket.create_connection(("127.0.0.1", b.http_port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(100)
            except OSError:
                data = b""
            assert not data.startswith(b"HTTP/1.1 200")
    finally:
        b.cleanup()
