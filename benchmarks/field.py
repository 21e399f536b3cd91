"""Forward + backward throughput of the K-Planes hybrid field, Taichi and its PyTorch peer.

Field: the project's ``RadianceField`` with the published Plenoptic hybrid settings
(configs/plenoptic/sync-kplanes-hybrid.yaml): a 4-D K-Planes encoder (planes xy, xz, yz, xt, yt,
zt; space resolutions 64, 128, 256, 512; time 150; 16 features per scale, so 64 features out),
the density MLP 64 -> 64 -> 16 (ReLU; trunc_exp density and 15 geometry features), the
spherical harmonics (4 bands) of each ray's view direction, the colour MLP 31 -> 64 -> 64 -> 3
(ReLU) and a sigmoid. One step on N random space-time points (``--rays`` rays of N / rays
samples, each ray with a random view direction; ``--points uniform``, the default: each point
uniform in [-1, 1]^4 on its own, no two near each other; ``--points rays``: the points of a ray
evenly spaced along it through the box, at one time per ray, as training samples them;
``--points box``: every point in one box of side 2e-3 (1/4 of a texel at the finest scale), so
every lookup reads texels already in the cache: the step's time without cache misses, to tell
arithmetic from memory traffic):

    field forward (density and colour of every sample) -> field backward from random output
    gradients: parameter gradients of the planes and both MLPs, and the gradient of every
    sample's coordinates (t included: the offsets learn through it)

The Taichi parts (encoder, density MLP, colour MLP; "glue" = activations, SH, colour input) are
timed separately (``ti.sync()`` around each). Then, in the same process and on the same points,
the PyTorch peer (benchmarks/field_torch.py: ``grid_sample`` planes and torch MLPs, f32, the
Taichi field's parameters copied in) is checked to compute the same outputs and gradients and is
timed. One warm-up step each (compilation; reported as ``first_step_s``), then ``--repeats``
timed steps. Prints a table, both throughputs and their ratio, and as its last line one JSON
object (medians).

Usage: python benchmarks/field.py [--samples 262144] [--repeats 5] [--threads 2] [--arch cpu]
                                  [--size published|tiny] [--points uniform|rays|box] [--no-torch]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")

PRESET = "plenoptic/sync-kplanes-hybrid"
TIME_RES = 150  # the preset's "auto" for a 300-frame video
TINY = {"space_res": [8, 16], "features": 4, "density_hidden": 16, "color_hidden": [16]}
PARTS = ("encoder_fwd", "density_mlp_fwd", "color_mlp_fwd", "encoder_bwd", "density_mlp_bwd",
         "color_mlp_bwd", "glue")
PEER_TOLERANCE = 5e-3  # max relative difference of outputs and gradients (f32 both sides; a
#                        different function differs by O(1))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=262144, help="points per step (default 262144)")
    p.add_argument("--rays", type=int, default=4096, help="rays the points belong to (default 4096)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps after the warm-up (default 5)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads, Taichi and torch (default 2)")
    p.add_argument("--arch", default="cpu", choices=["cpu", "cuda", "vulkan", "auto"],
                   help="Taichi backend (default cpu); the torch peer runs on cuda when this is cuda")
    p.add_argument("--precision", default="f32", choices=["f32", "f64"], help="default f32")
    p.add_argument("--size", default="published", choices=["published", "tiny"],
                   help="published: the preset's field (23.6 M parameters); tiny: a small field for "
                        "smoke runs")
    p.add_argument("--points", default="uniform", choices=["uniform", "rays", "box"],
                   help="uniform (default): every point drawn alone, uniformly in [-1, 1]^4; rays: as "
                        "training draws them, evenly spaced along each ray's segment through the box "
                        "(a random point and direction), one time per ray; box: all in one box of side "
                        "2e-3, every texel read from the cache (arithmetic without cache misses)")
    p.add_argument("--no-torch", action="store_true", help="time the Taichi field only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", action="store_true",
                   help="append the JSON line, with date, machine and command, to docs/results/field.jsonl")
    args = p.parse_args(argv)
    if min(args.samples, args.rays, args.repeats, args.threads) < 1 or args.samples % args.rays:
        p.error("--samples, --rays, --repeats and --threads must be >= 1, and --rays must divide --samples")
    if args.precision == "f64" and not args.no_torch:
        p.error("the torch peer runs in f32: use --precision f32 or --no-torch")
    return args


def model_config(size: str) -> dict:
    from taichi_syncnerf.config import load_config

    m = load_config(PRESET)["kplanes"]
    if size == "tiny":
        m.update(TINY)
    return m


class Timer:
    """Wraps methods of the field's components so that each call is timed (synchronised)."""

    def __init__(self, ti):
        self.ti = ti
        self.times = {}

    def wrap(self, obj, method, name):
        fn = getattr(obj, method)

        def timed(*a, **k):
            self.ti.sync()
            t0 = time.perf_counter()
            fn(*a, **k)
            self.ti.sync()
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0

        setattr(obj, method, timed)


BOX_SIDE = 2e-3


def box_points(n: int, rng) -> np.ndarray:
    """(n, 4) points uniform in one box of side ``BOX_SIDE`` around a uniform centre in
    [-0.9, 0.9]^4: at most 2 texels per axis of every plane, so all lookups hit the cache."""
    centre = rng.uniform(-0.9, 0.9, 4)
    return centre + rng.uniform(-0.5 * BOX_SIDE, 0.5 * BOX_SIDE, (n, 4))


def ray_points(n: int, rays: int, dirs: np.ndarray, rng) -> np.ndarray:
    """(n, 4) points in [-1, 1]^4 as a training batch samples camera rays: ray r (rows
    [r * n / rays, (r + 1) * n / rays)) passes through a uniform point of the box along its view
    direction ``dirs[r]``, its samples evenly spaced over its segment inside the box, all at the
    ray's one (uniform) time."""
    per = n // rays
    d = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    o = rng.uniform(-1.0, 1.0, (rays, 3))
    with np.errstate(divide="ignore"):
        inv = 1.0 / d
        lo = np.minimum((-1.0 - o) * inv, (1.0 - o) * inv).max(1)
        hi = np.maximum((-1.0 - o) * inv, (1.0 - o) * inv).min(1)
    s = lo[:, None] + (hi - lo)[:, None] * ((np.arange(per) + 0.5) / per)[None, :]
    xyz = np.clip(o[:, None, :] + s[..., None] * d[:, None, :], -1.0, 1.0)
    t = np.broadcast_to(rng.uniform(-1.0, 1.0, (rays, 1, 1)), (rays, per, 1))
    return np.concatenate([xyz, t], axis=2).reshape(n, 4)


def build_taichi(args):
    import taichi as ti

    from taichi_syncnerf import runtime
    from taichi_syncnerf.kernels.sampling import RaySampler
    from taichi_syncnerf.models.kplanes.fields import RadianceField

    n, R = args.samples, args.rays
    field = RadianceField(model_config(args.size), TIME_RES if args.size == "published" else 8, n, R,
                          args.seed)
    rng = np.random.default_rng(args.seed)
    fdt = runtime.np_float()
    # time planes random too (the default starts them at 1)
    field.encoder.set_params(rng.uniform(0.1, 1.0, field.encoder.n_params))
    smp = RaySampler(R, n)
    near, far = ti.field(float, shape=R), ti.field(float, shape=R)
    near.fill(2.0)
    far.fill(6.0)
    smp.stratified(near, far, R, n // R)
    pts = ti.field(float, shape=(n, 4), needs_grad=True)
    dirs = ti.field(float, shape=(R, 3))
    pts_np = rng.uniform(-1.0, 1.0, (n, 4))    # drawn for "rays" too: the draws after it stay the same
    dirs_np = rng.normal(size=(R, 3))
    if args.points == "rays":
        pts_np = ray_points(n, R, dirs_np, np.random.default_rng([args.seed, 1]))
    elif args.points == "box":
        pts_np = box_points(n, np.random.default_rng([args.seed, 2]))
    data = dict(pts=pts_np.astype(fdt), dirs=dirs_np.astype(fdt),
                g_sigma=rng.normal(size=n).astype(fdt), g_rgb=rng.normal(size=(n, 3)).astype(fdt),
                ray_of=smp.ray_id.to_numpy()[:n].astype(np.int64))
    pts.from_numpy(data["pts"])
    dirs.from_numpy(data["dirs"])
    return field, smp, pts, dirs, data


def run_taichi(args, field, smp, pts, dirs, data):
    import taichi as ti

    timer = Timer(ti)
    for comp, tag in ((field.encoder, "encoder"), (field.density_mlp, "density_mlp"),
                      (field.color_mlp, "color_mlp")):
        timer.wrap(comp, "forward", f"{tag}_fwd")
        timer.wrap(comp, "backward", f"{tag}_bwd")
    R = args.rays
    params = [f for f in field.named_params().values()]

    # output gradients, set once (the backward reads them and leaves them as they are)
    field.sigma.grad.from_numpy(data["g_sigma"])
    field.rgb.grad.from_numpy(data["g_rgb"])

    def step():
        for f in params:
            f.grad.fill(0.0)
        ti.sync()
        timer.times = {}
        t0 = time.perf_counter()
        field.encode_directions(dirs, R)
        field.forward(pts, smp, R)
        field.backward(pts, smp, R, coord_grad=True)
        ti.sync()
        times = dict(timer.times)
        times["total"] = time.perf_counter() - t0
        times["glue"] = times["total"] - sum(timer.times.values())
        return times

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    runs = [step() for _ in range(args.repeats)]
    return first, runs


def taichi_outputs(field, pts, n):
    return dict(sigma=field.sigma.to_numpy()[:n], rgb=field.rgb.to_numpy()[:n],
                x_grad=pts.grad.to_numpy()[:n], encoder_grad=field.encoder.get_grad(),
                density_mlp_grad=field.density_mlp.params.grad.to_numpy(),
                color_mlp_grad=field.color_mlp.params.grad.to_numpy())


def _flat_mlp_grad(seq):
    out = []
    for mod in seq:
        if hasattr(mod, "weight"):
            w, b = mod.weight.grad.cpu().numpy(), mod.bias.grad.cpu().numpy()
            out.append(np.concatenate([w, b[:, None]], 1).ravel())
    return np.concatenate(out)


def run_torch(args, field, data, want):
    """Check the peer against the Taichi field's outputs, then time it. Returns (first, runs, diffs)."""
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from field_torch import TorchHybridField, step

    device = "cuda" if args.arch == "cuda" and torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    model = TorchHybridField(field, device)
    x = torch.tensor(data["pts"], device=device, requires_grad=True)
    dirs = torch.tensor(data["dirs"], device=device)
    ray_of = torch.tensor(data["ray_of"], device=device)
    gs, gr = torch.tensor(data["g_sigma"], device=device), torch.tensor(data["g_rgb"], device=device)
    t0 = time.perf_counter()
    step(model, x, dirs, ray_of, gs, gr, sync)
    first = time.perf_counter() - t0
    # the same function: outputs and every gradient against the Taichi field's
    with torch.no_grad():
        sigma, rgb = model(x, dirs, ray_of)
    enc = field.encoder
    plane_grad = np.zeros(enc.n_params, np.float32)
    for spec, p in zip(enc.layout, model.planes):
        plane_grad[spec.offset:spec.offset + spec.size] = p.grad[0].permute(1, 2, 0).reshape(-1).cpu().numpy()
    got = dict(sigma=sigma.cpu().numpy(), rgb=rgb.cpu().numpy(), x_grad=x.grad.cpu().numpy(),
               encoder_grad=plane_grad, density_mlp_grad=_flat_mlp_grad(model.density_mlp),
               color_mlp_grad=_flat_mlp_grad(model.color_mlp))
    diffs = {}
    for k, w in want.items():
        w = np.asarray(w, np.float64)
        diffs[k] = float(np.abs(got[k] - w).max() / max(np.abs(w).max(), 1e-30))
    runs = []
    for _ in range(args.repeats):
        f, b = step(model, x, dirs, ray_of, gs, gr, sync)
        runs.append({"forward": f, "backward": b, "total": f + b})
    return first, runs, diffs, device


def main(argv=None) -> int:
    args = parse_args(argv)
    from taichi_syncnerf import runtime

    info = runtime.init(arch=args.arch, threads=args.threads, precision=args.precision)
    n = args.samples
    t0 = time.perf_counter()
    field, smp, pts, dirs, data = build_taichi(args)
    setup_s = time.perf_counter() - t0
    first, runs = run_taichi(args, field, smp, pts, dirs, data)
    med = {k: float(np.median([r[k] for r in runs])) for k in PARTS + ("total",)}
    low = {k: float(np.min([r[k] for r in runs])) for k in PARTS + ("total",)}
    total = med["total"]
    enc, dm, cm = field.encoder, field.density_mlp, field.color_mlp
    n_params = enc.n_params + dm.n_params + cm.n_params

    print(f"K-Planes hybrid field ({args.size}), {n} samples on {args.rays} rays ({args.points} points), "
          f"arch={info.arch}, threads={args.threads}, precision={args.precision}, "
          f"encoder backward={enc.backward_mode}")
    print(f"encoder {enc.n_params:,} parameters; density MLP {'-'.join(map(str, dm.dims))}; colour MLP "
          f"{'-'.join(map(str, cm.dims))}; {n_params:,} parameters in all; setup {setup_s:.2f} s, "
          f"first step (compiles) {first:.2f} s")
    print(f"{'part':<16}{'median ms':>12}{'min ms':>10}{'share':>8}")
    for k in PARTS:
        print(f"{k:<16}{med[k] * 1e3:>12.1f}{low[k] * 1e3:>10.1f}{med[k] / total:>8.0%}")
    print(f"{'total':<16}{total * 1e3:>12.1f}{low['total'] * 1e3:>10.1f}")
    print(f"Taichi: {n / total / 1e6:.3f} M samples/s (median of {args.repeats})")
    result = {
        "name": "field", "size": args.size, "samples": n, "rays": args.rays, "points": args.points,
        "samples_per_s": n / total, "total_ms": total * 1e3,
        **{f"{k}_ms": med[k] * 1e3 for k in PARTS},
        "threads": args.threads, "arch": info.arch, "precision": args.precision, "repeats": args.repeats,
        "params": n_params, "encoder_params": enc.n_params, "encoder_backward": enc.backward_mode,
        "first_step_s": first,
    }
    if not args.no_torch:
        want = taichi_outputs(field, pts, n)
        t_first, t_runs, diffs, device = run_torch(args, field, data, want)
        worst = max(diffs, key=diffs.get)
        if diffs[worst] > PEER_TOLERANCE:
            print(f"error: the PyTorch peer differs from the Taichi field ({worst}: relative "
                  f"{diffs[worst]:.2e}); its timing would not compare the same function", file=sys.stderr)
            return 1
        t_med = {k: float(np.median([r[k] for r in t_runs])) for k in ("forward", "backward", "total")}
        ratio = t_med["total"] / total
        print(f"PyTorch peer (grid_sample, torch {__import__('torch').__version__}, {device}, "
              f"{args.threads} threads): forward {t_med['forward'] * 1e3:.1f} ms, backward "
              f"{t_med['backward'] * 1e3:.1f} ms, {n / t_med['total'] / 1e6:.3f} M samples/s; same outputs "
              f"and gradients to {diffs[worst]:.1e} (relative, {worst})")
        print(f"Taichi / PyTorch: {ratio:.2f}x")
        result.update({"torch_samples_per_s": n / t_med["total"], "torch_total_ms": t_med["total"] * 1e3,
                       "torch_forward_ms": t_med["forward"] * 1e3,
                       "torch_backward_ms": t_med["backward"] * 1e3,
                       "torch_device": device, "torch_first_step_s": t_first, "speedup_vs_torch": ratio,
                       "peer_max_rel_diff": diffs[worst]})
    print(json.dumps(result))
    if args.record:
        from report import record
        record(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
