"""The web console in a real headless browser (Chromium through Selenium) against a real
broker, with the real clients making the traffic: confluent-kafka produces and consumes,
boto3 sends to SQS queues. Each page is saved as a screenshot in target/console-screens/.

Run with BROKER_STORE=log or postgres (scripts/test runs both)."""
import json
import threading
import time

import boto3
import pytest
from botocore.config import Config
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from selenium.webdriver.support.ui import Select

from brokerproc import Broker
from consolepage import Console


@pytest.fixture(scope="module")
def broker(store_kind):
    """A broker of this module's own, so the screenshots show only what these tests made."""
    with Broker(store_kind) as b:
        yield b


@pytest.fixture
def ui(driver, broker, screens):
    driver.set_window_size(1280, 900)
    return Console(driver, broker, screens)


def create_topic(broker, name, partitions):
    admin = AdminClient({"bootstrap.servers": broker.kafka_addr})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(timeout=30)


def produce(broker, topic, records, partition=None):
    """Produces (key, value) pairs and waits for every acknowledgement."""
    p = Producer({"bootstrap.servers": broker.kafka_addr, "linger.ms": 5})
    for key, value in records:
        if partition is None:
            p.produce(topic, key=key, value=value)
        else:
            p.produce(topic, key=key, value=value, partition=partition)
    assert p.flush(30) == 0, "undelivered records"


def consumer(broker, group, **extra):
    conf = {"bootstrap.servers": broker.kafka_addr, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    conf.update(extra)
    return Consumer(conf)


def consume(c, n, timeout=30):
    """Polls until `n` records came; returns them."""
    got = []
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m)
    assert len(got) == n, f"consumed {len(got)} of {n}"
    return got


def consume_and_commit(broker, group, topic, n):
    """A consumer of `group` subscribed to `topic` that has consumed and committed `n` records."""
    c = consumer(broker, group)
    c.subscribe([topic])
    consume(c, n)
    c.commit(asynchronous=False)
    return c


def sqs(broker):
    return boto3.client("sqs", endpoint_url=broker.http_url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}))


def order(i):
    return (b"customer-%d" % (i % 7),
            json.dumps({"order": i, "items": [{"sku": "A-%d" % (i % 5), "qty": 1 + i % 3}], "paid": i % 2 == 0}).encode())


def test_produced_records_show_on_overview_topics_and_topic(ui, broker):
    create_topic(broker, "orders", 3)
    ui.open("overview")
    ui.wait(lambda: ui.text("[data-test=store-kind]"), what="the overview")
    assert ui.text("[data-test=store-kind]").startswith(broker.store)
    assert "healthy" in ui.text("[data-test=store-health]")

    # Produce for a few seconds while the overview is open: its chart shows the rate.
    done = threading.Event()

    def load():
        p = Producer({"bootstrap.servers": broker.kafka_addr, "linger.ms": 5})
        for i in range(600):
            p.produce("orders", key=order(i)[0], value=order(i)[1])
            if i % 50 == 49:
                p.flush(10)
                time.sleep(0.4)
        assert p.flush(30) == 0
        done.set()

    t = threading.Thread(target=load)
    t.start()
    rate = ui.wait(lambda: (lambda v: v and v != "–" and float(v.replace(",", "")) > 0 and v)(
        ui.text("[data-test=chart-produced] .value")), what="a produce rate above 0")
    t.join(60)
    assert done.is_set()
    ui.wait_number("[data-test=total-records]", 600)
    assert ui.number("[data-test=total-topics]") == 1
    ui.shot("overview")
    print("produce rate seen:", rate)

    ui.open("topics")
    ui.wait_number("tr[data-topic=orders] .records", 600)
    ui.shot("topics")

    ui.open("topics/orders")
    ui.wait(lambda: len(ui.finds("tr[data-partition]")) == 3, what="3 partitions")
    ui.wait(lambda: sum(ui.number(f"tr[data-partition='{p}'] .end") or 0 for p in range(3)) == 600,
            what="ends summing to 600")
    ui.wait(lambda: ui.finds("tr[data-config='retention.ms']"), what="the settings")
    # More records while the page is open: the per-partition rates show them.
    t = threading.Thread(target=produce, args=(broker, "orders", [order(i) for i in range(600, 700)]))
    t.start()
    ui.wait(lambda: any((ui.text(f"tr[data-partition='{p}'] td:nth-child(6)") or "–") not in ("–", "0.0")
                        for p in range(3)), what="a partition rate above 0")
    t.join(30)
    ui.shot("topic")


def test_browse_search_formats_and_produce_a_test_message(ui, broker):
    produce(broker, "orders", [order(i) for i in range(1000, 1010)], partition=0)
    ui.open("messages?topic=orders&partition=0&offset=0&limit=20")
    ui.wait(lambda: len(ui.finds(".record")) == 20, what="20 records")
    first = ui.finds(".record")[0]
    assert first.get_attribute("data-offset") == "0"
    value = ui.text(".record pre.value")
    assert json.loads(value)["order"] >= 0, value

    ui.click("[data-format=json]")
    ui.wait(lambda: "\n  \"items\": [" in ui.text(".record pre.value"), what="pretty JSON")
    ui.click("[data-format=hex]")
    ui.wait(lambda: ui.text(".record pre.value").startswith("000000  7b 22"), what="a hex dump")
    ui.click("[data-format=json]")

    # Search by key: only records with that key.
    ui.fill("#browse-offset", "")
    ui.fill("#browse-key", "customer-3")
    ui.click("#browse-go")
    ui.wait(lambda: ui.finds(".record") and set(ui.texts(".record .key")) == {"customer-3"},
            what="only records with key customer-3")
    assert "key=customer-3" in ui.d.current_url
    ui.fill("#browse-key", "")
    ui.click("#browse-go")
    ui.wait(lambda: len(set(ui.texts(".record .key"))) > 1, what="records of every key again")
    ui.shot("messages")

    # Produce a test message from the page; a Kafka consumer reads it back.
    ui.find("details summary").click()
    ui.fill("#produce-key", "from-console")
    ui.fill("#produce-value", '{"hello": "console"}')
    ui.click("#produce-go")
    msg = ui.toast()
    offset = int(msg.rsplit(" ", 1)[1])
    c = consumer(broker, "console-check")
    c.assign([TopicPartition("orders", 0, offset)])
    m = consume(c, 1)[0]
    c.close()
    assert (m.key(), json.loads(m.value())) == (b"from-console", {"hello": "console"})


def test_consumer_lag_falls_as_a_group_consumes(ui, broker):
    create_topic(broker, "events", 1)
    produce(broker, "events", [(None, b"event %d" % i) for i in range(40)])
    c = consume_and_commit(broker, "billing", "events", 10)

    ui.open("groups")
    ui.wait_number("tr[data-group=billing] .lag", 30)
    ui.open("groups/billing")
    ui.wait_number("[data-test=lag]", 30)
    ui.wait(lambda: len(ui.finds("tr[data-member]")) == 1, what="the consumer as a member")
    assert "events: 0" in ui.text("tr[data-member] td:last-child")
    seen = [30]
    for want in (20, 10, 0):
        consume(c, 10)
        c.commit(asynchronous=False)
        seen.append(ui.wait_number("[data-test=lag]", want))
        time.sleep(2.2)  # one more poll, so the chart has a point per step
    assert seen == [30, 20, 10, 0]
    assert ui.number("tr[data-partition='events/0'] .committed") == 40
    ui.shot("group")
    ui.open("groups")
    ui.wait_number("tr[data-group=billing] .lag", 0)
    ui.shot("groups")
    c.close()


def test_sqs_depths_and_dead_letter_redrive(ui, broker):
    q = sqs(broker)
    dlq = q.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    arn = q.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = q.create_queue(QueueName="jobs", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1})})["QueueUrl"]
    for i in range(6):
        q.send_message(QueueUrl=url, MessageBody=f"job {i}")

    ui.open("queues")
    ui.wait_number("tr[data-queue=jobs] .available", 6)
    got = q.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=60)["Messages"]
    assert len(got) == 2
    ui.wait_number("tr[data-queue=jobs] .in-flight", 2)
    assert ui.number("tr[data-queue=jobs] .available") == 4

    # The other four are received once (visible again at once), then dead-lettered.
    got = q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    assert len(got) == 4
    assert q.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    ui.wait_number("tr[data-queue=jobs-dlq] .available", 4)
    assert ui.number("tr[data-queue=jobs] .dead-lettered") == 4
    assert ui.text("tr[data-queue=jobs-dlq] .oldest") != "–"
    ui.shot("queues")

    ui.click("tr[data-queue=jobs-dlq] button.redrive")
    ui.confirm()
    assert ui.toast() == "Moved 4 messages"
    ui.wait_number("tr[data-queue=jobs] .available", 4)
    assert ui.number("tr[data-queue=jobs-dlq] .available") == 0
    bodies = sorted(m["Body"] for m in q.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"])
    assert len(bodies) == 4 and all(b.startswith("job ") for b in bodies), bodies


def test_reset_offsets_from_the_console_makes_a_consumer_read_again(ui, broker):
    create_topic(broker, "audit", 1)
    produce(broker, "audit", [(None, b"entry %d" % i) for i in range(10)])
    consume_and_commit(broker, "auditors", "audit", 10).close()

    ui.open("groups/auditors")
    ui.wait(lambda: ui.number("tr[data-partition='audit/0'] .committed") == 10
            and len(ui.finds("tr[data-member]")) == 0, what="the commit at 10 and no members")
    assert ui.find("#reset-topic").get_attribute("value") == "audit"
    Select(ui.find("#reset-to")).select_by_value("earliest")
    ui.click("#reset-preview")
    ui.wait(lambda: ui.text("#reset-plan td.new") == "0", what="a plan to move to 0")
    assert ui.number("tr[data-partition='audit/0'] .committed") == 10, "a dry run changes nothing"
    ui.shot("group-reset")
    ui.click("#reset-execute")
    ui.confirm(word="auditors")
    assert "Reset the offsets of auditors" in ui.toast()
    ui.wait_number("tr[data-partition='audit/0'] .committed", 0)
    ui.wait_number("[data-test=lag]", 10)

    # A consumer of the group starts from the reset offset (not from "latest").
    again = consumer(broker, "auditors", **{"auto.offset.reset": "latest"})
    again.subscribe(["audit"])
    values = [m.value() for m in consume(again, 10)]
    again.close()
    assert values == [b"entry %d" % i for i in range(10)]


def test_store_page_shows_what_the_store_reports(ui, broker):
    ui.open("store")
    ui.wait(lambda: ui.text("[data-test=store-kind]") == broker.store, what="the store kind")
    if broker.store == "log":
        ui.wait(lambda: len(ui.finds("tr[data-table=segments]")) >= 5, what="segment rows")
        cells = ui.texts("tr[data-table=segments] td")
        assert "orders" in cells and "active" in cells, cells[:20]
    else:
        ui.wait(lambda: "records" in ui.texts("tr[data-table=tables] td"), what="the records table")
        ui.wait(lambda: "main" in ui.texts("tr[data-table=pools] td"), what="the pools")
        assert "append" in ui.texts("tr[data-table=calls] td")
    assert ui.number("[data-test=measured]") >= 5
    ui.shot("store")


def test_deleting_a_topic_asks_for_its_name(ui, broker):
    create_topic(broker, "scratch", 1)
    ui.open("topics/scratch")
    ui.wait(lambda: ui.finds("tr[data-partition]"), what="the topic")
    ui.click("#delete-topic")
    ui.wait(lambda: ui.d.execute_script("return document.getElementById('confirm').open"), what="the dialog")
    ui.find("#confirm-cancel").click()
    time.sleep(0.3)
    admin = AdminClient({"bootstrap.servers": broker.kafka_addr})
    assert "scratch" in admin.list_topics(timeout=10).topics, "cancel deleted the topic"
    ui.click("#delete-topic")
    ui.confirm(word="scratch")
    assert ui.toast() == "Deleted topic scratch"
    ui.wait(lambda: ui.d.current_url.endswith("#/topics"), what="the topics page")
    assert "scratch" not in admin.list_topics(timeout=10).topics


def test_pages_fit_a_phone_screen(ui, broker):
    restore = ui.phone()
    try:
        for route, ready, name in [
            ("overview", "[data-test=total-records]", "overview-phone"),
            ("messages?topic=orders&partition=0&offset=0&limit=5", ".record", "messages-phone"),
            ("groups/billing", "[data-test=lag]", "group-phone"),
            ("queues", "tr[data-queue=jobs]", None),
            ("topics/orders", "tr[data-partition]", None),
        ]:
            ui.open(route)
            ui.wait(lambda: ui.finds(ready), what=f"{route} on a phone")
            assert ui.no_horizontal_scroll(), f"{route} scrolls sideways on a phone (tables scroll inside)"
            if name:
                ui.shot(name)
    finally:
        restore()
