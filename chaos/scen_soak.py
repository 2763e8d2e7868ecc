from harness import ChaosError


def soak(ctx):
    raise ChaosError("not written yet")
