"""Smoke test with the aws command-line client."""
import json
import os
import subprocess
import sys

import pytest


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


def copy_paste_commands(path):
    """The `AWS_...=x ... aws --endpoint-url http://127.0.0.1:9324 sqs ...` commands of a doc,
    each joined over its backslash-continued lines."""
    from brokerproc import ROOT
    lines = open(os.path.join(ROOT, path)).read().splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip().startswith("AWS_ACCESS_KEY_ID="):
            cmd = line.strip()
            j = i
            while cmd.endswith("\\"):
                j += 1
                cmd = cmd[:-1] + " " + lines[j].strip()
            out.append(cmd)
    return out


@pytest.mark.parametrize("doc", ["README.md", "docs/sqs-compatibility.md"])
def test_documented_command_works_on_a_fresh_machine(broker, unique_name, doc, tmp_path):
    import shlex
    cmds = copy_paste_commands(doc)
    assert cmds, f"{doc} shows no copy-paste aws cli command"
    for cmd in cmds:
        assert "AWS_DEFAULT_REGION=" in cmd or "AWS_REGION=" in cmd, cmd
        assert "127.0.0.1:9324" in cmd, cmd
        name = unique_name("doc")
        cmd = cmd.replace("http://127.0.0.1:9324", broker.http_url).replace(
            "--queue-name orders", f"--queue-name {name}")
        # A fresh machine: no AWS settings in the environment, no ~/.aws.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["HOME"] = str(tmp_path)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        p = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=120, env=env)
        assert p.returncode == 0, f"{shlex.quote(cmd)}: {p.stderr.decode(errors='replace')}"
        assert json.loads(p.stdout)["QueueUrl"].endswith("/" + name)
