"""kernels/splat.py in an f32 runtime against the float64 twin (a subprocess: the tests run in f64),
forward and backward (the runtime's default kernels: lanes on a CPU, per pixel on a GPU), the
render-only lanes kernel against both the twin and the per-pixel kernel, and the lanes kernels'
e^x against the correctly rounded value."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

try:
    from .f32_common import f32, rel_err
    from .test_splat import H, N_MAX, PARAMS, W, Scene, images, kernel_grads, make_scene, output_grads, ref_forward
    from .test_splat_lanes import crowded_scene
except ImportError:  # run as a script (the f32 subprocess): tests/kernels is on sys.path
    from f32_common import f32, rel_err
    from test_splat import H, N_MAX, PARAMS, W, Scene, images, kernel_grads, make_scene, output_grads, ref_forward
    from test_splat_lanes import crowded_scene


def f32_scene(sc):
    """``sc`` with every parameter and the camera rounded to float32 (inputs an f32 runtime holds exactly)."""
    from taichi_syncnerf.kernels import splat

    for k in PARAMS:
        sc[k] = f32(sc[k])
    c = sc["cam"]
    sc["cam"] = splat.Camera(*(float(f32(v)) for v in (c.fx, c.fy, c.cx, c.cy)), c.width, c.height,
                             f32(c.R), f32(c.t))
    return sc


def f32_errors(arch="cpu"):
    """Forward and backward in an f32 runtime against the float64 twin on the same (f32-exact)
    inputs: {quantity: error} with f32_common.rel_err. With the thresholds off ("smooth") every
    output is compared; with the defaults a pixel within rounding of a threshold may walk another
    number of Gaussians: "mismatch" is the fraction of such pixels, the rest is compared."""
    from taichi_syncnerf import runtime

    runtime.init(arch=arch, threads=2, precision="f32", offline_cache=True)
    from taichi_syncnerf.kernels import splat
    from taichi_syncnerf.kernels.reference import splat as ref

    sc = f32_scene(make_scene())
    grads = [f32(g) for g in output_grads()]
    ras = splat.Rasterizer(N_MAX, W, H, sh_degree=3)
    scene_fields = Scene(sc)
    errs = {}
    scene_fields.forward(ras, sc, alpha_min=0.0, t_min=0.0)
    ras.backward(*grads)
    fwd = ref_forward(sc, alpha_min=0.0, t_min=0.0)
    want = ref.backward(fwd, *grads)
    got = images(ras)
    errs.update({f"smooth_{k}": rel_err(got[k], fwd[k]) for k in ("colour", "alpha", "depth")})
    errs.update({f"smooth_{k}": rel_err(v, want[k]) for k, v in kernel_grads(ras, sc["n"]).items()})
    scene_fields.forward(ras, sc)
    fwd, got = ref_forward(sc), images(ras)
    same = got["n_contrib"] == fwd["n_contrib"]
    errs["mismatch"] = float(np.mean(~same))
    errs.update({k: rel_err(got[k][same], fwd[k][same]) for k in ("colour", "alpha", "depth")})
    # the render-only kernel (lanes, its own exp) on a crowded scene: against the twin, and against
    # the per-pixel kernel (libm's exp; same f32 inputs)
    sc = f32_scene(crowded_scene())
    c = sc["cam"]
    w, h = c.width, c.height
    fields = Scene(sc, n_max=sc["n"])
    out = {}
    for backward in (True, False):
        ras = splat.Rasterizer(sc["n"], w, h, sh_degree=3, pixel_parallel=backward)
        fields.forward(ras, sc, backward=backward)
        out[backward] = images(ras, h, w)
    fwd, got = ref_forward(sc), out[False]
    same = got["n_contrib"] == fwd["n_contrib"]
    errs["render_only_mismatch"] = float(np.mean(~same))
    errs.update({f"render_only_{k}": rel_err(got[k][same], fwd[k][same]) for k in ("colour", "alpha", "depth")})
    same = got["n_contrib"] == out[True]["n_contrib"]
    errs["render_only_vs_training_mismatch"] = float(np.mean(~same))
    errs.update({f"render_only_vs_training_{k}": rel_err(got[k][same], out[True][k][same])
                 for k in ("colour", "alpha", "depth")})
    errs["exp_ulp"] = exp_ulp()
    return {"arch": runtime.info().arch, "errors": errs}


def exp_ulp():
    """Largest distance, in float32 ulps, of the render-only kernel's e^x (f32 runtime) from the
    correctly rounded e^x, over 10^6 arguments in [-80, 0] (a grid and random points)."""
    import taichi as ti

    from taichi_syncnerf.kernels import splat_funcs as sf

    xs = np.concatenate([np.linspace(-80.0, 0.0, 500_000),
                         -np.random.default_rng(0).exponential(2.0, 500_000)]).astype(np.float32)
    xs = xs[xs >= -80.0]
    x, y = ti.field(ti.f32, len(xs)), ti.field(ti.f32, len(xs))
    x.from_numpy(xs)

    @ti.kernel
    def run():
        for i in x:
            y[i] = sf._exp_neg(x[i], sf.EXP_FLOOR["f32"], sf.EXP_POLY["f32"], True)

    run()
    want = np.exp(xs.astype(np.float64)).astype(np.float32).astype(np.float64)
    ulp = 2.0 ** (np.floor(np.log2(want)) - 23)       # want is normal: > e^-80
    return float(np.max(np.abs(y.to_numpy().astype(np.float64) - want) / ulp))


# about ten times the errors measured on the CPU (2 threads): forward <= 8e-6 (alpha = 1 - T near
# 0), gradients <= 1.5e-5 (quaternions), 1 pixel of 960 walking another number of Gaussians
F32_TOLERANCE = {"exp_ulp": 1.0,   # the render-only kernel's e^x: 1 ulp measured (exact for ~90 % of x)
                 "mismatch": 0.01, "render_only_mismatch": 0.01, "render_only_vs_training_mismatch": 0.002,
                 # the render-only kernel's e^x and libm's: each within 1 ulp of the correctly rounded value
                 "render_only_vs_training_colour": 1e-5, "render_only_vs_training_alpha": 1e-5,
                 "render_only_vs_training_depth": 1e-5}
F32_FORWARD_TOLERANCE, F32_GRAD_TOLERANCE = 1e-4, 2e-4


def test_f32_matches_float64_twin():
    """On ``SYNCNERF_F32_ARCH`` (default cpu); ``SYNCNERF_SPLAT_F32_OUT=FILE`` keeps the errors as
    JSON (benchmarks/gpu_check.sh does both)."""
    arch = os.environ.get("SYNCNERF_F32_ARCH", "cpu")
    proc = subprocess.run([sys.executable, str(Path(__file__)), arch], capture_output=True,
                          text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if os.environ.get("SYNCNERF_SPLAT_F32_OUT"):
        Path(os.environ["SYNCNERF_SPLAT_F32_OUT"]).write_text(json.dumps(result))
    if arch != "cpu":
        assert result["arch"] == arch, f"asked for {arch}, the check ran on {result['arch']}"
    errs = result["errors"]
    forward = ("colour", "alpha", "depth")
    too_large = {k: v for k, v in errs.items() if not v <= F32_TOLERANCE.get(
        k, F32_FORWARD_TOLERANCE if k.split("_")[-1] in forward else F32_GRAD_TOLERANCE)}
    assert not too_large, f"f32 errors above tolerance: {too_large} (all: {errs})"


if __name__ == "__main__":
    os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")
    print(json.dumps(f32_errors(sys.argv[1] if len(sys.argv) > 1 else "cpu")))
