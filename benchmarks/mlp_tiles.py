"""Throughput of the project's MLP kernels (kernels/mlp.py) at the field's sizes, for a chosen tile.

Times forward and backward of the density MLP 64 -> 64 -> 16 and the colour MLP 31 -> 64 -> 64 -> 3
on N samples (f32) and prints one JSON line: medians in ms and multiply-adds per second (the bias
counted as an input; the backward counts twice the forward's multiply-adds). ``--V``, ``--J``,
``--JW`` and ``--IW`` replace the module's tile constants (samples per vector cell, neurons per
thread in a layer, the weight-gradient tile) before anything compiles, to compare tiles; Taichi's
offline cache is off, so every run compiles its own tile. The sums of the weight gradients
(``grad_sum``) must not change between tiles beyond f32 rounding.

``--ceiling`` also times a Taichi kernel that does nothing but multiply-adds on accumulators held in
registers (``acc = acc * a + b`` on 8 x 32 independent lanes per task, 8 tasks per thread, no
memory traffic), the most multiply-adds per second that Taichi's CPU code reaches here
(``ceiling_gmacs``), each MLP's share of it (``*_of_ceiling``) and the least time both MLPs'
forward and backward could take at it (``mlps_at_ceiling_ms``, from each MLP's ``gmacs_per_step``).

    python benchmarks/mlp_tiles.py [--V 32 --J 2 --JW 2 --IW 1] [--threads 2] [--n 262144] [--ceiling]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")
NETS = (("density", 64, [64], 16), ("color", 31, [64, 64], 3))


def time_mlp(m, ti, in_dim, hidden, out_dim, n, repeats):
    mlp = m.MLP(in_dim, hidden, out_dim, n)
    inp = ti.field(float, shape=(n, in_dim), needs_grad=True)
    out = ti.field(float, shape=(n, out_dim), needs_grad=True)
    rng = np.random.default_rng(0)
    inp.from_numpy(rng.standard_normal((n, in_dim)).astype(np.float32))
    out.grad.from_numpy(rng.standard_normal((n, out_dim)).astype(np.float32))
    widths = [in_dim, *hidden, out_dim]
    macs = n * sum((i + 1) * o for i, o in zip(widths[:-1], widths[1:]))
    fwd, bwd = [], []
    for r in range(repeats + 1):  # the first step compiles
        mlp.params.grad.fill(0.0)  # backward adds: grad_sum is then one step's
        ti.sync()
        t0 = time.perf_counter()
        mlp.forward(inp, out, n)
        ti.sync()
        t1 = time.perf_counter()
        mlp.backward(inp, out, n)
        ti.sync()
        t2 = time.perf_counter()
        if r:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    f, b = float(np.median(fwd)), float(np.median(bwd))
    return {"fwd_ms": round(f * 1e3, 1), "bwd_ms": round(b * 1e3, 1),
            "gmacs_per_step": round(3 * macs / 1e9, 3),  # forward, then backward at twice its count
            "fwd_gmacs": round(macs / f / 1e9, 1), "bwd_gmacs": round(2 * macs / b / 1e9, 1),
            "grad_sum": float(mlp.params.grad.to_numpy().astype(np.float64).sum())}


_LANES, _ROWS = 32, 8


def ceiling(ti, threads: int, repeats: int, iters: int = 200000) -> float:
    """Multiply-adds per second (in G) of ``acc = acc * a + b`` on registers, ``threads`` threads."""
    out = ti.field(float, shape=threads * 8)

    @ti.kernel
    def spin(iters: ti.i32, a: ti.f32, b: ti.f32):
        ti.loop_config(block_dim=1)  # one iteration per task: all threads busy
        for t in range(threads * 8):
            acc = ti.Matrix([[0.001 * (r * _LANES + v) for v in range(_LANES)] for r in range(_ROWS)])
            for _ in range(iters):
                for r in ti.static(range(_ROWS)):
                    for v in ti.static(range(_LANES)):
                        acc[r, v] = acc[r, v] * a + b
            out[t] = acc.sum()

    spin(10, 0.999, 0.001)  # compiles
    times = []
    for _ in range(repeats):
        ti.sync()
        t0 = time.perf_counter()
        spin(iters, 0.999, 0.001)
        ti.sync()
        times.append(time.perf_counter() - t0)
    return threads * 8 * iters * _ROWS * _LANES / float(np.median(times)) / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--V", type=int, default=32, help="samples per vector cell (default 32)")
    ap.add_argument("--J", type=int, default=2, help="neurons per thread in a layer (default 2)")
    ap.add_argument("--JW", type=int, default=2, help="neurons of the weight-gradient tile (default 2)")
    ap.add_argument("--IW", type=int, default=1, help="inputs of the weight-gradient tile (default 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=262144, help="samples (default 262144)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps after the warm-up (default 5)")
    ap.add_argument("--ceiling", action="store_true",
                    help="also time multiply-adds on registers alone and give each MLP's share of it")
    ap.add_argument("--record", action="store_true",
                    help="append the JSON line, with date, machine and command, to docs/results/mlp_tiles.jsonl")
    args = ap.parse_args(argv)
    if min(args.V, args.J, args.JW, args.IW, args.threads, args.n, args.repeats) < 1:
        ap.error("every option must be >= 1")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import taichi as ti

    from taichi_syncnerf import runtime
    runtime.init(arch="cpu", threads=args.threads, precision="f32", offline_cache=False)
    import kernels.mlp as m
    m.V, m._J, m._JW, m._IW = args.V, args.J, args.JW, args.IW
    figures = {name: time_mlp(m, ti, i, h, o, args.n, args.repeats) for name, i, h, o in NETS}
    if args.ceiling:
        top = ceiling(ti, args.threads, args.repeats)
        figures["ceiling_gmacs"] = round(top, 1)
        # the least time both MLPs' forward and backward could take at the ceiling
        figures["mlps_at_ceiling_ms"] = round(sum(figures[name]["gmacs_per_step"] for name, *_ in NETS)
                                              / top * 1e3, 1)
        for name, *_ in NETS:
            for part in ("fwd", "bwd"):
                figures[name][f"{part}_of_ceiling"] = round(figures[name][f"{part}_gmacs"] / top, 2)
    result = {"name": "mlp_tiles", "V": args.V, "J": args.J, "JW": args.JW, "IW": args.IW,
              "threads": args.threads, "n": args.n, **figures}
    print(json.dumps(result))
    if args.record:
        from report import record
        record(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
