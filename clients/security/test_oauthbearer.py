"""SASL/OAUTHBEARER with a real client: confluent-kafka (librdkafka) gets its token from an
oauth_cb that signs JWTs (RS256) with a key whose public half is in the broker's JWKS file.
A valid token produces and consumes as User:<sub> (ACLs apply to it); an expired token, a
token signed by another key and a token of another issuer are refused."""
import base64
import json
import os
import time
import uuid

import pytest
import rsa
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

from secutil import SecureBroker, metric

ISSUER = "https://idp.example"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_bytes(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class Idp:
    """An identity provider of the test: an RSA key, its JWKS, and signed tokens."""

    def __init__(self, kid):
        self.kid = kid
        self.public, self.private = rsa.newkeys(2048)

    def jwk(self):
        return {"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
                "n": b64(int_bytes(self.public.n)), "e": b64(int_bytes(self.public.e))}

    def token(self, sub, lifetime_s=600, iss=ISSUER):
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims = {"sub": sub, "iss": iss, "iat": now, "exp": now + lifetime_s}
        signing_input = (b64(json.dumps(header).encode()) + "." +
                         b64(json.dumps(claims).encode())).encode()
        signature = rsa.sign(signing_input, self.private, "SHA-256")
        return signing_input.decode() + "." + b64(signature), now + lifetime_s


@pytest.fixture(scope="module")
def oauth_broker(store_kind):
    idp = Idp("test-key")
    b = SecureBroker(store_kind, [("OAUTH", "SASL_PLAINTEXT")], [])
    jwks = os.path.join(b.data_dir, "jwks.json")
    with open(jwks, "w") as f:
        json.dump({"keys": [idp.jwk()]}, f)
    b.extra_args += ["--sasl-mechanisms", "OAUTHBEARER", "--sasl-oauthbearer-jwks", jwks,
                     "--sasl-oauthbearer-issuer", ISSUER, "--super-users", "User:admin"]
    b.start()
    b.idp = idp
    yield b
    b.cleanup()


def conf(b, token_fn):
    return {"bootstrap.servers": b.bootstrap("OAUTH"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "oauth_cb": lambda _cfg: token_fn()}


def produce(b, token_fn, topic):
    p = Producer({**conf(b, token_fn), "message.timeout.ms": 10000, "linger.ms": 0})
    errors = []
    for i in range(3):
        p.produce(topic, value=f"v{i}".encode(), on_delivery=lambda e, m: e and errors.append(e))
    p.flush(20)
    return errors


def test_a_signed_token_authenticates_its_subject(oauth_broker):
    b = oauth_broker
    topic = f"oauth-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf(b, lambda: b.idp.token("admin")))
    # ACLs name the token's subject: alice may write and read this topic, nothing else.
    for op in (AclOperation.WRITE, AclOperation.READ, AclOperation.CREATE):
        binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                             "User:alice", "*", op, AclPermissionType.ALLOW)
        for f in admin.create_acls([binding], request_timeout=20).values():
            f.result(20)
    binding = AclBinding(ResourceType.GROUP, "oauth-g", ResourcePatternType.LITERAL,
                         "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW)
    for f in admin.create_acls([binding], request_timeout=20).values():
        f.result(20)
    time.sleep(1)
    ok_before = metric(b, 'broker_sasl_authentications_total{mechanism="OAUTHBEARER",result="ok"}')
    assert produce(b, lambda: b.idp.token("alice"), topic) == []
    c = Consumer({**conf(b, lambda: b.idp.token("alice")), "group.id": "oauth-g",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 20
    while len(got) < 3 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [b"v0", b"v1", b"v2"]
    assert metric(b, 'broker_sasl_authentications_total{mechanism="OAUTHBEARER",result="ok"}') > ok_before
    # bob's token is as valid, but bob has no ACL on the topic.
    errors = produce(b, lambda: b.idp.token("bob"), topic)
    assert errors and all(e.code() == 29 for e in errors), errors  # TOPIC_AUTHORIZATION_FAILED


@pytest.mark.parametrize("case", ["expired", "other key", "other issuer"])
def test_bad_tokens_are_refused(oauth_broker, case):
    b = oauth_broker
    if case == "expired":
        token_fn = lambda: (b.idp.token("alice", lifetime_s=-3600)[0], int(time.time()) + 60)
    elif case == "other key":
        other = Idp("test-key")
        token_fn = lambda: other.token("alice")
    else:
        token_fn = lambda: b.idp.token("alice", iss="https://evil.example")
    failed_before = metric(b, 'broker_sasl_authentications_total{mechanism="OAUTHBEARER",result="failed"}')
    admin = AdminClient(conf(b, token_fn))
    with pytest.raises(KafkaException) as e:
        admin.list_topics(timeout=8)
    assert "Authentication" in str(e.value) or "transport" in str(e.value).lower(), str(e.value)
    assert metric(b, 'broker_sasl_authentications_total{mechanism="OAUTHBEARER",result="failed"}') > failed_before
