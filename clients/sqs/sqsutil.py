"""Helpers shared by the SQS client tests (real clients only; no mocks)."""
import json
import os
import subprocess
import sys
import time

import boto3
from botocore.config import Config


def sqs_client(broker, access_key="test", secret_key="test", region="us-east-1"):
    """A boto3 SQS client for the broker's HTTP API (no retries, so errors show at once)."""
    return boto3.client(
        "sqs",
        endpoint_url=broker.http_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )


def code_of(exc_info):
    return exc_info.value.response["Error"]["Code"]


def message_of(exc_info):
    return exc_info.value.response["Error"]["Message"]


def status_of(exc_info):
    return exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def queue_arn(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def wait_for(what, check, timeout=30.0, every=0.2):
    """Polls `check()` until it returns something truthy; fails naming `what` after `timeout`."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def aws_cli(broker, *args, region="us-east-1", check=True):
    """Runs `aws --endpoint-url <broker> --output json sqs <args>` with dummy credentials;
    returns the parsed JSON output (or, with check=False, the CompletedProcess)."""
    exe = os.path.join(os.path.dirname(sys.executable), "aws")
    if not os.path.exists(exe):
        raise AssertionError(f"aws cli not found at {exe}: scripts/setup-clients installs it")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION=region)
    p = subprocess.run([exe, "--endpoint-url", broker.http_url, "--output", "json", "sqs", *args],
                       capture_output=True, timeout=120, env=env)
    if not check:
        return p
    if p.returncode != 0:
        raise AssertionError(f"aws sqs {args} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    out = p.stdout.decode()
    return json.loads(out) if out.strip() else {}
