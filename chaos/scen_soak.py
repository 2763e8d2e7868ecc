"""Scenario 6: mixed Kafka and SQS load for a while; resources stay flat, nothing
acknowledged is lost or duplicated."""
import os
import time

from harness import AckingProducer, Broker, check_log, log, read_topic
from scen_pg import GroupConsumer, SqsWorker

RSS_GROWTH_MB = 64   # allowed RSS growth from the end of the warm-up to the end
FD_GROWTH = 16       # allowed growth of open files over the same span


def soak(ctx):
    seconds = ctx.scale(30, max(60, int(ctx.minutes * 60)))
    warm = max(8, seconds // 5)
    run = os.urandom(4).hex()
    topic = "chaos-soak-" + run
    b = Broker(ctx, "log", partitions=2)
    threads = []
    try:
        b.start()
        b.wait_http()
        prod = AckingProducer(b.bootstrap, topic, run, rate_per_s=ctx.scale(1000, 2000)).start()
        cons = GroupConsumer(b.bootstrap, topic, "chaos-soak-" + run, run)
        sqs = SqsWorker(b, run)
        sqs.create("chaos-soakq-" + run)
        threads = [cons, sqs]
        for t in threads:
            t.start()
        samples = []  # (t, rss_mb, fds)
        t0 = time.monotonic()
        next_log = t0 + 30
        while time.monotonic() - t0 < seconds and b.alive():
            st = b.stats()
            samples.append((time.monotonic() - t0, st["rss_kb"] / 1024, st["fds"]))
            if time.monotonic() >= next_log:
                next_log += 30
                log(f"soak {samples[-1][0]:.0f}s: RSS {samples[-1][1]:.0f} MB, fds {samples[-1][2]}, "
                    f"acked {len(prod.snapshot()[0])}, consumed {cons.seen}, sqs deleted {len(sqs.deleted)}")
            time.sleep(1.0)
        for t in threads:
            t.stop_ev.set()
        left = prod.stop(flush_timeout=60)
        for t in threads:
            t.join(timeout=60)
        problems = []
        if not b.alive():
            return False, f"broker died during the soak: {b.log_tail(5)}", {}
        acked, failed, perrors = prod.snapshot()
        hwm = b.stats()["hwm_kb"] / 1024
        base = [s for s in samples if warm - 3 <= s[0] <= warm]
        end = samples[-3:]
        rss0 = sum(s[1] for s in base) / max(1, len(base))
        rss1 = sum(s[1] for s in end) / max(1, len(end))
        fd0 = max(s[2] for s in base) if base else 0
        fd1 = max(s[2] for s in end) if end else 0
        if rss1 - rss0 > RSS_GROWTH_MB:
            problems.append(f"RSS grew {rss1 - rss0:.0f} MB after warm-up (bound {RSS_GROWTH_MB})")
        if fd1 - fd0 > FD_GROWTH:
            problems.append(f"open files grew {fd0} -> {fd1} (bound +{FD_GROWTH})")

        records, ends = read_topic(b.bootstrap, topic, timeout=120)
        res = check_log(records, ends, run, acked)
        bad = {k: len(res[k]) if isinstance(res[k], list) else res[k]
               for k in ("missing", "dup_acked", "moved", "corrupt", "foreign", "gaps") if res[k]}
        if bad:
            problems.append(f"kafka log: {bad}")
        if failed or left:
            problems.append(f"{len(failed)} failed / {left} unreported deliveries")
        if cons.bad:
            problems.append(f"consumer errors {sorted(set(cons.bad))}")
        if cons.seen == 0 or not acked:
            problems.append("no Kafka traffic")
        drained, lost, back, foreign = sqs.drain()
        if lost or back or foreign:
            problems.append(f"SQS: {len(lost)} lost, {len(back)} deleted came back, {len(foreign)} unknown")
        if sqs.bad or sqs.retried:
            problems.append(f"SQS errors without any fault injected: {sorted(set(sqs.bad + sqs.retried))[:4]}")
        if not sqs.deleted:
            problems.append("no SQS traffic")
        if b.panicked():
            problems.append(f"panic: {b.panicked()[0]}")
        summary = (f"{seconds}s mixed load: kafka {len(acked)} acked, all present once, group consumed "
                   f"{cons.seen}; SQS {len(sqs.sent)} sent / {len(sqs.deleted)} deleted; RSS "
                   f"{rss0:.0f} -> {rss1:.0f} MB after {warm}s warm-up (peak {hwm:.0f} MB), "
                   f"fds {fd0} -> {fd1}")
        return not problems, "; ".join(problems + [summary]), {
            "seconds": seconds, "acked": len(acked), "rss_mb": [round(rss0), round(rss1)],
            "peak_mb": round(hwm), "fds": [fd0, fd1], "samples": samples[::max(1, len(samples) // 60)]}
    finally:
        for t in threads:
            t.stop_ev.set()
        b.cleanup()
