"""Standard queues through boto3: send, receive, visibility, delete, DLQ, long poll."""
import hashlib
import threading
import time


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def receive(sqs, url, **kw):
    kw.setdefault("MaxNumberOfMessages", 10)
    kw.setdefault("MessageSystemAttributeNames", ["All"])
    kw.setdefault("MessageAttributeNames", ["All"])
    return sqs.receive_message(QueueUrl=url, **kw).get("Messages", [])


def test_create_get_list_delete(sqs, unique_name):
    name = unique_name("life")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert url.endswith("/" + name)
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "30"
    assert attrs["QueueArn"].endswith(":" + name)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "45"})
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "45"}
    sqs.delete_queue(QueueUrl=url)
    assert name not in " ".join(sqs.list_queues(QueueNamePrefix=name).get("QueueUrls", []))


def test_batch_send_receive_delete(sqs, queue):
    url = queue("batch")
    entries = [{"Id": f"m{i}", "MessageBody": f"body-{i}",
                "MessageAttributes": {"n": {"DataType": "Number", "StringValue": str(i)}}}
               for i in range(10)]
    r = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert len(r["Successful"]) == 10 and not r.get("Failed")
    for ok in r["Successful"]:
        assert ok["MD5OfMessageBody"] == md5(f"body-{ok['Id'][1:]}")
    got = receive(sqs, url)
    assert sorted(m["Body"] for m in got) == sorted(f"body-{i}" for i in range(10))
    sent_attr_md5 = {ok["MessageId"]: ok["MD5OfMessageAttributes"] for ok in r["Successful"]}
    for m in got:
        assert m["MD5OfBody"] == md5(m["Body"])
        assert m["MD5OfMessageAttributes"] == sent_attr_md5[m["MessageId"]]
        assert m["MessageAttributes"]["n"]["StringValue"] == m["Body"].split("-")[1]
    d = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    assert len(d["Successful"]) == 10
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_message_reappears_after_visibility_timeout(sqs, queue):
    url = queue("vis")
    sqs.send_message(QueueUrl=url, MessageBody="again")
    first = receive(sqs, url, VisibilityTimeout=1)
    assert [m["Body"] for m in first] == ["again"]
    assert first[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    assert receive(sqs, url) == []
    time.sleep(1.3)
    second = receive(sqs, url, VisibilityTimeout=30)
    assert [m["Body"] for m in second] == ["again"]
    assert second[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second[0]["ReceiptHandle"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_change_message_visibility(sqs, queue):
    url = queue("cmv")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    (m,) = receive(sqs, url, VisibilityTimeout=30)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    (again,) = receive(sqs, url, VisibilityTimeout=1)
    assert again["Body"] == "m"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"], VisibilityTimeout=60)
    time.sleep(1.3)
    assert receive(sqs, url) == []
    r = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "a", "ReceiptHandle": again["ReceiptHandle"], "VisibilityTimeout": 0}])
    assert [e["Id"] for e in r["Successful"]] == ["a"]
    assert [x["Body"] for x in receive(sqs, url)] == ["m"]


def test_dead_letter_queue_after_max_receive_count(sqs, queue):
    dlq = queue("dlq")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    import json
    url = queue("src", VisibilityTimeout=1,
                RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}))
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for n in (1, 2):
        (m,) = receive(sqs, url)
        assert m["Attributes"]["ApproximateReceiveCount"] == str(n)
        time.sleep(1.2)
    assert receive(sqs, url) == []
    moved = receive(sqs, dlq)
    assert [m["Body"] for m in moved] == ["poison"]
    assert moved[0]["Attributes"]["DeadLetterQueueSourceArn"].endswith(url.rsplit("/", 1)[1])


def test_delay_seconds_per_message(sqs, queue):
    url = queue("delay")
    sqs.send_message(QueueUrl=url, MessageBody="late", DelaySeconds=1)
    sqs.send_message(QueueUrl=url, MessageBody="now")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert [m["Body"] for m in receive(sqs, url)] == ["now"]
    time.sleep(1.2)
    assert [m["Body"] for m in receive(sqs, url)] == ["late"]


def test_long_poll_returns_when_a_message_arrives(sqs, queue, broker):
    from sqsutil import sqs_client
    url = queue("poll")
    result = {}

    def poll():
        result["messages"] = receive(sqs_client(broker), url, WaitTimeSeconds=20)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the long poll returned before any message was sent"
    sqs.send_message(QueueUrl=url, MessageBody="wake")
    t.join(timeout=15)
    assert not t.is_alive(), "the long poll did not return after a message arrived"
    assert [m["Body"] for m in result["messages"]] == ["wake"]


def test_purge_queue(sqs, queue):
    url = queue("purge")
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(5)])
    sqs.purge_queue(QueueUrl=url)
    assert receive(sqs, url) == []


def test_metrics_and_health(sqs, queue, broker):
    import urllib.request
    url = queue("metered")
    sqs.send_message(QueueUrl=url, MessageBody="x")
    name = url.rsplit("/", 1)[1]
    text = urllib.request.urlopen(broker.http_url + "/metrics", timeout=10).read().decode()
    assert f'broker_queue_messages{{queue="{name}",state="visible"}} 1' in text
    assert 'broker_sqs_request_duration_seconds_count{action="SendMessage"}' in text
    assert f'broker_topic_appended_records_total{{topic="{name}"}} 1' in text
    assert urllib.request.urlopen(broker.http_url + "/healthz", timeout=10).status == 200
