"""Throughput of the project's MLP kernels (kernels/mlp.py) at the field's sizes, for a chosen tile.

Times forward and backward of the density MLP 64 -> 64 -> 16 and the colour MLP 31 -> 64 -> 64 -> 3
on N samples (f32) and prints one JSON line: medians in ms and multiply-adds per second (the bias
counted as an input; the backward counts twice the forward's multiply-adds). ``--V``, ``--J``,
``--JW`` and ``--IW`` replace the module's tile constants (samples per vector cell, neurons per
thread in a layer, the weight-gradient tile) before anything compiles, to compare tiles; the
checksums of the weight gradients must not change between tiles beyond f32 rounding.

    python benchmarks/mlp_tiles.py [--V 32 --J 2 --JW 2 --IW 1] [--threads 2] [--n 262144]
"""
import os, sys, time, json
os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")
import numpy as np
import argparse
ap = argparse.ArgumentParser()
ap.add_argument("--V", type=int, default=32); ap.add_argument("--J", type=int, default=2)
ap.add_argument("--JW", type=int, default=2); ap.add_argument("--IW", type=int, default=1)
ap.add_argument("--threads", type=int, default=2); ap.add_argument("--n", type=int, default=262144)
ap.add_argument("--reps", type=int, default=5); ap.add_argument("--ir", action="store_true")
a = ap.parse_args()
import taichi as ti
kw = {}
if a.ir:
    kw["print_kernel_llvm_ir_optimized"] = True
ti.init(arch=ti.cpu, cpu_max_num_threads=a.threads, default_fp=ti.f32, offline_cache=False, **kw)
sys.path.insert(0, os.environ.get("SYNCNERF_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kernels.mlp as m
m.V, m._J, m._JW, m._IW = a.V, a.J, a.JW, a.IW
n = a.n
res = {}
for name, dims in (("density", (64, [64], 16)), ("color", (31, [64, 64], 3))):
    mlp = m.MLP(dims[0], dims[1], dims[2], n)
    inp = ti.field(float, shape=(n, dims[0]), needs_grad=True)
    out = ti.field(float, shape=(n, dims[2]), needs_grad=True)
    rng = np.random.default_rng(0)
    inp.from_numpy(rng.standard_normal((n, dims[0])).astype(np.float32))
    out.grad.from_numpy(rng.standard_normal((n, dims[2])).astype(np.float32))
    ws = [dims[0]] + dims[1] + [dims[2]]
    macs = sum((i + 1) * o for i, o in zip(ws[:-1], ws[1:])) * n
    f, b = [], []
    for r in range(a.reps + 1):
        ti.sync(); t0 = time.perf_counter(); mlp.forward(inp, out, n); ti.sync(); t1 = time.perf_counter()
        mlp.backward(inp, out, n); ti.sync(); t2 = time.perf_counter()
        if r:
            f.append(t1 - t0); b.append(t2 - t1)
    fm, bm = np.median(f), np.median(b)
    res[name] = dict(fwd_ms=round(fm * 1e3, 1), bwd_ms=round(bm * 1e3, 1), fwd_gmacs=round(macs / fm / 1e9, 1),
                     bwd_gmacs=round(2 * macs / bm / 1e9, 1))
    res[name + "_grad_checksum"] = float(mlp.params.grad.to_numpy()[:50].sum())
print(json.dumps(dict(V=a.V, J=a.J, JW=a.JW, IW=a.IW, threads=a.threads, **res)))
