"""The cross-client scenario with KafkaJS (pure JavaScript): clients/js/scenario.test.mjs, run
under node's test runner one test at a time against this session's broker, so every step of
the scenario is a pytest test of its own.

KafkaJS installs (scripts/setup-clients): the pinned one in clients/js/node_modules (npm ci),
and, when npm's newest kafkajs differs from it, that one in clients/js/latest/node_modules
(clients/js/latest/newest-version names npm's newest)."""
import json
import os
import re
import shutil
import subprocess

import pytest

from brokerproc import ROOT

JS = os.path.join(ROOT, "clients", "js")
SCRIPT = os.path.join(JS, "scenario.test.mjs")
PINNED = os.path.join(JS, "node_modules", "kafkajs")
LATEST = os.path.join(JS, "latest", "node_modules", "kafkajs")
NEWEST_FILE = os.path.join(JS, "latest", "newest-version")


def package_version(d):
    with open(os.path.join(d, "package.json")) as f:
        return json.load(f)["version"]


def installs():
    """(id, kafkajs dir) for the pinned kafkajs and, if npm's newest differs, the newest."""
    out = [("pinned", PINNED)]
    if os.path.exists(NEWEST_FILE):
        with open(NEWEST_FILE) as f:
            newest = f.read().strip()
        with open(os.path.join(JS, "package.json")) as f:
            pinned = json.load(f)["dependencies"]["kafkajs"]
        if newest != pinned:
            out.append(("newest", LATEST))
    return out


def node_tests():
    """The test names of scenario.test.mjs, in file order."""
    with open(SCRIPT) as f:
        return re.findall(r"^test\('([^']+)'", f.read(), re.M)


@pytest.mark.parametrize("name", node_tests())
@pytest.mark.parametrize("kind,kafkajs", installs(), ids=[k for k, _ in installs()])
def test_kafkajs(broker, kind, kafkajs, name):
    node = shutil.which("node")
    assert node, "node is not installed (Node 20 is expected on the machine)"
    assert os.path.exists(os.path.join(kafkajs, "package.json")), \
        f"kafkajs ({kind}) is not installed at {kafkajs}: run scripts/setup-clients"
    env = dict(os.environ, KAFKA_BROKER=broker.kafka_addr, KAFKAJS_DIR=kafkajs)
    # --test-force-exit: a failed test may leave a client retrying; the run must still end.
    cmd = [node, "--test", "--test-force-exit", "--test-reporter=tap", f"--test-name-pattern=^{re.escape(name)}$",
           SCRIPT]
    try:
        p = subprocess.run(cmd, cwd=JS, env=env, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"kafkajs '{name}' still running after 90 s:\n{e.stdout}\n{e.stderr}") from None
    # The tests the pattern left out are reported as skipped: leave them out of the message.
    out = re.sub(r"^ok \d+ - .* # SKIP test name does not match pattern\n(  duration_ms: .*\n)?", "",
                 p.stdout + p.stderr, flags=re.M)
    # Fail loudly: the run must pass exactly the one selected test and fail none.
    assert p.returncode == 0 and re.search(r"^# pass 1$", p.stdout, re.M) \
        and re.search(r"^# fail 0$", p.stdout, re.M), \
        f"kafkajs {package_version(kafkajs)} '{name}' failed (exit {p.returncode}):\n{out}\n" \
        f"broker log:\n{broker.log_tail(30)}"
