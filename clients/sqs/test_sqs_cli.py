"""Smoke test with the aws command-line client."""
import json
import os
import subprocess
import sys


def aws(broker, *args):
    exe = os.path.join(os.path.dirname(sys.executable), "aws")
    if not os.path.exists(exe):
        raise AssertionError(f"aws cli not found at {exe}: scripts/setup-clients installs it")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1")
    p = subprocess.run([exe, "--endpoint-url", broker.http_url, "--output", "json", "sqs", *args],
                       capture_output=True, timeout=120, env=env)
    if p.returncode != 0:
        raise AssertionError(f"aws sqs {args} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    out = p.stdout.decode()
    return json.loads(out) if out.strip() else {}


def test_cli_smoke(broker, unique_name):
    name = unique_name("cli")
    url = aws(broker, "create-queue", "--queue-name", name)["QueueUrl"]
    sent = aws(broker, "send-message", "--queue-url", url, "--message-body", "hello from the cli")
    got = aws(broker, "receive-message", "--queue-url", url, "--attribute-names", "All")
    (m,) = got["Messages"]
    assert m["Body"] == "hello from the cli"
    assert m["MessageId"] == sent["MessageId"]
    aws(broker, "delete-message", "--queue-url", url, "--receipt-handle", m["ReceiptHandle"])
    attrs = aws(broker, "get-queue-attributes", "--queue-url", url, "--attribute-names", "All")
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert url in aws(broker, "list-queues", "--queue-name-prefix", name)["QueueUrls"]
    aws(broker, "delete-queue", "--queue-url", url)
