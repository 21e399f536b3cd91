"""Every kernel in float32 against its float64 numpy twin: forward and backward.

Training runs in f32 while the kernel tests run in f64, so a problem that only f32 shows
(summation order, cancellation in the renderer's backward, block sums of the MLP's weight
gradients, atomic adds of the plane encoder) would pass them. This script initialises its own
Taichi runtime in f32, runs each kernel family on inputs that are exactly representable in f32,
and compares with the float64 twin evaluated on the same inputs.

The families live in f32_kplanes.py and f32_mixvoxels.py, the helpers and the error measure in
f32_common.py.

Run by tests/kernels/test_f32.py in a subprocess (the test session itself runs in f64); also
runnable by hand, e.g. on a GPU: ``python tests/kernels/f32_checks.py --arch cuda``. Prints one
JSON object: ``{"arch": ..., "families": {family: {quantity: error}}, "seconds": {family: s}}``.
"""
import argparse
import json
import os
import sys
import time
import zlib

import numpy as np

os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")

try:
    from . import f32_kplanes, f32_mixvoxels
except ImportError:  # run as a script: tests/kernels is on sys.path
    import f32_kplanes
    import f32_mixvoxels

FAMILIES = {name[len("check_"):]: getattr(module, name)
            for module in (f32_kplanes, f32_mixvoxels) for name in sorted(vars(module))
            if name.startswith("check_")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="cpu", choices=["cpu", "cuda", "vulkan"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    args = ap.parse_args(argv)
    from taichi_syncnerf import runtime

    info = runtime.init(arch=args.arch, threads=args.threads, precision="f32", offline_cache=True)
    result = {"arch": info.arch, "precision": "f32", "families": {}, "seconds": {}}
    for name in args.families:
        t0 = time.perf_counter()
        result["families"][name] = FAMILIES[name](np.random.default_rng(zlib.crc32(name.encode())))
        result["seconds"][name] = round(time.perf_counter() - t0, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
