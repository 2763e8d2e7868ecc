from harness import ChaosError


def disk_full(ctx):
    raise ChaosError("not written yet")
