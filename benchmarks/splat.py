"""Forward and backward time per frame of the Gaussian rasterizer (kernels/splat.py).

Scene: ``--gaussians`` Gaussians seen by one camera 4 units from the origin looking at it
(horizontal field of view 0.9 rad, centred principal point), random rotations, SH degree
``--sh-degree`` with coefficients N(0, 0.2^2), and ``--layout``:

- ``cube`` (default): means uniform in [-1.5, 1.5]^3, scales log-normal around half the mean
  spacing ``3 / N^(1/3)`` (each axis x exp(N(0, 0.4^2))), opacities sigmoid(U(-2, 3)): a
  space-filling fog, the hard case (a pixel blends about a hundred Gaussians before it stops);
- ``shell``: means on the sphere of radius 1.2 (jitter N(0, 0.01^2)), scales around half the
  spacing on the sphere ``sqrt(4 pi 1.2^2 / N)``, opacities sigmoid(U(1, 5)): an opaque surface,
  closer to a trained scene (pixels stop after a few layers).

With 20,000 Gaussians one is listed in about 120 16x16 tiles (cube) or 15 (shell) at 1352x1014,
and 3.5 (cube) at 128x96.

One frame = ``forward`` (projection, tile counts, scan, fill, per-tile sort, blending) and
``backward`` from a random dL/dcolour (dL/dalpha and dL/ddepth off, as an L1 training step):
per-pixel replay, per-Gaussian gather and chain rule to every parameter. Both are timed with a
``ti.sync()`` after each, over ``--repeats`` frames after one warm-up frame (compilation:
``first_frame_s``); medians reported. One more frame with a sync after every kernel gives the
time per stage (``stage_ms``).

The render-only path (``forward(backward=False)``: evaluation, videos, the viewer) is timed the same
way after one warm-up frame of its own (``render_only_first_s``): ``render_only_ms``.

Usage: python benchmarks/splat.py [--gaussians 20000] [--size 128x96] [--threads 2] [--arch cpu]
                                  [--precision f32] [--repeats 5] [--sh-degree 3] [--seed 0]
                                  [--layout cube|shell]

Prints the settings, the medians and the stage table; the last line is one JSON object:
``name`` ("splat"), ``gaussians``, ``layout``, ``width``, ``height``, ``threads``, ``arch``,
``precision``, ``sh_degree``, ``repeats``, ``forward_ms``, ``backward_ms`` (medians),
``forward_min_ms``, ``backward_min_ms``, ``first_frame_s``, ``render_only_ms`` (median),
``render_only_min_ms``, ``render_only_first_s``, ``render_only_fps`` (1000 / ``render_only_ms``),
``visible`` (Gaussians with a
radius), ``entries`` (tile list entries), ``mean_walked`` (list entries a pixel walks to the last Gaussian it
blends, mean of n_contrib), ``stage_ms``.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gaussians", type=int, default=20000)
    p.add_argument("--size", default="128x96", help="image WxH (default 128x96)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--arch", default="cpu", choices=["cpu", "cuda", "vulkan", "auto"])
    p.add_argument("--precision", default="f32", choices=["f32", "f64"])
    p.add_argument("--repeats", type=int, default=5, help="timed frames after the warm-up")
    p.add_argument("--sh-degree", type=int, default=3, choices=[0, 1, 2, 3])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", default="cube", choices=["cube", "shell"])
    p.add_argument("--record", action="store_true",
                   help="append the JSON line, with date, machine and command, to docs/results/splat.jsonl")
    args = p.parse_args(argv)
    try:
        args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size must be WxH, got {args.size!r}")
    return args


def make_scene(n, width, height, sh_degree, rng, layout="cube"):
    """Numpy parameters of the cloud (see the module docstring) and an OpenGL camera-to-world
    looking at it."""
    from taichi_syncnerf.data.cameras import Intrinsics, look_at

    k = (sh_degree + 1) ** 2
    if layout == "cube":
        spacing = 3.0 / n ** (1.0 / 3.0)
        means = rng.uniform(-1.5, 1.5, (n, 3))
        logits = rng.uniform(-2.0, 3.0, n)
    else:
        spacing = np.sqrt(4.0 * np.pi * 1.2**2 / n)
        d = rng.normal(size=(n, 3))
        means = 1.2 * d / np.linalg.norm(d, axis=1, keepdims=True) + rng.normal(0.0, 0.01, (n, 3))
        logits = rng.uniform(1.0, 5.0, n)
    params = dict(means=means, log_scales=np.log(0.5 * spacing) + rng.normal(0.0, 0.4, (n, 3)),
                  quats=rng.normal(size=(n, 4)), opacity_logits=logits,
                  sh=rng.normal(0.0, 0.2, (n, 3 * k)))
    intr = Intrinsics.from_fov(0.9, width, height)
    c2w = look_at(np.array([0.0, -4.0, 0.8]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
    return params, intr, c2w


def main(argv=None) -> int:
    args = parse_args(argv)
    from taichi_syncnerf import runtime

    info = runtime.init(arch=args.arch, threads=args.threads, precision=args.precision)
    import taichi as ti

    from taichi_syncnerf.kernels import splat

    n, w, h = args.gaussians, args.width, args.height
    params, intr, c2w = make_scene(n, w, h, args.sh_degree, np.random.default_rng(args.seed),
                                   args.layout)
    cam = splat.Camera.from_opengl_c2w(intr, c2w)
    dtype = runtime.np_float()
    fields = {}
    for name, arr in params.items():
        fields[name] = ti.field(float, shape=arr.shape)
        fields[name].from_numpy(arr.astype(dtype))
    ras = splat.Rasterizer(n, w, h, sh_degree=args.sh_degree)
    ras.colour.grad.from_numpy(np.random.default_rng(args.seed + 1)
                               .normal(size=ras.colour.shape).astype(dtype))
    inputs = [fields[k] for k in ("means", "log_scales", "quats", "opacity_logits", "sh")]

    def frame():
        t0 = time.perf_counter()
        ras.forward(*inputs, n, cam, (1.0, 1.0, 1.0))
        ti.sync()
        t1 = time.perf_counter()
        ras.backward(d_colour=ras.colour.grad)
        ti.sync()
        return 1e3 * (t1 - t0), 1e3 * (time.perf_counter() - t1)

    def render_only():
        t0 = time.perf_counter()
        ras.forward(*inputs, n, cam, (1.0, 1.0, 1.0), backward=False)
        ti.sync()
        return 1e3 * (time.perf_counter() - t0)

    t0 = time.perf_counter()
    frame()
    first = time.perf_counter() - t0
    times = np.array([frame() for _ in range(args.repeats)])
    first_render = render_only() / 1e3
    render_times = np.array([render_only() for _ in range(args.repeats)])
    render_ms = float(np.median(render_times))
    ras.stage_ms = {}
    frame()
    stages = {k: round(v, 2) for k, v in ras.stage_ms.items()}
    ras.stage_ms = None
    radius = ras.radius.to_numpy()[:n]
    result = dict(
        name="splat", gaussians=n, layout=args.layout, width=w, height=h, threads=args.threads,
        arch=info.arch, precision=args.precision, sh_degree=args.sh_degree, repeats=args.repeats,
        forward_ms=round(float(np.median(times[:, 0])), 2),
        backward_ms=round(float(np.median(times[:, 1])), 2),
        forward_min_ms=round(float(times[:, 0].min()), 2),
        backward_min_ms=round(float(times[:, 1].min()), 2),
        first_frame_s=round(first, 2), render_only_ms=round(render_ms, 2),
        render_only_min_ms=round(float(render_times.min()), 2),
        render_only_first_s=round(first_render, 2), render_only_fps=round(1e3 / max(render_ms, 1e-6), 2),
        visible=int((radius > 0).sum()), entries=int(ras.n_entries),
        mean_walked=round(float(ras.n_contrib.to_numpy()[:h, :w].mean()), 2), stage_ms=stages)
    print(f"{n} Gaussians, {args.layout} (visible {result['visible']}, {result['entries']} tile "
          f"entries, {result['mean_walked']} list entries walked per pixel), {w}x{h}, {info.arch} "
          f"{args.threads} threads, {args.precision}, SH degree {args.sh_degree}")
    if info.note:
        print(info.note)
    print(f"first frame (compilation) {first:.2f} s; median of {args.repeats}: "
          f"forward {result['forward_ms']:.1f} ms, backward {result['backward_ms']:.1f} ms "
          f"(min {result['forward_min_ms']:.1f} / {result['backward_min_ms']:.1f})")
    print(f"render only (forward(backward=False)): first frame {first_render:.2f} s; median "
          f"{result['render_only_ms']:.1f} ms (min {result['render_only_min_ms']:.1f}), "
          f"{result['render_only_fps']:.1f} frames/s")
    print("stage (one frame, sync after each kernel):")
    for k, v in stages.items():
        print(f"  {k:20s} {v:9.2f} ms")
    print(json.dumps(result))
    if args.record:
        from report import record
        record(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
