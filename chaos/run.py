"""The fault-injection suite: drives the real `broker` binary with real clients and breaks
things on purpose. Prints one `PASS name: ...` / `FAIL name: ...` line per scenario.

Usage: run.py [--bounded | --minutes N] [--scenario NAME ...] [--json FILE] [--keep]
              [--crash-store log|memory]
"""
import argparse
import json
import os
import resource
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ChaosError  # noqa: E402
import scen_cluster  # noqa: E402
import scen_crash  # noqa: E402
import scen_diskfull  # noqa: E402
import scen_hostile  # noqa: E402
import scen_pg  # noqa: E402
import scen_soak  # noqa: E402

SCENARIOS = {
    "kill9-always": scen_crash.kill9_always,
    "kill9-interval": scen_crash.kill9_interval,
    "kill9-postgres": lambda ctx: scen_crash.kill9_always(ctx, store="postgres"),
    "pg-restart": scen_pg.pg_restart,
    "disk-full": scen_diskfull.disk_full,
    "hostile": scen_hostile.hostile,
    "soak": scen_soak.soak,
    "cluster-kill9-coordinator": scen_cluster.kill9_coordinator,
    "cluster-sqs-kill9": scen_cluster.sqs_kill9,
}

# Scenarios left out of --bounded (each for a reason written in docs/reliability.md).
BOUNDED_EXCLUDED = {}
# Scenarios only for --bounded: a full run has a superset of them.
FULL_EXCLUDED = set()


class Context:
    def __init__(self, args):
        self.bounded = args.bounded
        self.minutes = args.minutes
        self.keep = args.keep
        self.crash_store = args.crash_store
        self.broker_bin = os.environ.get("BROKER_BIN")
        self.database_url = os.environ.get("DATABASE_URL")
        self.pg_ctl = os.environ.get("BROKER_PG_CTL")

    def scale(self, bounded, full):
        """A count or size: `bounded` in --bounded mode, `full` otherwise."""
        return bounded if self.bounded else full


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bounded", action="store_true", help="short run for CI (a few minutes)")
    ap.add_argument("--minutes", type=float, default=5.0, help="soak length of a full run")
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only these")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep broker data and logs")
    ap.add_argument("--crash-store", default="log", choices=["log", "memory", "postgres"],
                    help="store of the kill9 scenarios; `memory` must make them FAIL (a check "
                         "that the verdict can fail)")
    args = ap.parse_args()
    ctx = Context(args)
    if not ctx.broker_bin or not os.path.exists(ctx.broker_bin):
        print(f"FAIL setup: broker binary not found (BROKER_BIN={ctx.broker_bin!r})")
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000) if hard > 0 else 20000, hard))

    skip = BOUNDED_EXCLUDED if args.bounded else FULL_EXCLUDED
    names = args.scenario or [n for n in SCENARIOS if n not in skip]
    if args.bounded:
        for n, why in BOUNDED_EXCLUDED.items():
            if n not in names:
                print(f"SKIP {n}: excluded from --bounded: {why}")
    mode = "bounded" if args.bounded else f"full ({args.minutes:g} min soak)"
    print(f"chaos: {mode}, broker {ctx.broker_bin}", flush=True)
    results = []
    t_all = time.monotonic()
    for name in names:
        print(f"---- {name}", flush=True)
        t0 = time.monotonic()
        try:
            ok, summary, details = SCENARIOS[name](ctx)
        except ChaosError as e:
            ok, summary, details = False, f"could not run: {e}", {}
        except Exception as e:  # a bug in a scenario is a FAIL, with its trace
            traceback.print_exc()
            ok, summary, details = False, f"scenario error: {type(e).__name__}: {e}", {}
        secs = time.monotonic() - t0
        line = f"{'PASS' if ok else 'FAIL'} {name}: {summary} [{secs:.0f}s]"
        print(line, flush=True)
        results.append({"name": name, "ok": ok, "summary": summary, "seconds": round(secs, 1),
                        "details": details})
    failed = [r["name"] for r in results if not r["ok"]]
    print(f"==== chaos summary: {len(results) - len(failed)} passed, {len(failed)} failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''} in {time.monotonic() - t_all:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mode": mode, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "results": results}, f, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
