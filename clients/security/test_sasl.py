"""SASL on Kafka listeners with real clients: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over
SASL_PLAINTEXT and SASL_SSL (confluent-kafka, kcat); wrong passwords refused and counted;
`broker users`; AlterUserScramCredentials; re-authentication (KIP-368)."""
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from secutil import Pki, SecureBroker, add_user, kcat, metric, store_flags
from test_tls import roundtrip

PASSWORDS = {"alice": "alice-secret", "bob": "b0b,=secret"}


@pytest.fixture(scope="module")
def sasl_broker(store_kind):
    if store_kind not in ("log", "postgres"):
        pytest.skip("broker users needs a persistent store")
    pki = Pki()
    cert, key = pki.issue("server", "/CN=localhost")
    b = SecureBroker(store_kind, [("SASLP", "SASL_PLAINTEXT"), ("SASLS", "SASL_SSL")],
                     ["--tls-cert", cert, "--tls-key", key, "--allow-everyone-if-no-acl"])
    add_user(b, "alice", PASSWORDS["alice"], "SCRAM-SHA-256")
    add_user(b, "bob", PASSWORDS["bob"], "SCRAM-SHA-512")
    r = subprocess.run([b.bin, "users", "list", *store_flags(b)], capture_output=True, timeout=60)
    assert r.stdout.decode().split("\n")[:2] == ["alice\tSCRAM-SHA-256\t4096", "bob\tSCRAM-SHA-512\t4096"]
    b.start()
    b.pki = pki
    yield b
    b.cleanup()
    pki.cleanup()


def conf(b, listener, mechanism, user, password=None):
    c = {"bootstrap.servers": b.bootstrap(listener),
         "security.protocol": "SASL_SSL" if listener == "SASLS" else "SASL_PLAINTEXT",
         "sasl.mechanism": mechanism, "sasl.username": user,
         "sasl.password": PASSWORDS[user] if password is None else password}
    if listener == "SASLS":
        c["ssl.ca.location"] = b.pki.ca
    return c


@pytest.mark.parametrize("listener", ["SASLP", "SASLS"])
@pytest.mark.parametrize("mechanism,user", [("PLAIN", "alice"), ("PLAIN", "bob"),
                                            ("SCRAM-SHA-256", "alice"), ("SCRAM-SHA-512", "bob")])
def test_confluent_authenticates(sasl_broker, listener, mechanism, user, unique_name):
    roundtrip(conf(sasl_broker, listener, mechanism, user), unique_name("sasl"))


@pytest.mark.parametrize("listener", ["SASLP", "SASLS"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_kcat_authenticates(sasl_broker, listener, mechanism, unique_name):
    c = conf(sasl_broker, listener, mechanism, "alice")
    args = [x for k, v in c.items() if k != "bootstrap.servers" for x in ("-X", f"{k}={v}")]
    topic = unique_name("kcat-sasl")
    r = kcat("-b", c["bootstrap.servers"], *args, "-P", "-t", topic, input=b"hello\n")
    assert r.returncode == 0, r.stderr
    r = kcat("-b", c["bootstrap.servers"], *args, "-C", "-t", topic, "-e", "-q", "-o", "beginning")
    assert r.returncode == 0 and r.stdout.strip() == b"hello", r


def login_fails(c):
    a = AdminClient({**c, "socket.timeout.ms": 5000})
    with pytest.raises(KafkaException):
        a.list_topics(timeout=8)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_wrong_password_is_refused_and_counted(sasl_broker, mechanism):
    user = "bob" if mechanism == "SCRAM-SHA-512" else "alice"
    label = f'broker_sasl_authentications_total{{mechanism="{mechanism}",result="failed"}}'
    before = metric(sasl_broker, label)
    login_fails(conf(sasl_broker, "SASLP", mechanism, user, "not-the-password-xyzzy"))
    login_fails(conf(sasl_broker, "SASLP", mechanism, "nobody", "whatever-xyzzy"))
    assert metric(sasl_broker, label) >= before + 2
    assert "xyzzy" not in open(sasl_broker.log_path, errors="replace").read()
    # kcat too.
    r = kcat("-b", sasl_broker.bootstrap("SASLP"), "-X", "security.protocol=SASL_PLAINTEXT",
             "-X", f"sasl.mechanism={mechanism}", "-X", f"sasl.username={user}",
             "-X", "sasl.password=wrong", "-L", "-m", "5", timeout=30)
    assert r.returncode != 0


def test_unauthenticated_clients_get_nothing(sasl_broker):
    # A plain Kafka client on a SASL listener: the connection is closed, no metadata.
    a = AdminClient({"bootstrap.servers": sasl_broker.bootstrap("SASLP"), "socket.timeout.ms": 5000})
    with pytest.raises(KafkaException):
        a.list_topics(timeout=6)


def test_alter_user_scram_credentials(sasl_broker, unique_name):
    admin = AdminClient(conf(sasl_broker, "SASLP", "SCRAM-SHA-256", "alice"))
    user = "carol-" + uuid.uuid4().hex[:6]
    fut = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"carol-pw")])
    fut[user].result(20)
    desc = admin.describe_user_scram_credentials([user])[user].result(20)
    assert [(i.mechanism, i.iterations) for i in desc.scram_credential_infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)]
    PASSWORDS[user] = "carol-pw"
    roundtrip(conf(sasl_broker, "SASLS", "SCRAM-SHA-512", user), unique_name("carol"))
    roundtrip(conf(sasl_broker, "SASLP", "PLAIN", user), unique_name("carol"))
    # Too few iterations are refused with Kafka's error.
    fut = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"x")])
    with pytest.raises(KafkaException, match="(?i)iterations"):
        fut[user].result(20)


def test_reauthentication(store_kind):
    if store_kind not in ("log", "postgres"):
        pytest.skip("broker users needs a persistent store")
    b = SecureBroker(store_kind, [("SASLP", "SASL_PLAINTEXT")],
                     ["--connections-max-reauth-ms", "2000", "--allow-everyone-if-no-acl"])
    add_user(b, "alice", PASSWORDS["alice"])
    b.start()
    try:
        label = 'broker_sasl_authentications_total{mechanism="SCRAM-SHA-256",result="ok"}'
        p = Producer({**conf(b, "SASLP", "SCRAM-SHA-256", "alice"), "linger.ms": 0})
        topic = "reauth-" + uuid.uuid4().hex[:6]
        errors = []
        deadline = time.time() + 7
        n = 0
        while time.time() < deadline:
            p.produce(topic, value=b"x", on_delivery=lambda e, m: e and errors.append(e))
            p.poll(0.05)
            n += 1
        assert p.flush(20) == 0 and not errors, errors
        # One login and at least two re-authentications on the producer's connections.
        assert metric(b, label) >= 3, metric(b, label)
        assert "session expired" not in b.log_tail(200)
    finally:
        b.cleanup()


def admin_cli(b, *args, password=None, **flags):
    """Runs `broker admin --json` with the given flags; returns the completed process."""
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    if password is not None:
        env["BROKER_SASL_PASSWORD"] = password
    cmd = [b.bin, "admin", "--json", "--timeout-secs", "10"]
    for k, v in flags.items():
        cmd += ["--" + k.replace("_", "-"), v]
    return subprocess.run(cmd + list(args), capture_output=True, env=env, timeout=60)


@pytest.mark.parametrize("listener,protocol,mechanism,user", [
    ("SASLP", "SASL_PLAINTEXT", "SCRAM-SHA-256", "alice"),
    ("SASLS", "SASL_SSL", "SCRAM-SHA-512", "bob"),
    ("SASLS", "SASL_SSL", "PLAIN", "alice"),
])
def test_broker_admin_reaches_a_secured_listener(sasl_broker, listener, protocol, mechanism, user):
    b = sasl_broker
    topic = f"admin-sec-{uuid.uuid4().hex[:8]}"
    flags = dict(bootstrap=b.bootstrap(listener), security_protocol=protocol,
                 sasl_mechanism=mechanism, sasl_username=user)
    if protocol == "SASL_SSL":
        flags["tls_ca"] = b.pki.ca
    r = admin_cli(b, "topics", "create", topic, "--partitions", "2",
                  password=PASSWORDS[user], **flags)
    assert r.returncode == 0, r.stderr.decode()
    r = admin_cli(b, "topics", "list", password=PASSWORDS[user], **flags)
    assert r.returncode == 0, r.stderr.decode()
    assert topic in r.stdout.decode()
    # A wrong password: a clear error naming the mechanism and the user, exit code 1.
    r = admin_cli(b, "topics", "list", password="Xyzzy-not-it", **flags)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert mechanism in err and user in err and "Xyzzy" not in err, err
    # No password at all: refused before connecting.
    r = admin_cli(b, "topics", "list", **flags)
    assert r.returncode != 0 and "BROKER_SASL_PASSWORD" in r.stderr.decode()
    if protocol == "SASL_SSL":
        # Without the CA the broker's certificate is not trusted.
        no_ca = {k: v for k, v in flags.items() if k != "tls_ca"}
        r = admin_cli(b, "topics", "list", password=PASSWORDS[user], **no_ca)
        assert r.returncode != 0 and "--tls-ca" in r.stderr.decode()
