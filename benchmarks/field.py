"""Forward + backward throughput of the K-Planes hybrid field at its published size.

Field: a 4-D K-Planes encoder (planes xy, xz, yz, xt, yt, zt; space resolutions 64, 128, 256,
512; time 150; 16 features per scale, so 64 features out) followed by the density MLP
64 -> 64 (ReLU) -> 16 (linear). One step on N random space-time points in [-1, 1]^4:

    encoder forward -> MLP forward -> MLP backward from a random output gradient (writes
    dL/dfeatures) -> encoder backward (parameter gradients and coordinate gradients, t included)

Each part is timed separately (``ti.sync()`` after each). One warm-up step compiles the kernels
(its time is reported as ``first_step_s``), then ``--repeats`` timed steps. Prints a table and,
as its last line, one JSON object (medians in milliseconds).

Usage: python benchmarks/field.py [--samples 262144] [--repeats 5] [--threads 2] [--arch cpu]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")

SPACE_RES = [64, 128, 256, 512]
TIME_RES = 150
FEATURES = 16
HIDDEN = [64]
OUT_DIM = 16
PARTS = ("encoder_fwd", "mlp_fwd", "mlp_bwd", "encoder_bwd")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=262144, help="points per step (default 262144)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps after the warm-up (default 5)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--arch", default="cpu", choices=["cpu", "cuda", "vulkan", "auto"],
                   help="Taichi backend (default cpu)")
    p.add_argument("--precision", default="f32", choices=["f32", "f64"], help="default f32")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.samples < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--samples, --repeats and --threads must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from taichi_syncnerf import runtime

    info = runtime.init(arch=args.arch, threads=args.threads, precision=args.precision)
    import taichi as ti

    from taichi_syncnerf.kernels.mlp import MLP
    from taichi_syncnerf.kernels.planes import PlaneEncoder

    n = args.samples
    t0 = time.perf_counter()
    enc = PlaneEncoder(4, FEATURES, SPACE_RES, TIME_RES, max_points=n, seed=args.seed)
    mlp = MLP(enc.output_dim, HIDDEN, OUT_DIM, max_batch=n, seed=args.seed)
    x = ti.field(float, shape=(n, 4), needs_grad=True)
    feat = ti.field(float, shape=(n, enc.output_dim), needs_grad=True)
    out = ti.field(float, shape=(n, OUT_DIM), needs_grad=True)
    rng = np.random.default_rng(args.seed)
    x.from_numpy(rng.uniform(-1.0, 1.0, (n, 4)).astype(runtime.np_float()))
    out.grad.from_numpy(rng.normal(0.0, 1.0, (n, OUT_DIM)).astype(runtime.np_float()))
    setup_s = time.perf_counter() - t0

    steps = {
        "encoder_fwd": lambda: enc.forward(x, feat, n),
        "mlp_fwd": lambda: mlp.forward(feat, out, n),
        "mlp_bwd": lambda: mlp.backward(feat, out, n),
        "encoder_bwd": lambda: enc.backward(x, feat, n, coord_grad=True),
    }

    def step():
        times = {}
        for name in PARTS:
            ts = time.perf_counter()
            steps[name]()
            ti.sync()
            times[name] = time.perf_counter() - ts
        return times

    t0 = time.perf_counter()
    step()
    first_step_s = time.perf_counter() - t0
    runs = []
    for _ in range(args.repeats):
        enc.zero_grad()
        mlp.params.grad.fill(0.0)
        ti.sync()
        runs.append(step())

    med = {k: float(np.median([r[k] for r in runs])) for k in PARTS}
    low = {k: float(np.min([r[k] for r in runs])) for k in PARTS}
    totals = [sum(r.values()) for r in runs]
    total = float(np.median(totals))

    print(f"K-Planes hybrid field, {n} samples, arch={info.arch}, threads={args.threads}, "
          f"precision={args.precision}, encoder backward={enc.backward_mode}")
    print(f"encoder: {enc.n_params:,} parameters; MLP {enc.output_dim}-{HIDDEN}-{OUT_DIM}: "
          f"{mlp.n_params:,} parameters; setup {setup_s:.2f} s, first step (compiles) {first_step_s:.2f} s")
    print(f"{'part':<14}{'median ms':>12}{'min ms':>10}{'share':>8}")
    for k in PARTS:
        print(f"{k:<14}{med[k] * 1e3:>12.1f}{low[k] * 1e3:>10.1f}{med[k] / total:>8.0%}")
    print(f"{'total':<14}{total * 1e3:>12.1f}{min(totals) * 1e3:>10.1f}")
    print(f"throughput: {n / total / 1e6:.3f} M samples/s (median of {args.repeats})")
    result = {
        "name": "field",
        "samples": n,
        "samples_per_s": n / total,
        "total_ms": total * 1e3,
        **{f"{k}_ms": med[k] * 1e3 for k in PARTS},
        "threads": args.threads,
        "arch": info.arch,
        "precision": args.precision,
        "repeats": args.repeats,
        "encoder_params": enc.n_params,
        "encoder_backward": enc.backward_mode,
        "first_step_s": first_step_s,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
