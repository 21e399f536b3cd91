import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import points
from taichi_syncnerf.kernels.reference import points as ref


def field(arr, dtype=float, grad=False):
    arr = np.asarray(arr)
    f = ti.field(dtype, shape=arr.shape, needs_grad=grad)
    f.from_numpy(arr.astype(np.int32 if dtype == ti.i32 else np.float64))
    return f


def setup(rng, n_rays=7, n_cams=3):
    counts = rng.integers(0, 5, size=n_rays).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
    S = int(counts.sum())
    t0 = np.sort(rng.uniform(0.1, 0.9, size=S))
    t1 = t0 + rng.uniform(0.0, 0.05, size=S)
    return dict(
        rays_o=rng.normal(size=(n_rays, 3)), rays_d=rng.normal(size=(n_rays, 3)),
        ray_time=rng.uniform(-0.8, 0.8, n_rays), ray_cam=rng.integers(0, n_cams, n_rays).astype(np.int32),
        offsets=rng.normal(scale=0.05, size=n_cams), t0=t0, t1=t1, ray_start=starts, ray_count=counts,
    ), S


@pytest.mark.parametrize("use_offsets", [True, False])
def test_points_forward_and_offset_gradient(rng, use_offsets):
    d, S = setup(rng)
    lo, hi = (-2.0, -1.5, -1.0), (2.0, 1.0, 3.0)
    f = {k: field(v, ti.i32 if v.dtype == np.int32 else float, grad=(k == "offsets")) for k, v in d.items()}
    pts = ti.field(float, shape=(S + 3, 4), needs_grad=True)
    points.points_forward(f["rays_o"], f["rays_d"], f["ray_time"], f["ray_cam"], f["offsets"], f["t0"], f["t1"],
                          f["ray_start"], f["ray_count"], pts, len(d["ray_start"]), lo, hi, use_offsets)
    want = ref.points_forward(**d, box_lo=lo, box_hi=hi, use_offsets=use_offsets)
    np.testing.assert_allclose(pts.to_numpy()[:S], want, rtol=1e-12, atol=1e-12)

    g = rng.normal(size=(S + 3, 4))
    pts.grad.from_numpy(g)
    f["offsets"].grad.fill(0.0)
    points.points_backward(pts, f["ray_cam"], f["offsets"], f["ray_start"], f["ray_count"], len(d["ray_start"]))
    want_g = ref.points_backward(g, d["ray_cam"], len(d["offsets"]), d["ray_start"], d["ray_count"])
    np.testing.assert_allclose(f["offsets"].grad.to_numpy(), want_g, rtol=1e-12, atol=1e-12)

    # finite differences of L = sum(g * pts) w.r.t. each offset
    if use_offsets:
        eps = 1e-6
        for k in range(len(d["offsets"])):
            dp, dm = dict(d), dict(d)
            dp["offsets"] = d["offsets"].copy(); dp["offsets"][k] += eps
            dm["offsets"] = d["offsets"].copy(); dm["offsets"][k] -= eps
            lp = (ref.points_forward(**dp, box_lo=lo, box_hi=hi) * g[:S]).sum()
            lm = (ref.points_forward(**dm, box_lo=lo, box_hi=hi) * g[:S]).sum()
            assert (lp - lm) / (2 * eps) == pytest.approx(want_g[k], rel=1e-6, abs=1e-8)


def test_color_input(rng):
    S, R, n_sh, n_geo = 11, 4, 4, 3
    sh = rng.normal(size=(R, 16))
    dout = rng.normal(size=(S, 1 + n_geo)) * 3
    ray = rng.integers(0, R, S).astype(np.int32)
    f_sh, f_dout, f_ray = field(sh), field(dout, grad=True), field(ray, ti.i32)
    cin = ti.field(float, shape=(S, n_sh + n_geo), needs_grad=True)
    points.color_input_forward(f_sh, f_dout, f_ray, cin, S, n_sh, n_geo)
    np.testing.assert_allclose(cin.to_numpy(), ref.color_input_forward(sh, dout, ray, n_sh, n_geo))
    gc = rng.normal(size=(S, n_sh + n_geo))
    cin.grad.from_numpy(gc)
    f_dout.grad.fill(7.0)
    points.color_input_backward(f_dout, cin, S, n_sh, n_geo)
    want = np.full_like(dout, 7.0); want[:, 1:] = gc[:, n_sh:]
    np.testing.assert_allclose(f_dout.grad.to_numpy(), want)
