"""Scenarios 1 and 2: SIGKILL the broker under an idempotent acks=all producer, restart it,
and check what survived (log store, `always` and `interval` fsync policies)."""
import glob
import os
import random
import time

from harness import AckingProducer, Broker, check_log, log, pct, read_topic
from scen_pg import SqsWorker

INTERVAL_MS = 100


def _tear_tails(data_dir, topic, rnd):
    """Appends a torn write (random bytes or zeros) to the newest segment of each partition
    of `topic`, as a crash in the middle of a write could leave; returns how many."""
    n = 0
    for pdir in glob.glob(os.path.join(data_dir, "topics", f"{topic}~*", "*")):
        logs = sorted(glob.glob(os.path.join(pdir, "*.log")))
        if not logs:
            continue
        size = rnd.randint(1, 4000)
        junk = bytes(size) if rnd.random() < 0.3 else rnd.randbytes(size)
        with open(logs[-1], "ab") as f:
            f.write(junk)
        n += 1
    return n


def _crash_loop(ctx, durability, cycles, burst, torn=False, store=None):
    run = os.urandom(4).hex()
    topic = "chaos-kill-" + run
    b = Broker(ctx, store or ctx.crash_store, durability=durability, partitions=2)
    recoveries = []
    kills = []
    torn_n = 0
    try:
        recoveries.append(b.start())
        prod = AckingProducer(b.bootstrap, topic, run, rate_per_s=ctx.scale(2000, 4000)).start()
        b.wait_http()
        sqs = SqsWorker(b, run)
        sqs.create("chaos-killq-" + run)
        sqs.start()
        rnd = random.Random(run)
        for i in range(cycles):
            time.sleep(rnd.uniform(*burst))
            acked_before = len(prod.snapshot()[0])
            kills.append(time.monotonic())
            b.kill9()
            if torn and i % 2 == 0 and b.store == "log":
                torn_n += _tear_tails(b.data_dir, topic, rnd)
            rec = b.start()
            recoveries.append(rec)
            if (i + 1) % 5 == 0 or i == 0:
                log(f"{durability}: kill {i + 1}/{cycles}: acked so far {acked_before}, "
                    f"recovery {rec * 1000:.0f} ms")
        log(f"{durability}: recovery per restart (ms): "
            + " ".join(f"{r * 1000:.0f}" for r in recoveries[1:]))
        time.sleep(burst[1])
        sqs.stop_ev.set()
        left = prod.stop(flush_timeout=45)
        sqs.join(timeout=60)
        acked, failed, errors = prod.snapshot()
        drained, sqs_lost, sqs_back, sqs_foreign = sqs.drain()
        alive = b.alive()
        records, ends = read_topic(b.bootstrap, topic)
        res = check_log(records, ends, run, acked, exact_offsets=True)
        res.update(acked=len(acked), failed=len(failed), sent=prod.sent, unflushed=left,
                   alive=alive, panics=b.panicked(), kills=kills, recoveries=recoveries[1:],
                   fatal=[e for e in errors if e[2]], failed_kinds=sorted(set(failed.values())),
                   acked_map=acked, torn=torn_n, sqs=sqs, sqs_lost=sqs_lost, sqs_back=sqs_back,
                   sqs_foreign=sqs_foreign, sqs_drained=len(drained))
        return res
    finally:
        b.cleanup()


DROP = ("acked_map", "kills", "missing", "dup_any", "sqs", "sqs_lost", "sqs_back", "sqs_foreign")


def _late(times, kills, interval_ms):
    """Items acknowledged longer than the loss bound before the next kill (or after the last)."""
    out = []
    for item, t in times:
        later = [k for k in kills if k >= t]
        if not later or (later[0] - t) * 1000 > 2 * interval_ms + 50:
            out.append(item)
    return out


def _sqs_problems(r, interval_ms):
    """SQS over the kills: with `always` (interval_ms None) no acknowledged send may be lost and
    no acknowledged delete undone; with an interval only those acknowledged within the bound
    before a kill."""
    sqs, kills = r["sqs"], r["kills"]
    lost, back = sorted(r["sqs_lost"]), sorted(r["sqs_back"])
    if interval_ms is not None:
        lost = _late([(b, sqs.sent_at[b]) for b in lost], kills, interval_ms)
        back = _late([(b, sqs.deleted_at[b]) for b in back], kills, interval_ms)
    problems = []
    if lost:
        problems.append(f"{len(lost)} acknowledged SQS sends lost (e.g. {lost[:3]})")
    if back:
        problems.append(f"{len(back)} acknowledged SQS deletes undone (e.g. {back[:3]})")
    if r["sqs_foreign"]:
        problems.append(f"{len(r['sqs_foreign'])} unknown SQS messages")
    if not sqs.deleted:
        problems.append("no SQS message was deleted")
    return problems


def _sqs_summary(r):
    sqs = r["sqs"]
    return (f"SQS {len(sqs.sent)} sent / {len(sqs.deleted)} deleted, {len(r['sqs_lost'])} lost, "
            f"{len(r['sqs_back'])} deleted came back, {r['sqs_drained']} drained after; SQS errors "
            f"{sorted(set(sqs.bad + sqs.retried))[:4]}")


def _rec_summary(recs):
    ms = [r * 1000 for r in recs]
    return (f"recovery ms min {min(ms):.0f} / median {pct(ms, 0.5):.0f} / "
            f"p95 {pct(ms, 0.95):.0f} / max {max(ms):.0f}")


def kill9_always(ctx, store=None):
    cycles = ctx.scale(20, 50)
    r = _crash_loop(ctx, "always", cycles, (0.3, 1.0) if ctx.bounded else (0.5, 2.0), store=store)
    problems = []
    if r["acked"] == 0:
        problems.append("no message was ever acknowledged")
    if r["missing"]:
        problems.append(f"{len(r['missing'])} acked messages missing (e.g. seq {r['missing'][:5]})")
    if r["dup_acked"]:
        problems.append(f"{len(r['dup_acked'])} acked messages duplicated (e.g. {r['dup_acked'][:5]})")
    if r["moved"]:
        problems.append(f"{len(r['moved'])} acked messages not at their acked offset")
    if r["gaps"]:
        problems.append(f"{r['gaps']} offset gaps")
    if r["corrupt"] or r["foreign"]:
        problems.append(f"{r['corrupt']} corrupt / {r['foreign']} foreign records served")
    if r["panics"]:
        problems.append(f"panic in log: {r['panics'][0]}")
    if r["unflushed"]:
        problems.append(f"{r['unflushed']} messages never got a delivery report")
    problems += _sqs_problems(r, None)
    summary = (f"{cycles} SIGKILLs ({store or ctx.crash_store} store), {r['acked']} acked / {r['sent']} sent "
               f"({r['failed']} failed {r['failed_kinds']}), {r['present']} distinct present, "
               f"dups of unacked {len(set(r['dup_any']) - set(r['dup_acked']))}, "
               f"fatal producer errors {len(r['fatal'])}; {_sqs_summary(r)}; "
               f"{_rec_summary(r['recoveries'])}")
    details = {k: v for k, v in r.items() if k not in DROP}
    details["missing_sample"] = r["missing"][:20]
    return not problems, "; ".join(problems + [summary]), details


def kill9_interval(ctx):
    cycles = ctx.scale(20, 30)
    r = _crash_loop(ctx, f"interval:{INTERVAL_MS}", cycles, (0.3, 1.0) if ctx.bounded else (0.5, 2.0),
                    torn=True)
    # A lost acked message must have been acked within the fsync interval before a kill.
    acked = r["acked_map"]
    lags = []
    unbounded = []
    for seq in r["missing"]:
        t_ack = acked[seq][2]
        later = [k for k in r["kills"] if k >= t_ack]
        if not later:
            unbounded.append(seq)
            continue
        lag_ms = (later[0] - t_ack) * 1000
        lags.append(lag_ms)
        # slack: the kill is sent after the loop reads the clock; allow one interval more
        if lag_ms > 2 * INTERVAL_MS + 50:
            unbounded.append(seq)
    problems = []
    if r["acked"] == 0:
        problems.append("no message was ever acknowledged")
    if unbounded:
        problems.append(f"{len(unbounded)} lost acked messages were acked longer than the "
                        f"interval before any crash (e.g. seq {unbounded[:5]})")
    if r["dup_acked"]:
        problems.append(f"{len(r['dup_acked'])} acked messages duplicated")
    if r["gaps"]:
        problems.append(f"{r['gaps']} offset gaps")
    if r["corrupt"] or r["foreign"]:
        problems.append(f"{r['corrupt']} corrupt / {r['foreign']} foreign records served")
    if r["panics"]:
        problems.append(f"panic in log: {r['panics'][0]}")
    if r["unflushed"]:
        problems.append(f"{r['unflushed']} messages never got a delivery report")
    loss = (f"lost {len(r['missing'])} acked (max ack-to-kill lag "
            f"{max(lags):.0f} ms)" if lags else "lost 0 acked")
    problems += _sqs_problems(r, INTERVAL_MS)
    if r["torn"] == 0:
        problems.append("no torn tail was injected (no segment file found)")
    summary = (f"{cycles} SIGKILLs with interval:{INTERVAL_MS}, {r['torn']} torn segment tails "
               f"injected, {r['acked']} acked / {r['sent']} sent, "
               f"{loss}, moved {len(r['moved'])}, fatal producer errors {len(r['fatal'])}; "
               f"{_sqs_summary(r)}; {_rec_summary(r['recoveries'])}")
    details = {k: v for k, v in r.items() if k not in DROP}
    details.update(lost=len(r["missing"]), loss_lags_ms=lags[:50], unbounded=len(unbounded))
    return not problems, "; ".join(problems + [summary]), details
