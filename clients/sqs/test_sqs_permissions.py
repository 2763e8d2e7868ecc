"""Behaviour 10: AddPermission and RemovePermission, reflected in the queue's Policy as AWS
builds it (statements with Sid = Label, AWS account root ARNs, SQS:<action>, the queue ARN)."""
import json
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

from sqsutil import aws_cli, code_of, message_of, queue_arn


def policy_of(sqs, url):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {})
    return json.loads(attrs["Policy"]) if "Policy" in attrs else None


def test_permissions_build_the_policy(sqs, queue):
    url = queue("perm")
    arn = queue_arn(sqs, url)
    assert policy_of(sqs, url) is None
    sqs.add_permission(QueueUrl=url, Label="both", AWSAccountIds=["111111111111", "222222222222"],
                       Actions=["SendMessage", "ReceiveMessage"])
    sqs.add_permission(QueueUrl=url, Label="one", AWSAccountIds=["333333333333"], Actions=["*"])
    assert policy_of(sqs, url) == {
        "Version": "2008-10-17",
        "Id": f"{arn}/SQSDefaultPolicy",
        "Statement": [
            {"Sid": "both", "Effect": "Allow",
             "Principal": {"AWS": ["arn:aws:iam::111111111111:root", "arn:aws:iam::222222222222:root"]},
             "Action": ["SQS:SendMessage", "SQS:ReceiveMessage"], "Resource": arn},
            {"Sid": "one", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
             "Action": "SQS:*", "Resource": arn},
        ],
    }
    with pytest.raises(ClientError) as e:
        sqs.add_permission(QueueUrl=url, Label="both", AWSAccountIds=["111111111111"],
                           Actions=["SendMessage"])
    assert (code_of(e), message_of(e)) == (
        "InvalidParameterValue", "Value both for parameter Label is invalid. Reason: Already exists.")

    sqs.remove_permission(QueueUrl=url, Label="both")
    assert [s["Sid"] for s in policy_of(sqs, url)["Statement"]] == ["one"]
    with pytest.raises(ClientError) as e:
        sqs.remove_permission(QueueUrl=url, Label="both")
    assert (code_of(e), message_of(e)) == (
        "InvalidParameterValue", "Value both for parameter Label is invalid. Reason: can't find label.")
    sqs.remove_permission(QueueUrl=url, Label="one")
    # No statement left: the queue has no Policy, as on AWS.
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])


def test_permission_errors(sqs, queue):
    url = queue("permerr")

    def add(**kw):
        kw.setdefault("Label", "l")
        kw.setdefault("AWSAccountIds", ["111111111111"])
        kw.setdefault("Actions", ["SendMessage"])
        with pytest.raises(ClientError) as e:
            sqs.add_permission(QueueUrl=url, **kw)
        return code_of(e), message_of(e)

    assert add(Actions=["Fly"]) == (
        "InvalidParameterValue",
        "Value SQS:Fly for parameter ActionName is invalid. Reason: Please refer to the "
        "appropriate WSDL for a list of valid actions. ")
    assert add(Actions=["CreateQueue"]) == (
        "InvalidParameterValue",
        "Value SQS:CreateQueue for parameter ActionName is invalid. Reason: Only the queue owner "
        "is allowed to invoke this action.")
    assert add(Actions=["SendMessage"] * 8) == ("OverLimit", "8 Actions were found, maximum allowed is 7.")
    assert add(AWSAccountIds=["12345"]) == (
        "InvalidParameterValue", "Value 12345 for parameter PrincipalId is invalid. Reason: Unable to verify.")
    code, text = add(Label="has space")
    assert code == "InvalidParameterValue" and text.startswith("Value has space for parameter Label is invalid.")
    assert policy_of(sqs, url) is None, "refused requests change nothing"


def test_permissions_with_the_cli_and_the_query_protocol(sqs, broker, queue):
    url = queue("permcli")
    aws_cli(broker, "add-permission", "--queue-url", url, "--label", "cli",
            "--aws-account-ids", "111111111111", "--actions", "GetQueueUrl", "DeleteMessage")
    body = urllib.parse.urlencode({
        "Action": "AddPermission", "QueueUrl": url, "Label": "query",
        "AWSAccountId.1": "222222222222", "ActionName.1": "ReceiveMessage"}).encode()
    req = urllib.request.Request(broker.http_url + "/", data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200 and b"<AddPermissionResponse" in r.read()
    statements = {s["Sid"]: s for s in policy_of(sqs, url)["Statement"]}
    assert statements["cli"]["Action"] == ["SQS:GetQueueUrl", "SQS:DeleteMessage"]
    assert statements["query"]["Principal"] == {"AWS": "arn:aws:iam::222222222222:root"}
    aws_cli(broker, "remove-permission", "--queue-url", url, "--label", "cli")
    assert list(s["Sid"] for s in policy_of(sqs, url)["Statement"]) == ["query"]


def test_policy_quotas(sqs, queue):
    url = queue("permquota")
    for i in range(20):
        sqs.add_permission(QueueUrl=url, Label=f"s{i}", AWSAccountIds=["111111111111"], Actions=["*"])
    with pytest.raises(ClientError) as e:
        sqs.add_permission(QueueUrl=url, Label="s20", AWSAccountIds=["111111111111"], Actions=["*"])
    assert code_of(e) == "OverLimit" and "20" in message_of(e)
    assert len(policy_of(sqs, url)["Statement"]) == 20
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({"x": "y" * 9000})})
    assert code_of(e) == "InvalidAttributeValue" and "8192" in message_of(e)
