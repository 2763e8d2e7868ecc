"""Scenarios 8 and 9: several brokers over one PostgreSQL schema (a cluster); the broker that
coordinates the consumer group, or one that serves SQS receivers, is SIGKILLed and restarted
with its node id, again and again."""
import os
import random
import signal
import socket
import struct
import threading
import time
import urllib.request

from harness import (AckingProducer, Broker, ChaosError, check_log, kafka_frame, log,
                     parse_value, pct, read_response, read_topic)
from scen_pg import _kerr_ok

HEARTBEAT_MS = 500
LAPSE_MS = 3000
PARTITIONS = 6
# Kill cycles between two pauses of the coordinator; CHAOS_CLUSTER_PAUSE_EVERY=0 leaves the
# pauses out (to measure the kill cycles on their own).
PAUSE_EVERY = int(os.environ.get("CHAOS_CLUSTER_PAUSE_EVERY", "3"))


# ---------------------------------------------------------------- the cluster

class Cluster:
    """`n` postgres-store brokers with node ids 1..n on one fresh schema."""

    def __init__(self, ctx, n=3, partitions=PARTITIONS):
        if not ctx.database_url:
            raise ChaosError("the cluster scenarios need DATABASE_URL (a PostgreSQL the brokers share)")
        self.schema = "chaos_cl_" + os.urandom(5).hex()
        self.brokers = []
        for i in range(n):
            b = Broker(ctx, "postgres", partitions=partitions,
                       extra=["--node-id", str(i + 1),
                              "--cluster-heartbeat-ms", str(HEARTBEAT_MS),
                              "--cluster-lapse-ms", str(LAPSE_MS)])
            b.schema = self.schema
            b.node_id = i + 1
            self.brokers.append(b)
        self.restarts = []        # seconds from spawn to Metadata answered, per restart
        self.id_waits = []        # seconds a restart waited for the old registration to lapse
        self.metrics = {}         # metric -> sum over every incarnation read so far

    def start(self):
        for b in self.brokers:
            b.start()
            b.wait_http()

    def by_id(self, node_id):
        return next((b for b in self.brokers if b.node_id == node_id), None)

    def live(self):
        return [b for b in self.brokers if b.alive()]

    def bootstrap(self, first=0):
        """Every broker's address, starting with broker `first` (an index)."""
        bs = self.brokers[first:] + self.brokers[:first]
        return ",".join(b.bootstrap for b in bs)

    def read_metrics(self, b):
        """broker_coordinator_lost_total and broker_fenced_writes_total of `b`'s incarnation."""
        out = {}
        try:
            with urllib.request.urlopen(b.http_url + "/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return out
        for line in text.splitlines():
            for name in ("broker_coordinator_lost_total", "broker_fenced_writes_total"):
                if line.startswith(name + " "):
                    out[name] = int(float(line.split()[1]))
        return out

    def _bank(self, b):
        for k, v in self.read_metrics(b).items():
            self.metrics[k] = self.metrics.get(k, 0) + v

    def kill9(self, b):
        self._bank(b)   # counters of this incarnation, before they go with it
        b.kill9()

    def restart(self, b, timeout=60.0):
        """Starts `b` again with its node id; while its old registration has not lapsed the
        broker refuses to start ("node id N is held by a live broker"): wait and retry."""
        t0 = time.monotonic()
        while True:
            try:
                rec = b.start()
                break
            except ChaosError as e:
                held = "held by a live broker" in str(e)
                if not held or time.monotonic() - t0 > timeout:
                    raise
                time.sleep(0.2)
        self.id_waits.append(time.monotonic() - t0 - rec)
        self.restarts.append(rec)
        b.wait_http()
        return rec

    def final_metrics(self):
        for b in self.live():
            self._bank(b)
        return dict(self.metrics)

    def panics(self):
        return [f"broker {b.node_id}: {p}" for b in self.brokers for p in b.panicked()]

    def cleanup(self):
        for b in self.brokers:
            b.cleanup()


def _restarts(cl):
    """Restart times in words: spawn to Metadata answered (a broker restarted right after a
    crash may wait there for its old registration to lapse), and how long the scenario had
    to retry because the broker refused its node id."""
    if not cl.restarts:
        return "none"
    return (f"{min(cl.restarts):.1f}-{max(cl.restarts):.1f} s to answer Metadata, retried for the "
            f"node id up to {max(cl.id_waits):.1f} s")


# ---------------------------------------------------------------- Kafka consumer group

# Commit errors a member gets when the group rebalanced under it (Kafka's CommitFailed): the
# commit is refused and the records after the last commit are delivered again. Every
# coordinator move is such a rebalance here: members are not handed to the next coordinator,
# only the generation.
REBALANCE_ERRORS = {"UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS"}


class Tally:
    """What the group's members consumed and committed, with times."""

    def __init__(self):
        self.lock = threading.Lock()
        self.deliveries = []      # (monotonic, member, partition, offset, seq)
        self.commits = []         # (start, ack, member, partition, offset), successful only
        self.assigns = []         # (monotonic, member, [partitions]) before the offsets are read
        self.first = {}           # (partition, offset) -> first delivery time


class Member(threading.Thread):
    """A consumer-group member that commits synchronously every 100 messages and when idle,
    and once more for the partitions a rebalance takes away (then forgets them); every
    delivery, assignment and acknowledged commit goes into the shared tally."""

    def __init__(self, name, bootstrap, topic, group, run, tally):
        super().__init__(daemon=True)
        import confluent_kafka as ck
        self.ck = ck
        self.name = name
        self.c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                              "client.id": name,
                              "enable.auto.commit": False, "auto.offset.reset": "earliest",
                              "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
                              "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
                              "socket.connection.setup.timeout.ms": 3000,
                              "topic.metadata.refresh.interval.ms": 1000,
                              "fetch.wait.max.ms": 200,
                              "log_level": 2, "log.connection.close": False})
        self.topic, self.run_id, self.tally = topic, run, tally
        self.pending = {}
        self.bad = []
        self.bad_detail = []
        self.rebalance = []       # commits refused because the group rebalanced
        self.retried = []
        self.foreign = 0
        self.stop_ev = threading.Event()

    def _sort(self, err, where):
        name = err.name()
        if name in REBALANCE_ERRORS:
            self.rebalance.append(name)
        elif _kerr_ok(err):
            self.retried.append(name)
        else:
            self.bad.append(name)
            self.bad_detail.append(f"{time.strftime('%H:%M:%S')} {where}: {name}: {err.str()}")

    def _commit(self, pending):
        tps = [self.ck.TopicPartition(self.topic, p, o) for p, o in pending.items()]
        t0 = time.monotonic()
        try:
            res = self.c.commit(offsets=tps, asynchronous=False)
        except self.ck.KafkaException as e:
            self._sort(e.args[0], "commit")
            return False
        t1 = time.monotonic()
        ok = []
        for tp in res or []:
            if tp.error is None:
                ok.append((t0, t1, self.name, tp.partition, tp.offset))
            else:
                self._sort(tp.error, "commit")
        with self.tally.lock:
            self.tally.commits.extend(ok)
        return bool(ok)

    def _on_assign(self, consumer, parts):
        with self.tally.lock:
            self.tally.assigns.append((time.monotonic(), self.name, [tp.partition for tp in parts]))

    def _on_revoke(self, consumer, parts):
        gone = {tp.partition for tp in parts}
        mine = {p: o for p, o in self.pending.items() if p in gone}
        if mine:
            self._commit(mine)   # refused when the group already moved on: then redelivered
        self.pending = {p: o for p, o in self.pending.items() if p not in gone}

    def run(self):
        self.c.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        since = 0
        while not self.stop_ev.is_set():
            m = self.c.poll(0.2)
            if m is not None:
                if m.error():
                    self._sort(m.error(), "poll")
                    continue
                now = time.monotonic()
                parsed = parse_value(m.value())
                if parsed is None or not parsed[0].startswith(self.run_id):
                    self.foreign += 1
                    continue
                key = (m.partition(), m.offset())
                with self.tally.lock:
                    self.tally.deliveries.append((now, self.name, m.partition(), m.offset(), parsed[1]))
                    self.tally.first.setdefault(key, now)
                since += 1
                self.pending[m.partition()] = m.offset() + 1
            if self.pending and (since >= 100 or m is None):
                if self._commit(self.pending):
                    self.pending = {}
                    since = 0
                else:
                    time.sleep(0.1)
        try:
            self.c.close()
        except Exception:
            pass


def find_coordinator(port, group, timeout=2.0):
    """FindCoordinator v0 for `group` on one broker (a raw request: librdkafka's admin client
    can hit an assertion when a broker it knows is paused); (error code, node id)."""
    key = group.encode()
    body = struct.pack(">h", len(key)) + key
    corr = random.randint(1, 1 << 30)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(kafka_frame(10, 0, corr, body))
        got, data = read_response(s)
    if got != corr:
        raise ConnectionError(f"correlation id {got} != {corr}")
    err, node = struct.unpack(">hi", data[:6])
    return err, node


def coordinator_of(cluster, group, exclude=()):
    """The node id FindCoordinator names for `group`, asked of the live brokers (less the
    node ids in `exclude`, e.g. a paused one) in turn; None if none names one."""
    for b in cluster.live():
        if b.node_id in exclude:
            continue
        try:
            err, node = find_coordinator(b.kafka_port, group)
        except (OSError, ConnectionError, struct.error):
            continue
        if err == 0:
            return node
    return None


def _wait(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def _redeliveries_below_commit(tally):
    """Redeliveries that are not uncommitted work: a record delivered again to a member after
    an assignment although the group had committed (acknowledged) an offset past it before
    that assignment (the member then reads its start from the committed offsets)."""
    commits = {}    # partition -> [(ack time, offset)]
    for _, ack, _, p, off in tally.commits:
        commits.setdefault(p, []).append((ack, off))
    assigns = {}    # member -> [(time, partitions)] ascending
    for t, member, parts in sorted(tally.assigns, key=lambda a: a[0]):
        assigns.setdefault(member, []).append((t, set(parts)))
    bad = []
    seen = set()
    for t, member, p, off, seq in sorted(tally.deliveries):
        key = (p, off)
        if key not in seen:
            seen.add(key)
            continue
        t_a = max((ta for ta, parts in assigns.get(member, ()) if ta <= t and p in parts),
                  default=None)
        if t_a is None:
            continue
        top = max((o for a, o in commits.get(p, ()) if a < t_a), default=-1)
        if off < top:
            bad.append((member, p, off, top))
    return bad


def _generations(cluster, group):
    """The group's takeovers as the brokers logged them: (time, node, adopted generation,
    generation of the first rebalance it completed). The adopted generation is the one the
    previous coordinator saved; the next rebalance should complete above it."""
    import re
    events = []
    for b in cluster.brokers:
        for line in b.log_text().splitlines():
            if f'group="{group}"' not in line:
                continue
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            m = re.search(r"coordinating the group .*generation=(\d+)", line)
            if m:
                events.append((line[:27], b.node_id, "adopt", int(m.group(1))))
            m = re.search(r"join complete .*generation=(\d+)", line)
            if m:
                events.append((line[:27], b.node_id, "join", int(m.group(1))))
    out = []
    events.sort()
    for i, (t, node, kind, gen) in enumerate(events):
        if kind != "adopt":
            continue
        first = next((e for e in events[i + 1:] if e[1] == node and e[2] == "join"), None)
        out.append((t, node, gen, first[3] if first else None))
    return out


def kill9_coordinator(ctx):
    """SIGKILL the group's coordinator of a 3-broker cluster, cycle after cycle (and every
    third cycle, pause it with SIGSTOP past the lapse and let it go on)."""
    cycles = ctx.scale(3, 20)
    run = os.urandom(4).hex()
    topic = "chaos-cl-" + run
    group = "chaos-cl-group-" + run
    cl = Cluster(ctx)
    producers, members = [], []
    try:
        cl.start()
        rate = ctx.scale(300, 500)
        # two producers on one topic, told apart by their tags (run + p0, run + p1)
        producers = [AckingProducer(cl.bootstrap(i), topic, run + f"p{i}", rate_per_s=rate)
                     for i in range(2)]
        for p in producers:
            p.start()
        _wait(lambda: all(len(p.snapshot()[0]) > 0 for p in producers), 30)
        tally = Tally()
        members = [Member(f"m{i}", cl.bootstrap(i), topic, group, run, tally) for i in range(3)]
        for m in members:
            m.start()
        # The group must be consuming and committing before the first kill.
        if not _wait(lambda: len(tally.commits) > 0, 60):
            raise ChaosError("the consumer group never committed before the first kill")
        per_cycle = []
        problems = []
        kills = []
        rnd = random.Random(run)
        # Every `PAUSE_EVERY`th cycle pauses the coordinator (SIGSTOP) past the lapse instead,
        # then lets it go on (SIGCONT): it must not act for the group any more.
        kinds = []
        for i in range(cycles):
            kinds.append("kill")
            if PAUSE_EVERY and (i + 1) % PAUSE_EVERY == 0:
                kinds.append("pause")
        for i, kind in enumerate(kinds):
            coord = _wait(lambda: coordinator_of(cl, group), 30)
            b = cl.by_id(coord) if coord is not None else None
            if b is None or not b.alive():
                problems.append(f"cycle {i + 1}: no live coordinator named (got {coord})")
                break
            with tally.lock:
                n_del = len(tally.deliveries)
            if kind == "kill":
                cl.kill9(b)
            else:
                lost0 = cl.read_metrics(b)
                os.kill(b.pid(), signal.SIGSTOP)
            t_kill = time.monotonic()
            kills.append((t_kill, coord, kind))

            # Recovered: a commit sent after the kill was acknowledged (only a coordinator can
            # acknowledge one).
            def committed_after():
                with tally.lock:
                    return next((c for c in tally.commits if c[0] > t_kill), None)
            c = _wait(committed_after, 60, 0.05)
            t_commit = (c[1] - t_kill) if c else None
            new_coord = _wait(lambda: (lambda n: n if n not in (None, coord) else None)(
                coordinator_of(cl, group, exclude=(coord,))), 30)
            with tally.lock:
                consumed_after = len(tally.deliveries) - n_del
            rec = {"cycle": i + 1, "kind": kind, "coordinator": coord,
                   "new_coordinator": new_coord,
                   "recover_s": round(t_commit, 2) if t_commit is not None else None,
                   "delivered_meanwhile": consumed_after}
            if kind == "kill":
                restart = cl.restart(b)
                rec.update(restart_s=round(restart, 2), id_wait_s=round(cl.id_waits[-1], 2))
                what = f"restarted {coord} (waited {cl.id_waits[-1]:.1f}s for its id)"
            else:
                paused = time.monotonic() - t_kill
                os.kill(b.pid(), signal.SIGCONT)
                # The woken broker finds its registration lapsed; it must give the group up.
                def gave_up():
                    m = cl.read_metrics(b)
                    n = m.get("broker_coordinator_lost_total", 0) - lost0.get(
                        "broker_coordinator_lost_total", 0)
                    return (n, m) if n > 0 else None
                got = _wait(gave_up, 15, 0.2)
                m1 = got[1] if got else cl.read_metrics(b)
                rec.update(paused_s=round(paused, 2),
                           lost=m1.get("broker_coordinator_lost_total", 0)
                           - lost0.get("broker_coordinator_lost_total", 0),
                           fenced=m1.get("broker_fenced_writes_total", 0)
                           - lost0.get("broker_fenced_writes_total", 0))
                what = (f"resumed {coord} after {paused:.1f}s: coordinator_lost +{rec['lost']}, "
                        f"fenced_writes +{rec['fenced']}")
                if b.proc.poll() is not None:
                    problems.append(f"cycle {i + 1}: broker {coord} exited after SIGCONT: "
                                    f"{b.log_tail(3)}")
                    break
            per_cycle.append(rec)
            verb = "killed" if kind == "kill" else "paused"
            log(f"cycle {i + 1}/{len(kinds)}: {verb} coordinator {coord}; first commit "
                f"acknowledged {'never' if t_commit is None else f'{t_commit:.1f}s'} after it, "
                f"by {c[2] if c else '-'}; new coordinator {new_coord}; {what}")
            if t_commit is None:
                problems.append(f"cycle {i + 1}: no commit acknowledged within 60 s of the "
                                f"{kind} of coordinator {coord}")
                break
            time.sleep(rnd.uniform(1.0, 2.0))
        # Stop producing; the group must consume everything acknowledged.
        lefts = [p.stop(flush_timeout=45) for p in producers]
        acked = {}
        failed = {}
        fatal = []
        for i, p in enumerate(producers):
            a, f, errs = p.snapshot()
            acked.update({(run + f"p{i}", s): v for s, v in a.items()})
            failed.update({(run + f"p{i}", s): v for s, v in f.items()})
            fatal += [e for e in errs if e[2]]

        records, ends = read_topic(cl.live()[0].bootstrap, topic)
        # Log contents: every acknowledged message once, at its offset (idempotent producers
        # whose retries may go to another broker).
        log_problems = []
        gaps = 0
        for i in range(len(producers)):
            tag = run + f"p{i}"
            a = {s: v for (t, s), v in acked.items() if t == tag}
            res = check_log(records, ends, tag, a, exact_offsets=True)
            gaps = res["gaps"]
            if res["missing"]:
                log_problems.append(f"{len(res['missing'])} acknowledged messages of producer {i} "
                                    f"missing from the log (e.g. {res['missing'][:5]})")
            if res["dup_acked"]:
                log_problems.append(f"{len(res['dup_acked'])} acknowledged messages of producer "
                                    f"{i} in the log twice (e.g. {res['dup_acked'][:5]})")
            if res["moved"]:
                log_problems.append(f"{len(res['moved'])} acknowledged messages of producer {i} "
                                    f"not at their acknowledged offset")
            if res["corrupt"]:
                log_problems.append(f"{res['corrupt']} corrupt records")
        if gaps:
            log_problems.append(f"{gaps} offset gaps")
        want = {(v[0], v[1]) for (t, s), v in acked.items()}   # acknowledged (partition, offset)

        def missing_consumed():
            with tally.lock:
                got = set(tally.first)
            return want - got
        _wait(lambda: not missing_consumed(), 60, 0.5)
        not_consumed = missing_consumed()
        for m in members:
            m.stop_ev.set()
        for m in members:
            m.join(timeout=30)
        with tally.lock:
            deliveries = len(tally.deliveries)
            distinct = len(tally.first)
        dups = deliveries - distinct
        below = _redeliveries_below_commit(tally)
        metrics = cl.final_metrics()
        panics = cl.panics()
        if ctx.keep:
            import json
            path = os.path.join(cl.brokers[0].work, "tally.json")
            with open(path, "w") as f:
                json.dump({"kills": kills, "commits": tally.commits, "assigns": tally.assigns,
                           "deliveries": tally.deliveries}, f)
            log(f"tally in {path}")
        problems += log_problems
        if not acked:
            problems.append("no message was acknowledged")
        if not_consumed:
            problems.append(f"{len(not_consumed)} acknowledged records never consumed by the group "
                            f"(e.g. {sorted(not_consumed)[:5]})")
        if below:
            problems.append(f"{len(below)} records redelivered below an offset the group had "
                            f"committed (e.g. member, partition, offset, committed: {below[:3]})")
        bad = sorted({x for m in members for x in m.bad})
        if bad:
            detail = next((d for m in members for d in m.bad_detail), "?")
            problems.append(f"consumers saw non-retriable errors {bad} (first: {detail})")
        if any(lefts):
            problems.append(f"{sum(lefts)} produced messages never got a delivery report")
        if panics:
            problems.append(f"panic: {panics[0]}")
        rebal = sum(len(m.rebalance) for m in members)
        takeovers = _generations(cl, group)
        went_back = [t for t in takeovers if t[3] is not None and t[3] <= t[2]]
        n_kill = sum(1 for c in per_cycle if c["kind"] == "kill")
        pauses = [c for c in per_cycle if c["kind"] == "pause"]
        recs = [c["recover_s"] for c in per_cycle if c["recover_s"] is not None]
        summary = (f"{n_kill}/{cycles} coordinator SIGKILLs and {len(pauses)}/"
                   f"{kinds.count('pause')} pauses past the lapse (3 brokers, {PARTITIONS} "
                   f"partitions, lapse {LAPSE_MS} ms; paused brokers on waking: coordinator_lost "
                   f"+{sum(c['lost'] for c in pauses)}, fenced_writes "
                   f"+{sum(c['fenced'] for c in pauses)}); {len(acked)} acknowledged of "
                   f"{sum(p.sent for p in producers)} sent ({len(failed)} failed "
                   f"{sorted(set(failed.values()))[:3]}), log: "
                   f"{'see above' if log_problems else 'every acknowledged message once'}; "
                   f"group consumed "
                   f"{distinct} distinct records, {dups} duplicates "
                   f"({dups / max(1, distinct) * 100:.2f}%), {len(below)} below a committed offset; "
                   f"recovery (kill to first commit acknowledged) "
                   + (f"median {pct(recs, 0.5):.1f} / max {max(recs):.1f} s" if recs else "-")
                   + f"; restarts {_restarts(cl)}; "
                   f"coordinator_lost {metrics.get('broker_coordinator_lost_total', 0)}, "
                   f"fenced_writes {metrics.get('broker_fenced_writes_total', 0)}; "
                   f"fatal producer errors {len(fatal)}; commits refused by rebalances "
                   f"{rebal} {sorted({x for m in members for x in m.rebalance})}, retriable "
                   f"consumer errors {sorted({x for m in members for x in m.retried})[:5]}"
                   + (f"; NOTE: at {len(went_back)} of {len(takeovers)} takeovers the first "
                      f"rebalance did not complete above the adopted generation (node, adopted, "
                      f"completed: {[(t[1], t[2], t[3]) for t in went_back][:4]})"
                      if went_back else ""))
        details = {"cycles": per_cycle, "acked": len(acked), "failed": len(failed),
                   "consumed_distinct": distinct, "deliveries": deliveries, "duplicates": dups,
                   "below_commit": below[:20], "not_consumed": len(not_consumed),
                   "metrics": metrics, "restart_s": cl.restarts, "id_wait_s": cl.id_waits,
                   "panics": panics, "fatal_producer_errors": [e[1] for e in fatal][:10],
                   "consumer_retried": sorted({x for m in members for x in m.retried}),
                   "commits_refused_by_rebalance": rebal,
                   "takeovers": takeovers, "generation_went_back": len(went_back)}
        return not problems, "; ".join(problems + [summary]), details
    finally:
        for m in members:
            m.stop_ev.set()
        for p in producers:
            if p.producer is not None:
                p.stop_ev.set()
        for m in members:
            m.join(timeout=10)
        cl.cleanup()


# ---------------------------------------------------------------- SQS over the cluster

def _sqs_client(b):
    import boto3
    from botocore.config import Config
    return boto3.client("sqs", endpoint_url=b.http_url, region_name="us-east-1",
                        aws_access_key_id="chaos", aws_secret_access_key="chaos",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=2,
                                      read_timeout=10))


def _sqs_error(e):
    """('retriable' | 'refused', text) of a failed SQS call."""
    from botocore.exceptions import ClientError
    if isinstance(e, ClientError):
        st = e.response["ResponseMetadata"]["HTTPStatusCode"]
        code = e.response["Error"]["Code"]
        return ("retriable" if st >= 500 else "refused"), f"{st} {code}"
    return "retriable", type(e).__name__   # connection refused / reset / timeout


class SqsLedger:
    """Every SQS outcome of the scenario, with times."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = set()           # bodies with a MessageId returned
        self.attempted = set()      # bodies whose send failed (may or may not be stored)
        self.received = {}          # body -> list of (request start, receiver)
        self.deleted = {}           # body -> first delete acknowledged (monotonic)
        self.deletes_ok = 0
        self.came_back = set()      # received by a request started after its delete's ack
        self.abandoned = {}         # body -> when its receiver gave it up (broker down)
        self.unsure = set()         # deletes whose call failed after it may have been done
        self.errors = {}            # "where: text" -> count
        self.refused = {}           # 4xx answers -> count

    def error(self, where, kind, text):
        with self.lock:
            d = self.refused if kind == "refused" else self.errors
            key = f"{where}: {text}"
            d[key] = d.get(key, 0) + 1


MAX_BACKLOG = 300   # sent and not yet deleted: the sender waits above it


class SqsSender(threading.Thread):
    """SendMessageBatch of 10 numbered bodies every 100 ms through one broker, while fewer
    than MAX_BACKLOG sent messages wait to be deleted."""

    def __init__(self, b, qurl, run, ledger):
        super().__init__(daemon=True)
        self.sqs = _sqs_client(b)
        self.qurl, self.run_id, self.ledger = qurl, run, ledger
        self.stop_ev = threading.Event()
        self.n = 0

    def run(self):
        while not self.stop_ev.is_set():
            with self.ledger.lock:
                backlog = len(self.ledger.sent) - len(self.ledger.deleted)
            if backlog > MAX_BACKLOG:   # keep pace with the receivers
                time.sleep(0.05)
                continue
            bodies = [f"{self.run_id}:{self.n + i}" for i in range(10)]
            self.n += 10
            try:
                r = self.sqs.send_message_batch(QueueUrl=self.qurl, Entries=[
                    {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)])
                ok = {bodies[int(e["Id"])] for e in r.get("Successful", [])}
                with self.ledger.lock:
                    self.ledger.sent |= ok
                    self.ledger.attempted |= set(bodies) - ok
                for e in r.get("Failed", []):
                    self.ledger.error("send", "retriable" if not e.get("SenderFault") else "refused",
                                      e.get("Code", "?"))
            except Exception as e:
                with self.ledger.lock:
                    self.ledger.attempted |= set(bodies)
                self.ledger.error("send", *_sqs_error(e))
                time.sleep(0.2)
            time.sleep(0.1)


class SqsReceiver(threading.Thread):
    """Long-polls one broker (ReceiveMessage of 10, 1 s wait, 4 s visibility), keeps the
    messages in flight for 0.1-0.6 s, then deletes them through the same broker. When that
    broker is down, half of the messages (by body) are deleted through `fallback` brokers (a
    receipt handle works on any broker) and the other half are abandoned in flight: they must
    come back after the visibility timeout and be received again."""

    def __init__(self, name, b, fallback, qurl, ledger, seed):
        super().__init__(daemon=True)
        self.name = name
        self.b = b
        self.sqs = _sqs_client(b)
        self.fallback = [(fb, _sqs_client(fb)) for fb in fallback]
        self.qurl, self.ledger = qurl, ledger
        self.rnd = random.Random(seed)
        self.stop_ev = threading.Event()
        self.deletes_elsewhere = 0

    def _delete_msg(self, m):
        body = m["Body"]
        fall = int(body.rsplit(":", 1)[1]) % 2 == 0
        clients = [(self.b, self.sqs)] + (self.fallback if fall else [])
        unsure = False    # a call failed after it may have reached the broker
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not fall and not self.b.alive():
                with self.ledger.lock:
                    if unsure:
                        self.ledger.unsure.add(body)
                    else:
                        self.ledger.abandoned.setdefault(body, time.monotonic())
                return False
            for b, c in clients:
                if not b.alive():
                    continue
                try:
                    c.delete_message(QueueUrl=self.qurl, ReceiptHandle=m["ReceiptHandle"])
                except Exception as e:
                    kind, text = _sqs_error(e)
                    self.ledger.error(f"delete via {b.node_id}", kind, text)
                    if kind == "refused":
                        if unsure:
                            with self.ledger.lock:
                                self.ledger.unsure.add(body)
                        return False
                    unsure = True
                    continue
                if b is not self.b:
                    self.deletes_elsewhere += 1
                with self.ledger.lock:
                    self.ledger.deletes_ok += 1
                    self.ledger.deleted.setdefault(body, time.monotonic())
                return True
            time.sleep(0.2)
        with self.ledger.lock:
            self.ledger.unsure.add(body)
        return False

    def run(self):
        while not self.stop_ev.is_set():
            if not self.b.alive():
                time.sleep(0.1)
                continue
            t0 = time.monotonic()
            try:
                r = self.sqs.receive_message(QueueUrl=self.qurl, MaxNumberOfMessages=10,
                                             VisibilityTimeout=4, WaitTimeSeconds=1)
            except Exception as e:
                self.ledger.error(f"receive via {self.b.node_id}", *_sqs_error(e))
                time.sleep(0.1)
                continue
            msgs = r.get("Messages", [])
            with self.ledger.lock:
                for m in msgs:
                    body = m["Body"]
                    self.ledger.received.setdefault(body, []).append((t0, self.name))
                    d = self.ledger.deleted.get(body)
                    if d is not None and d < t0:
                        self.ledger.came_back.add(body)
            if msgs:
                time.sleep(self.rnd.uniform(0.1, 0.6))   # in flight
            for m in msgs:
                self._delete_msg(m)


def sqs_kill9(ctx):
    """SQS senders via broker 1, receivers and deleters via brokers 2 and 3; a receiving
    broker is SIGKILLed in each cycle and restarted with its node id."""
    cycles = ctx.scale(3, 20)
    run = os.urandom(4).hex()
    cl = Cluster(ctx, partitions=2)
    threads = []
    try:
        cl.start()
        b1, b2, b3 = cl.brokers
        ledger = SqsLedger()
        admin = _sqs_client(b1)
        qurl = admin.create_queue(QueueName="chaos-clq-" + run)["QueueUrl"]
        sender = SqsSender(b1, qurl, run, ledger)
        receivers = [SqsReceiver("r2", b2, [b3, b1], qurl, ledger, run + "2"),
                     SqsReceiver("r3", b3, [b2, b1], qurl, ledger, run + "3")]
        threads = [sender] + receivers
        for t in threads:
            t.start()
        if not _wait(lambda: ledger.deletes_ok > 0, 30):
            raise ChaosError(f"no SQS message was deleted before the first kill: {ledger.errors}")
        rnd = random.Random(run)
        per_cycle = []
        for i in range(cycles):
            time.sleep(rnd.uniform(1.0, 2.5))
            victim = (b2, b3)[i % 2]
            with ledger.lock:
                d0 = ledger.deletes_ok
            t_kill = time.monotonic()
            cl.kill9(victim)
            time.sleep(rnd.uniform(0.5, 1.5))
            with ledger.lock:
                d_down = ledger.deletes_ok - d0
            restart = cl.restart(victim)
            per_cycle.append({"cycle": i + 1, "killed": victim.node_id,
                              "down_s": round(time.monotonic() - t_kill, 2),
                              "deleted_while_down": d_down, "restart_s": round(restart, 2),
                              "id_wait_s": round(cl.id_waits[-1], 2)})
            log(f"cycle {i + 1}/{cycles}: killed broker {victim.node_id}, down "
                f"{per_cycle[-1]['down_s']:.1f}s (waited {cl.id_waits[-1]:.1f}s for its id), "
                f"{d_down} deletes meanwhile; sent {len(ledger.sent)}, deleted {len(ledger.deleted)}")
        sender.stop_ev.set()
        sender.join(timeout=30)
        # The receivers drain what is left (in-flight messages come back after 4 s).
        with ledger.lock:
            sent = set(ledger.sent)
        _wait(lambda: sent <= set(ledger.deleted), 60, 0.5)
        for r in receivers:
            r.stop_ev.set()
        for r in receivers:
            r.join(timeout=30)
        with ledger.lock:
            sent = set(ledger.sent)
            attempted = set(ledger.attempted)
            deleted = dict(ledger.deleted)
            received = dict(ledger.received)
            came_back = set(ledger.came_back)
            abandoned = dict(ledger.abandoned)
            unsure = set(ledger.unsure)
        # Abandoned in flight: received again by a request started after they were given up.
        not_again = [b for b, t in abandoned.items()
                     if not any(t0 > t for t0, _ in received.get(b, ()))]
        # What is still in the queue (through broker 1): whatever the receivers left, once
        # the last in-flight messages are visible again.
        leftover = set()
        want = sent - set(deleted) - unsure
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not want <= leftover:
            try:
                r = admin.receive_message(QueueUrl=qurl, MaxNumberOfMessages=10,
                                          VisibilityTimeout=30, WaitTimeSeconds=1)
            except Exception as e:
                ledger.error("drain", *_sqs_error(e))
                continue
            for m in r.get("Messages", []):
                leftover.add(m["Body"])
                admin.delete_message(QueueUrl=qurl, ReceiptHandle=m["ReceiptHandle"])
        lost = sent - set(deleted) - leftover - unsure
        not_deleted = sent - set(deleted) - unsure
        foreign = (set(received) | leftover) - sent - attempted
        redelivered = sum(len(v) - 1 for v in received.values())
        metrics = cl.final_metrics()
        panics = cl.panics()
        problems = []
        if not sent:
            problems.append("nothing was sent")
        if lost:
            problems.append(f"{len(lost)} sent messages lost (e.g. {sorted(lost)[:3]})")
        if not_deleted - lost:
            problems.append(f"{len(not_deleted - lost)} sent messages were not deleted by the "
                            f"receivers within 60 s of the end (drained from the queue after)")
        if came_back:
            problems.append(f"{len(came_back)} deleted messages were received again "
                            f"(e.g. {sorted(came_back)[:3]})")
        if foreign:
            problems.append(f"{len(foreign)} unknown messages")
        if not_again:
            problems.append(f"{len(not_again)} messages abandoned in flight were not received "
                            f"again (e.g. {sorted(not_again)[:3]})")
        unexpected = {k: v for k, v in ledger.refused.items()
                      if "ReceiptHandleIsInvalid" not in k and "InvalidParameterValue" not in k}
        if unexpected:
            problems.append(f"SQS calls refused (4xx): {unexpected}")
        if panics:
            problems.append(f"panic: {panics[0]}")
        elsewhere = sum(r.deletes_elsewhere for r in receivers)
        summary = (f"{len(per_cycle)}/{cycles} SIGKILLs of a receiving broker (3 brokers); "
                   f"{len(sent)} sent via broker 1 ({len(attempted)} sends failed), "
                   f"{len(deleted)} received and deleted via brokers 2/3 ({elsewhere} deletes "
                   f"through another broker than the receive), {len(abandoned)} abandoned in "
                   f"flight while their broker was down ({len(abandoned) - len(not_again)} came "
                   f"back after the visibility timeout), {len(unsure)} deletes cut off by a kill "
                   f"(done or not: {len(unsure & leftover)} were still in the queue), "
                   f"{redelivered} redeliveries, "
                   f"{len(lost)} lost, {len(came_back)} came back after delete, "
                   f"{len(leftover)} left at the end; restarts {_restarts(cl)}; retriable errors "
                   f"{sorted(ledger.errors)[:4]}; refused {sorted(ledger.refused)[:3]}")
        details = {"cycles": per_cycle, "sent": len(sent), "attempted": len(attempted),
                   "deleted": len(deleted), "deletes_ok": ledger.deletes_ok,
                   "redeliveries": redelivered, "lost": sorted(lost)[:20],
                   "came_back": sorted(came_back)[:20], "leftover": len(leftover),
                   "deletes_elsewhere": elsewhere, "abandoned": len(abandoned),
                   "abandoned_not_received_again": sorted(not_again)[:20],
                   "unsure_deletes": len(unsure), "errors": ledger.errors,
                   "refused": ledger.refused, "metrics": metrics, "panics": panics,
                   "restart_s": cl.restarts, "id_wait_s": cl.id_waits}
        return not problems, "; ".join(problems + [summary]), details
    finally:
        for t in threads:
            t.stop_ev.set()
        for t in threads:
            t.join(timeout=10)
        cl.cleanup()
