"""SigV4: with credentials configured, only correctly signed requests are served."""
import pytest
from botocore.exceptions import ClientError

from sqsutil import sqs_client

KEY_ID = "AKIDBROKERTEST"
SECRET = "right-secret"


def test_signatures_are_verified_when_credentials_are_configured(fresh_broker, monkeypatch, unique_name):
    monkeypatch.setenv("BROKER_SQS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("BROKER_SQS_SECRET_ACCESS_KEY", SECRET)
    fresh_broker.restart()

    good = sqs_client(fresh_broker, KEY_ID, SECRET)
    url = good.create_queue(QueueName=unique_name("signed"))["QueueUrl"]
    good.send_message(QueueUrl=url, MessageBody="signed")
    assert [m["Body"] for m in good.receive_message(QueueUrl=url)["Messages"]] == ["signed"]

    wrong = sqs_client(fresh_broker, KEY_ID, "wrong-secret")
    try:
        wrong.send_message(QueueUrl=url, MessageBody="forged")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "SignatureDoesNotMatch"
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    else:
        pytest.fail("a request signed with the wrong secret was accepted: is BROKER_SQS_* read by the binary?")

    unknown = sqs_client(fresh_broker, "AKIDSOMEONEELSE", SECRET)
    with pytest.raises(ClientError) as e:
        unknown.get_queue_url(QueueName=url.rsplit("/", 1)[1])
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"
    attrs = good.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
