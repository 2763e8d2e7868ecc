from harness import ChaosError


def pg_restart(ctx):
    raise ChaosError("not written yet")
