from harness import ChaosError


def hostile(ctx):
    raise ChaosError("not written yet")
