"""Scenario 3: PostgreSQL restarted with `-m immediate` under produce, consume and SQS
lease/ack load (postgres store)."""
import os
import subprocess
import threading
import time

from harness import AckingProducer, Broker, ChaosError, check_log, log, read_topic

# Kafka errors a client may see while the database is away: all retriable by the protocol.
RETRIABLE_KAFKA = {
    "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "REQUEST_TIMED_OUT",
    "KAFKA_STORAGE_ERROR", "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR",
    "COORDINATOR_LOAD_IN_PROGRESS", "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION",
    "REBALANCE_IN_PROGRESS", "NETWORK_EXCEPTION", "_TRANSPORT", "_TIMED_OUT",
    "_ALL_BROKERS_DOWN", "UNKNOWN_LEADER_EPOCH", "_PARTITION_EOF", "_NO_OFFSET",
}


def _kerr_ok(err):
    return err.retriable() or err.name() in RETRIABLE_KAFKA


class GroupConsumer(threading.Thread):
    """A consumer-group member committing synchronously every 100 messages."""

    def __init__(self, bootstrap, topic, group, run):
        super().__init__(daemon=True)
        import confluent_kafka as ck
        self.ck = ck
        self.c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                              "enable.auto.commit": False, "auto.offset.reset": "earliest",
                              "session.timeout.ms": 30000, "log_level": 2,
                              "log.connection.close": False,
                              "topic.metadata.refresh.interval.ms": 1000})
        self.topic, self.run_id = topic, run
        self.seen = 0
        self.committed = {}     # partition -> offset acknowledged by a successful commit
        self.bad = []           # non-retriable errors
        self.bad_detail = []
        self.retried = []       # retriable errors
        self.stop_ev = threading.Event()

    def run(self):
        self.c.subscribe([self.topic])
        pending = {}
        since = 0
        while not self.stop_ev.is_set():
            m = self.c.poll(0.2)
            if m is not None:
                if m.error():
                    err = m.error()
                    if _kerr_ok(err):
                        self.retried.append(err.name())
                    else:
                        self.bad.append(err.name())
                        self.bad_detail.append(f"{time.strftime('%H:%M:%S')} {err.name()}: {err.str()}")
                else:
                    self.seen += 1
                    since += 1
                    pending[m.partition()] = m.offset() + 1
            if pending and (since >= 100 or m is None):
                tps = [self.ck.TopicPartition(self.topic, p, o) for p, o in pending.items()]
                try:
                    res = self.c.commit(offsets=tps, asynchronous=False)
                    for tp in res or []:
                        if tp.error is None:
                            self.committed[tp.partition] = max(self.committed.get(tp.partition, 0), tp.offset)
                        else:
                            (self.retried if _kerr_ok(tp.error) else self.bad).append(tp.error.name())
                    since = 0
                except self.ck.KafkaException as e:
                    err = e.args[0]
                    (self.retried if _kerr_ok(err) else self.bad).append(err.name())
                    time.sleep(0.2)
        self.c.close()


class SqsWorker(threading.Thread):
    """Sends numbered SQS messages, receives and deletes them; records every outcome."""

    def __init__(self, b, run):
        super().__init__(daemon=True)
        import boto3
        from botocore.config import Config
        self.sqs = boto3.client("sqs", endpoint_url=b.http_url, region_name="us-east-1",
                                aws_access_key_id="chaos", aws_secret_access_key="chaos",
                                config=Config(retries={"max_attempts": 1}, connect_timeout=5,
                                              read_timeout=30))
        self.run_id = run
        self.qurl = None
        self.sent = set()       # bodies with a MessageId returned
        self.attempted = set()  # bodies whose send failed (may or may not be stored)
        self.deleted = set()    # bodies whose DeleteMessage succeeded
        self.sent_at = {}       # body -> monotonic time its send was acknowledged
        self.deleted_at = {}    # body -> monotonic time its delete was acknowledged
        self.received = 0
        self.bad = []
        self.retried = []
        self.stop_ev = threading.Event()

    def classify(self, e):
        from botocore.exceptions import ClientError
        if isinstance(e, ClientError):
            st = e.response["ResponseMetadata"]["HTTPStatusCode"]
            code = e.response["Error"]["Code"]
            (self.retried if st >= 500 else self.bad).append(f"{st} {code}")
        else:  # connection refused / reset / timeout: retriable by nature
            self.retried.append(type(e).__name__)

    def call(self, fn, **kw):
        """One call retried for up to 30 s on retriable failures; None if it never worked."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return fn(**kw)
            except Exception as e:
                n = len(self.bad)
                self.classify(e)
                if len(self.bad) > n or time.monotonic() > deadline:
                    return None
                time.sleep(0.2)

    def create(self, name):
        r = self.call(self.sqs.create_queue, QueueName=name)
        if r is None:
            raise ChaosError(f"cannot create SQS queue {name}: {self.bad[-1:] or self.retried[-1:]}")
        self.qurl = r["QueueUrl"]

    def drain(self, seconds=30):
        """Receives and deletes what is left. Returns (drained, lost, came_back, foreign)."""
        drained, back = set(), set()
        deadline = time.monotonic() + seconds
        expect = self.sent - self.deleted
        while time.monotonic() < deadline and not expect <= drained:
            try:
                r = self.sqs.receive_message(QueueUrl=self.qurl, MaxNumberOfMessages=10,
                                             VisibilityTimeout=30, WaitTimeSeconds=1)
            except Exception as e:
                self.classify(e)
                continue
            for m in r.get("Messages", []):
                body = m["Body"]
                if body in self.deleted:
                    back.add(body)
                drained.add(body)
                self.call(self.sqs.delete_message, QueueUrl=self.qurl, ReceiptHandle=m["ReceiptHandle"])
        return drained, expect - drained, back, drained - self.sent - self.attempted

    def run(self):
        n = 0
        while not self.stop_ev.is_set():
            for _ in range(5):
                body = f"{self.run_id}:{n}"
                n += 1
                try:
                    self.sqs.send_message(QueueUrl=self.qurl, MessageBody=body)
                    self.sent.add(body)
                    self.sent_at[body] = time.monotonic()
                except Exception as e:
                    self.attempted.add(body)
                    self.classify(e)
            try:
                r = self.sqs.receive_message(QueueUrl=self.qurl, MaxNumberOfMessages=10,
                                             VisibilityTimeout=5, WaitTimeSeconds=0)
            except Exception as e:
                self.classify(e)
                time.sleep(0.1)
                continue
            for m in r.get("Messages", []):
                self.received += 1
                if self.call(self.sqs.delete_message, QueueUrl=self.qurl,
                             ReceiptHandle=m["ReceiptHandle"]) is not None:
                    self.deleted.add(m["Body"])
                    self.deleted_at.setdefault(m["Body"], time.monotonic())
            time.sleep(0.02)


def pg_restart(ctx):
    """PostgreSQL restarted with -m immediate under Kafka and SQS load: the broker stays up,
    clients see only retriable errors, nothing acknowledged is lost."""
    if not ctx.database_url or not ctx.pg_ctl:
        raise ChaosError("needs DATABASE_URL and BROKER_PG_CTL (the scripts/pg of that cluster, "
                         "with BROKER_PG_DIR/BROKER_PG_PORT of it); scripts/test exports them")
    restarts = ctx.scale(3, 10)
    run = os.urandom(4).hex()
    topic = "chaos-pg-" + run
    b = Broker(ctx, "postgres", partitions=2)
    threads = []
    try:
        b.start()
        b.wait_http()
        prod = AckingProducer(b.bootstrap, topic, run, rate_per_s=1000).start()
        time.sleep(1.0)
        cons = GroupConsumer(b.bootstrap, topic, "chaos-pg-group-" + run, run)
        sqs = SqsWorker(b, run)
        sqs.create("chaos-pgq-" + run)
        threads = [cons, sqs]
        for t in threads:
            t.start()
        problems = []
        outage = []
        for i in range(restarts):
            time.sleep(3.0)
            t0 = time.monotonic()
            r = subprocess.run([ctx.pg_ctl, "restart"], capture_output=True, text=True, timeout=120)
            outage.append(time.monotonic() - t0)
            if r.returncode != 0:
                raise ChaosError(f"{ctx.pg_ctl} restart failed: {r.stderr.strip()[-300:]}")
            log(f"PostgreSQL restart {i + 1}/{restarts} at {time.strftime('%H:%M:%S')} took {outage[-1]:.1f}s; broker alive {b.alive()}; "
                f"acked {len(prod.snapshot()[0])}, consumed {cons.seen}, sqs sent/deleted "
                f"{len(sqs.sent)}/{len(sqs.deleted)}")
            if not b.alive():
                problems.append(f"broker exited after PostgreSQL restart {i + 1}: {b.log_tail(5)}")
                break
        time.sleep(4.0)
        for t in threads:
            t.stop_ev.set()
        left = prod.stop(flush_timeout=45)
        for t in threads:
            t.join(timeout=60)
        acked, failed, perrors = prod.snapshot()
        if not b.alive():
            if not problems:
                problems.append(f"broker exited: {b.log_tail(5)}")
            return False, "; ".join(problems), {}

        # Kafka: every acknowledged message, once, at its offset.
        records, ends = read_topic(b.bootstrap, topic)
        res = check_log(records, ends, run, acked)
        bad = {k: len(res[k]) if isinstance(res[k], list) else res[k]
               for k in ("missing", "dup_acked", "moved", "corrupt", "foreign", "gaps") if res[k]}
        if bad:
            problems.append(f"kafka log: {bad}")
        if failed:
            problems.append(f"{len(failed)} produce deliveries failed: {sorted(set(failed.values()))}")
        if left:
            problems.append(f"{left} produce deliveries never reported")
        bad_perr = [e[1] for e in perrors if e[2]]
        if bad_perr:
            problems.append(f"fatal producer errors: {bad_perr[:3]}")
        # The group's commits survived.
        import confluent_kafka as ck
        c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "chaos-pg-group-" + run,
                         "log_level": 2})
        try:
            now = c.committed([ck.TopicPartition(topic, p) for p in cons.committed], timeout=20)
        finally:
            c.close()
        for tp in now:
            if tp.offset < cons.committed[tp.partition]:
                problems.append(f"committed offset of partition {tp.partition} went back from "
                                f"{cons.committed[tp.partition]} to {tp.offset}")
        if cons.bad:
            problems.append(f"consumer saw non-retriable errors {sorted(set(cons.bad))} "
                            f"(first: {cons.bad_detail[0] if cons.bad_detail else '?'})")
        if cons.seen == 0:
            problems.append("the consumer group received nothing")

        # SQS: drain what is left; every sent message is deleted or still there, no deleted one
        # comes back.
        drained, lost, back, foreign = sqs.drain()
        if lost:
            problems.append(f"{len(lost)} sent SQS messages lost (e.g. {sorted(lost)[:3]})")
        if back:
            problems.append(f"{len(back)} deleted SQS messages came back (acks lost)")
        if foreign:
            problems.append(f"{len(foreign)} unknown SQS messages")
        if sqs.bad:
            problems.append(f"SQS non-retriable errors {sorted(set(sqs.bad))[:5]}")
        if not sqs.deleted:
            problems.append("no SQS message was ever deleted")
        if b.panicked():
            problems.append(f"panic: {b.panicked()[0]}")
        summary = (f"{restarts} immediate restarts (each {min(outage):.1f}-{max(outage):.1f}s), broker "
                   f"stayed up; kafka {len(acked)} acked / {prod.sent} sent, all present once; group "
                   f"consumed {cons.seen}, commits kept; SQS {len(sqs.sent)} sent, {len(sqs.deleted)} "
                   f"deleted, {len(drained)} drained after; retriable errors seen: kafka "
                   f"{sorted(set(cons.retried + [e[1][:40] for e in perrors]))[:4]}, "
                   f"sqs {sorted(set(sqs.retried))[:4]}")
        return not problems, "; ".join(problems + [summary]), {
            "acked": len(acked), "consumed": cons.seen, "sqs_sent": len(sqs.sent),
            "sqs_deleted": len(sqs.deleted), "outage_s": outage,
            "retriable": {"consumer": sorted(set(cons.retried)), "sqs": sorted(set(sqs.retried))}}
    finally:
        for t in threads:
            t.stop_ev.set()
        b.cleanup()
