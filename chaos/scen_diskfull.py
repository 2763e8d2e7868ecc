"""Scenario 4: the log store's file system fills up (a size-limited tmpfs mounted here)."""
import os
import subprocess
import tempfile
import time

from harness import (Broker, ChaosError, check_log, log, make_value, metadata_roundtrip,
                     read_topic)

SMALL = "16m"
LARGE = "64m"
MSG_PAD = 4000


def _mount(path, size):
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ChaosError(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")


def _produce_batch(ck, bootstrap, topic, run, seqs, conf_extra, acked, errors, timeout=30):
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "log_level": 2,
            "log.connection.close": False}
    conf.update(conf_extra)
    p = ck.Producer(conf)

    def cb(seq):
        def f(err, msg):
            if err is None:
                acked[seq] = (msg.partition(), msg.offset(), time.monotonic())
            else:
                errors[seq] = err.name()
        return f

    for s in seqs:
        p.produce(topic, value=make_value(run, s, MSG_PAD), on_delivery=cb(s))
        p.poll(0)
    left = p.flush(timeout)
    return left


def _fill(path):
    """Writes `path` until the file system is full; returns the bytes written."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (65536, 4096, 512, 1):
            buf = b"\0" * chunk
            while True:
                try:
                    f.write(buf)
                    n += chunk
                except OSError:
                    break
    return n


def _sqs(b):
    import boto3
    from botocore.config import Config
    return boto3.client("sqs", endpoint_url=b.http_url, region_name="us-east-1",
                        aws_access_key_id="chaos", aws_secret_access_key="chaos",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10))


def disk_full(ctx):
    import confluent_kafka as ck
    from botocore.exceptions import ClientError
    work = tempfile.mkdtemp(prefix="chaos-fs-")
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    _mount(mnt, SMALL)
    b = None
    try:
        b = Broker(ctx, "log", durability="always", partitions=1,
                   data_dir=os.path.join(mnt, "data"))
        b.start()
        b.wait_http()
        run = os.urandom(4).hex()
        topic = "chaos-full-" + run
        sqs = _sqs(b)
        qurl = sqs.create_queue(QueueName="chaos-full-q")["QueueUrl"]
        sqs_sent = []
        acked, errors = {}, {}
        fill = {"enable.idempotence": False, "retries": 0, "message.timeout.ms": 15000}
        seq = 0
        full_at = None
        for batch in range(200):  # bounded: at most 200 * 50 * 4 KB = 40 MB offered
            seqs = list(range(seq, seq + 50))
            seq += 50
            _produce_batch(ck, b.bootstrap, topic, run, seqs, fill, acked, errors)
            if errors:
                full_at = batch
                break
            if not b.alive():
                break
        kinds = sorted(set(errors.values()))
        log(f"disk full after {len(acked)} acked messages; produce errors: {kinds}")
        problems = []
        if full_at is None:
            problems.append("the file system never filled (no produce error)")
        # Take whatever space is left, so that every further write fails.
        filler = os.path.join(mnt, "filler")
        filled = _fill(filler)
        log(f"filler took the last {filled // 1024} KiB")
        # While full: more produce attempts and an SQS send, each must fail cleanly.
        more_err = {}
        # (space the store preallocated may still take some; it must run out within 100 batches)
        for _ in range(100):
            if not b.alive() or more_err:
                break
            _produce_batch(ck, b.bootstrap, topic, run, list(range(seq, seq + 20)), fill, acked, more_err)
            seq += 20
        sqs_err = None
        try:
            if b.alive():
                r = sqs.send_message(QueueUrl=qurl, MessageBody="while-full")
                sqs_sent.append(r["MessageId"])
        except ClientError as e:
            sqs_err = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
        except Exception as e:  # connection-level failures
            sqs_err = (0, type(e).__name__)
        log(f"while full: more produce errors {sorted(set(more_err.values()))}, SQS send: {sqs_err or 'accepted'}")
        clear = {"KAFKA_STORAGE_ERROR"}
        unclear = sorted(set(list(errors.values()) + list(more_err.values())) - clear)
        if not more_err:
            problems.append("produce kept being acknowledged on a full file system (2,000 messages)")
        if unclear:
            problems.append(f"produce failed with unclear errors {unclear} (want KAFKA_STORAGE_ERROR)")
        if sqs_err and (sqs_err[0] < 500 or sqs_err[1] in ("InternalError", "InternalFailure")
                        or sqs_err[0] == 0):
            problems.append(f"SQS send while full failed unclearly: {sqs_err}")
        if not b.alive():
            problems.append(f"broker died while the disk was full: {b.log_tail(5)}")
            return False, "; ".join(problems), {"errors": kinds}
        try:
            metadata_roundtrip(b.kafka_port)
        except (OSError, ConnectionError) as e:
            problems.append(f"Metadata not answered while full: {e}")

        # Space returns.
        os.unlink(filler)
        r = subprocess.run(["mount", "-o", f"remount,size={LARGE}", mnt], capture_output=True, text=True)
        if r.returncode != 0:
            raise ChaosError(f"cannot grow the tmpfs: {r.stderr.strip()}")
        after = {}
        after_err = {}
        resume = {"enable.idempotence": True, "message.timeout.ms": 30000}
        _produce_batch(ck, b.bootstrap, topic, run, list(range(seq, seq + 200)), resume, after, after_err, 40)
        seq += 200
        if after_err or len(after) != 200:
            problems.append(f"produce after space returned: {len(after)}/200 acked, errors "
                            f"{sorted(set(after_err.values()))}")
        acked.update(after)
        try:
            sqs.send_message(QueueUrl=qurl, MessageBody="after-full")
        except Exception as e:
            problems.append(f"SQS send after space returned failed: {e}")

        records, ends = read_topic(b.bootstrap, topic)
        res = check_log(records, ends, run, acked)
        # And again after a crash: what was acknowledged survives recovery from the ENOSPC state.
        b.kill9()
        rec = b.start()
        records2, ends2 = read_topic(b.bootstrap, topic)
        res2 = check_log(records2, ends2, run, acked)
        for label, rr in (("live", res), ("after restart", res2)):
            bad = {k: len(rr[k]) if isinstance(rr[k], list) else rr[k]
                   for k in ("missing", "dup_acked", "moved", "corrupt", "foreign", "gaps")
                   if rr[k]}
            if bad:
                problems.append(f"{label}: {bad}")
        if b.panicked():
            problems.append(f"panic in log: {b.panicked()[0]}")
        summary = (f"tmpfs {SMALL}: full after {len(acked) - len(after)} acked 4 KB messages, produce "
                   f"errors {kinds}, SQS while full {sqs_err or 'accepted'}; after growing to {LARGE}: "
                   f"{len(after)}/200 acked; {res2['present']} present after restart "
                   f"(recovery {rec * 1000:.0f} ms), broker stayed up")
        return not problems, "; ".join(problems + [summary]), {
            "errors": kinds, "sqs_while_full": sqs_err, "acked": len(acked), "after": len(after)}
    finally:
        if b is not None:
            b.cleanup()
        subprocess.run(["umount", "-l", mnt], capture_output=True)
        try:
            os.rmdir(mnt)
            os.rmdir(work)
        except OSError:
            pass
