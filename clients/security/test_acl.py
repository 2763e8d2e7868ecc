"""Authorisation with real clients: ACLs managed with confluent-kafka's AdminClient
(CreateAcls/DescribeAcls/DeleteAcls), enforced on produce, fetch, metadata and groups with
Kafka's error codes, prefixed ACLs, super users; and the same ACLs on the SQS API (boto3)."""
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType)

from secutil import SecureBroker, add_user, metric

USERS = {"admin": "admin-pw", "reader": "reader-pw", "writer": "writer-pw", "pre": "pre-pw"}


@pytest.fixture(scope="module")
def acl_broker(store_kind):
    if store_kind not in ("log", "postgres"):
        pytest.skip("broker users needs a persistent store")
    b = SecureBroker(store_kind, [("SASL", "SASL_PLAINTEXT")], ["--super-users", "User:admin"])
    for u, p in USERS.items():
        add_user(b, u, p)
    b.start()
    yield b
    b.cleanup()


def conf(b, user):
    return {"bootstrap.servers": b.bootstrap("SASL"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": USERS[user]}


def admin(b):
    return AdminClient(conf(b, "admin"))


def allow(principal, name, op, rtype=ResourceType.TOPIC, pattern=ResourcePatternType.LITERAL,
          perm=AclPermissionType.ALLOW):
    return AclBinding(rtype, name, pattern, principal, "*", op, perm)


def create_acls(b, bindings):
    a = admin(b)
    for f in a.create_acls(bindings, request_timeout=20).values():
        f.result(20)


def produce(b, user, topic, n=3):
    p = Producer({**conf(b, user), "linger.ms": 0, "message.timeout.ms": 10000})
    errors = []
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), on_delivery=lambda e, m: e and errors.append(e))
    p.flush(20)
    return errors


def consume_error(b, user, topic, group, subscribe=False):
    """Assigns partition 0 (or subscribes) and polls; returns the first error code (or the
    values read)."""
    c = Consumer({**conf(b, user), "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    if subscribe:
        c.subscribe([topic])
    else:
        c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 20
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return m.error().code()
            got.append(m.value())
            if len(got) >= 3:
                return got
    finally:
        c.close()
    return got


def topic_listing(b, user):
    a = AdminClient(conf(b, user))
    return set(a.list_topics(timeout=10).topics)


def test_acls_govern_produce_consume_and_metadata(acl_broker, unique_name):
    b = acl_broker
    topic = unique_name("acl")
    group = unique_name("g")
    a = admin(b)
    a.create_topics([__import__("confluent_kafka").admin.NewTopic(topic, 1, 1)])[topic].result(20)
    # Nobody but the super user has rights yet (allow.everyone.if.no.acl.found is off).
    assert produce(b, "writer", topic), "a principal without Write produced"
    assert topic not in topic_listing(b, "reader")
    assert topic in topic_listing(b, "admin")
    create_acls(b, [
        allow("User:writer", topic, AclOperation.WRITE),
        allow("User:writer", group, AclOperation.READ, ResourceType.GROUP),
        allow("User:reader", group, AclOperation.READ, ResourceType.GROUP),
    ])
    # Write only: produces, cannot consume.
    assert produce(b, "writer", topic) == []
    assert topic in topic_listing(b, "writer"), "Write implies Describe"
    assert consume_error(b, "writer", topic, group) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Without Read on the topic: TOPIC_AUTHORIZATION_FAILED and nothing of it in Metadata.
    assert consume_error(b, "reader", topic, group, subscribe=True) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert topic not in topic_listing(b, "reader")
    ra = AdminClient(conf(b, "reader"))
    md = ra.list_topics(topic=topic, timeout=10).topics[topic]
    assert md.error is not None and md.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert not md.partitions
    # With Read: consumes what the writer produced.
    create_acls(b, [allow("User:reader", topic, AclOperation.READ)])
    assert consume_error(b, "reader", topic, group) == [b"v0", b"v1", b"v2"]
    # A DENY wins over the ALLOW.
    create_acls(b, [allow("User:reader", topic, AclOperation.ALL, perm=AclPermissionType.DENY)])
    assert consume_error(b, "reader", topic, group, subscribe=True) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_prefixed_acls_and_acl_admin(acl_broker, unique_name):
    b = acl_broker
    prefix = unique_name("pre") + "-"
    create_acls(b, [
        allow("User:pre", prefix, AclOperation.ALL, pattern=ResourcePatternType.PREFIXED),
        allow("User:pre", "pg-", AclOperation.READ, ResourceType.GROUP, ResourcePatternType.PREFIXED),
        allow("User:pre", "kafka-cluster", AclOperation.CREATE, ResourceType.BROKER),
    ])
    inside, outside = prefix + "a", unique_name("other")
    assert produce(b, "pre", inside) == []
    assert consume_error(b, "pre", inside, "pg-1") == [b"v0", b"v1", b"v2"]
    errs = produce(b, "pre", outside)
    assert errs and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # DescribeAcls with a MATCH filter finds the prefixed binding for a name under it.
    f = AclBindingFilter(ResourceType.TOPIC, inside, ResourcePatternType.MATCH, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    a = admin(b)
    found = a.describe_acls(f, request_timeout=20).result(20)
    assert [(x.name, x.resource_pattern_type) for x in found] == [(prefix, ResourcePatternType.PREFIXED)]
    # Only the super user (or a principal with ALTER on the cluster) manages ACLs.
    # (librdkafka hands back an empty list for DescribeAcls' CLUSTER_AUTHORIZATION_FAILED.)
    label = 'broker_kafka_errors_total{api="DescribeAcls",error="CLUSTER_AUTHORIZATION_FAILED",code="31"}'
    before = metric(b, label)
    pre_admin = AdminClient(conf(b, "pre"))
    try:
        assert pre_admin.describe_acls(f, request_timeout=20).result(20) == []
    except KafkaException as e:
        assert "authoriz" in str(e).lower()
    assert metric(b, label) == before + 1
    # DeleteAcls removes it; access ends.
    df = AclBindingFilter(ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED, "User:pre", None,
                          AclOperation.ANY, AclPermissionType.ANY)
    deleted = a.delete_acls([df], request_timeout=20)[df].result(20)
    assert len(deleted) == 1
    errs = produce(b, "pre", inside)
    assert errs and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_sqs_actions_follow_the_acls(store_kind, unique_name, tmp_path):
    import boto3
    from botocore.exceptions import ClientError
    keys = tmp_path / "keys"
    keys.write_text("AKGOOD goodsecret\nAKBAD badsecret\n")
    # The PLAINTEXT listener's User:ANONYMOUS administers the ACLs; SQS requests signed with
    # a key are User:<access key>.
    b = SecureBroker(store_kind, [], ["--sqs-credentials-file", str(keys),
                                      "--allow-everyone-if-no-acl", "false",
                                      "--super-users", "User:ANONYMOUS"]).start()
    try:
        def client(key, secret):
            return boto3.client("sqs", endpoint_url=b.http_url, region_name="us-east-1",
                                aws_access_key_id=key, aws_secret_access_key=secret)
        good, bad = client("AKGOOD", "goodsecret"), client("AKBAD", "badsecret")
        q = unique_name("q")
        with pytest.raises(ClientError) as e:
            good.create_queue(QueueName=q)
        assert e.value.response["Error"]["Code"] == "AccessDenied"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        # Kafka ACLs for the access key's principal open the queue to it.
        from confluent_kafka.admin import AclBinding as AB
        plain = AdminClient({"bootstrap.servers": b.kafka_addr})
        for f in plain.create_acls([AB(ResourceType.TOPIC, q, ResourcePatternType.LITERAL, "User:AKGOOD",
                                       "*", AclOperation.ALL, AclPermissionType.ALLOW)],
                                   request_timeout=20).values():
            f.result(20)
        url = good.create_queue(QueueName=q)["QueueUrl"]
        good.send_message(QueueUrl=url, MessageBody="hi")
        assert good.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]["Body"] == "hi"
        assert url in good.list_queues().get("QueueUrls", [])
        for call in (lambda: bad.send_message(QueueUrl=url, MessageBody="x"),
                     lambda: bad.receive_message(QueueUrl=url),
                     lambda: bad.delete_queue(QueueUrl=url)):
            with pytest.raises(ClientError) as e:
                call()
            assert e.value.response["Error"]["Code"] == "AccessDenied"
        assert url not in bad.list_queues().get("QueueUrls", [])
    finally:
        b.cleanup()


def _console_get(b, path, user=None, password=None):
    """GET path on the HTTP listener with optional Basic credentials: (status, body)."""
    import base64
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"{b.http_url}{path}")
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def test_console_admits_only_super_users_while_acls_are_on(acl_broker):
    b = acl_broker
    topic = f"console-acl-{uuid.uuid4().hex[:8]}"
    assert produce(b, "admin", topic) == []
    # No credentials: a Basic challenge, no data.
    status, body, headers = _console_get(b, "/api/v1/topics")
    assert status == 401, body
    assert headers.get("WWW-Authenticate", "").startswith("Basic"), headers
    assert topic not in body
    status, _, _ = _console_get(b, "/ui")
    assert status == 401
    # A wrong password, and a real user who is not a super user, are refused alike.
    assert _console_get(b, "/api/v1/topics", "admin", "wrong")[0] == 401
    assert _console_get(b, "/api/v1/topics", "reader", USERS["reader"])[0] == 401
    # The super user sees the topic, through the in-process admin path as well.
    status, body, _ = _console_get(b, "/api/v1/topics", "admin", USERS["admin"])
    assert status == 200, body
    assert topic in body
    status, body, _ = _console_get(b, f"/api/v1/topics/{topic}/configs", "admin", USERS["admin"])
    assert status == 200, body
    # The SQS API and /metrics are not behind the console's gate.
    status, _, _ = _console_get(b, "/metrics")
    assert status == 200
