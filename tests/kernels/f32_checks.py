"""Every kernel in float32 against its float64 numpy twin: forward and backward.

Training runs in f32 while the kernel tests run in f64, so a problem that only f32 shows
(summation order, cancellation in the renderer's backward, block sums of the MLP's weight
gradients, atomic adds of the plane encoder) would pass them. This script initialises its own
Taichi runtime in f32, runs each kernel family on inputs that are exactly representable in f32,
and compares with the float64 twin evaluated on the same inputs.

Error of one output array: ``max_i |got_i - want_i| / (|want_i| + 0.01 * max_j |want_j|)``, a
relative error that does not blow up on entries near zero but still sees an entry at 1 % of the
largest one go wrong.

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


def rel_err(got, want, floor=1e-2):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise ValueError(f"shape {got.shape} != {want.shape}")
    scale = np.abs(want).max() if want.size else 0.0
    if scale == 0.0:
        return float(np.abs(got).max()) if got.size else 0.0
    return float((np.abs(got - want) / (np.abs(want) + floor * scale)).max())


def f32(a):
    """Round to float32 values, kept as float64 (inputs both sides see exactly)."""
    return np.asarray(a, np.float64).astype(np.float32).astype(np.float64)


def put(field, arr):
    """Load ``arr`` into the first rows of ``field`` (rest zero), in the field's dtype."""
    full = np.zeros(field.shape, dtype=field.to_numpy().dtype)
    arr = np.asarray(arr)
    full[: len(arr)] = arr
    field.from_numpy(full)


def ti_field(shape, dtype=None, grad=False):
    import taichi as ti

    dtype = float if dtype is None else {"i32": ti.i32}[dtype]
    return ti.field(dtype, shape=shape, needs_grad=grad)


# ------------------------------------------------------------------------ families


def check_planes(rng):
    from taichi_syncnerf.kernels import planes
    from taichi_syncnerf.kernels.reference import planes as ref

    F, space, time_res, n = 16, [16, 32], 12, 4000
    out = {}
    enc = planes.PlaneEncoder(4, F, space, time_res, max_points=n)
    x = ti_field((n, 4), grad=True)
    feat = ti_field((n, enc.output_dim), grad=True)
    params = f32(rng.uniform(0.1, 1.5, enc.n_params))  # time planes vary too
    pts = f32(rng.uniform(-1.0, 1.0, (n, 4)))
    g = f32(rng.normal(size=(n, enc.output_dim)))
    enc.set_params(params)
    put(x, pts)
    enc.forward(x, feat, n)
    out["forward"] = rel_err(feat.to_numpy(), ref.forward(params, pts, 4, F, space, time_res))
    want_p, want_x = ref.backward(params, pts, g, 4, F, space, time_res)
    for mode in ("owner", "atomic"):
        enc.zero_grad()
        put(feat.grad, g)
        enc.backward(x, feat, n, mode=mode)
        out[f"backward_{mode}_params"] = rel_err(enc.get_grad(), want_p)
        out[f"backward_{mode}_coords"] = rel_err(x.grad.to_numpy(), want_x)
    return out


def check_mlp(rng):
    from taichi_syncnerf.kernels import mlp
    from taichi_syncnerf.kernels.reference import mlp as ref

    out = {}
    # the published density MLP's widths (64 -> 64 -> 16) and one more hidden layer, over 3
    # weight-gradient blocks of 1024 samples (their block sums)
    for name, (d_in, hidden, d_out, n) in {"mlp": (64, [64, 64], 16, 3000)}.items():
        net = mlp.MLP(d_in, hidden, d_out, n, seed=3)
        inp = ti_field((n, d_in), grad=True)
        res = ti_field((n, d_out), grad=True)
        layers = [(f32(rng.normal(size=w.shape) / np.sqrt(w.shape[1])), f32(rng.normal(size=b.shape) * 0.1))
                  for w, b in net.layers()]
        net.set_params(mlp.flatten(layers))
        x = f32(rng.normal(size=(n, d_in)))
        g = f32(rng.normal(size=(n, d_out)))
        put(inp, x)
        net.forward(inp, res, n)
        out[f"{name}_forward"] = rel_err(res.to_numpy(), ref.forward(layers, x))
        put(res.grad, g)
        net.params.grad.fill(0.0)
        net.backward(inp, res, n, input_grad=True)
        want_layers, want_x = ref.backward(layers, x, g)
        out[f"{name}_backward_params"] = rel_err(net.params.grad.to_numpy(),
                                                 mlp.flatten(want_layers))
        out[f"{name}_backward_input"] = rel_err(inp.grad.to_numpy(), want_x)
    return out


def check_hashgrid(rng):
    from taichi_syncnerf.kernels import hashgrid
    from taichi_syncnerf.kernels.reference import hashgrid as ref

    cfg = dict(n_levels=6, n_features=2, log2_table_size=10, base_res=4, max_res=64)
    n = 3000
    enc = hashgrid.HashGridEncoder(dims=4, max_points=n, seed=1, **cfg)
    twin = ref.HashGridEncoder(dims=4, seed=1, **cfg)
    params = f32(rng.normal(size=enc.n_params))
    enc.params.from_numpy(params.astype(np.float32))
    twin.params = params
    x = ti_field((n, 4), grad=True)
    feat = ti_field((n, enc.output_dim), grad=True)
    pts = f32(rng.uniform(-1.0, 1.0, (n, 4)))
    g = f32(rng.normal(size=(n, enc.output_dim)))
    put(x, pts)
    enc.forward(x, feat, n)
    put(feat.grad, g)
    enc.params.grad.fill(0.0)
    enc.backward(x, feat, n, coord_grad=True)
    want_p, want_x = twin.backward(pts, g)
    return {"forward": rel_err(feat.to_numpy(), twin.forward(pts)),
            "backward_params": rel_err(enc.params.grad.to_numpy(), want_p),
            "backward_coords": rel_err(x.grad.to_numpy(), want_x)}


def _samples(rng, counts, near=(1.0, 2.0), far=(4.0, 6.0), jitter=True):
    """A RaySampler holding stratified samples with the given per-ray counts."""
    from taichi_syncnerf.kernels import sampling

    R = len(counts)
    near_f, far_f, cnt = ti_field(R), ti_field(R), ti_field(R, dtype="i32")
    put(near_f, f32(rng.uniform(*near, R)))
    put(far_f, f32(rng.uniform(*far, R)))
    put(cnt, np.asarray(counts, np.int32))
    smp = sampling.RaySampler(R, int(np.sum(counts)))
    smp.stratified(near_f, far_f, R, counts=cnt, jitter=jitter, seed=4)
    return smp, near_f, far_f


def check_render(rng):
    from taichi_syncnerf.kernels import render
    from taichi_syncnerf.kernels.reference import render as ref

    # long rays (256 samples) that end opaque, two with a surface, a ray of tiny densities, an
    # empty ray
    counts = [256, 256, 192, 0, 128, 256, 64]
    smp, _, _ = _samples(rng, counts)
    p = smp.to_numpy()
    S, R = smp.n_samples, len(counts)
    sig = rng.uniform(0.0, 3.0, S)
    a = p["ray_start"][4]
    sig[a:a + counts[4]] = rng.uniform(0.0, 1e-3, counts[4])
    for r, at in ((1, 150), (5, 40)):  # surfaces: a few samples of high alpha (T_{k+1} << T_k)
        b = p["ray_start"][r] + at
        sig[b:b + 3] = 10.0 ** rng.uniform(2.0, 3.0, 3)
    sig, col = f32(sig), f32(rng.uniform(0.0, 1.0, (S, 3)))
    bg = (0.25, 0.5, 1.0)
    sigma, rgb = ti_field(S, grad=True), ti_field((S, 3), grad=True)
    put(sigma, sig)
    put(rgb, col)
    ren = render.VolumeRenderer(R, S)
    ren.forward(smp, sigma, rgb, R, background=bg, threshold=1e-4)
    t0, t1 = f32(p["t0"]), f32(p["t1"])
    want = ref.forward(sig, col, t0, t1, p["ray_start"], p["ray_count"], bg, threshold=1e-4)
    out = {f"forward_{k}": rel_err(getattr(ren, k).to_numpy()[:len(want[k])], want[k])
           for k in ("colour", "opacity", "depth", "weights")}
    grads = dict(d_colour=f32(rng.normal(size=(R, 3))), d_opacity=f32(rng.normal(size=R)),
                 d_depth=f32(rng.normal(size=R)), d_weights=f32(rng.normal(size=S)))
    put(ren.colour.grad, grads["d_colour"])
    put(ren.opacity.grad, grads["d_opacity"])
    put(ren.depth.grad, grads["d_depth"])
    put(ren.weights.grad, grads["d_weights"])
    ren.backward(smp, sigma, rgb, R, d_colour=True, d_opacity=True, d_depth=True, d_weights=True)
    ds, drgb = ref.backward(sig, col, t0, t1, p["ray_start"], p["ray_count"], want, background=bg, **grads)
    # entry by entry down to 1e-6 of the largest: behind a surface the gradients are tiny, and a
    # backward that got them by cancellation (total minus prefix) would be wrong there
    out["backward_sigma"] = rel_err(sigma.grad.to_numpy(), ds, floor=1e-6)
    out["backward_rgb"] = rel_err(rgb.grad.to_numpy(), drgb)
    # colour alone (the training loss): its own cancellation-prone suffix sums
    ren.backward(smp, sigma, rgb, R, d_colour=True)
    ds, _ = ref.backward(sig, col, t0, t1, p["ray_start"], p["ray_count"], want, background=bg,
                         d_colour=grads["d_colour"])
    out["backward_sigma_colour_only"] = rel_err(sigma.grad.to_numpy(), ds, floor=1e-6)
    return out


def check_ray_losses(rng):
    from taichi_syncnerf.kernels import ray_losses, sampling
    from taichi_syncnerf.kernels.reference import ray_losses as ref

    out = {}
    R = 64
    pred, target = ti_field((R, 3), grad=True), ti_field((R, 3))
    a, b = f32(rng.uniform(0, 1, (R, 3))), f32(rng.uniform(0, 1, (R, 3)))
    put(pred, a)
    put(target, b)
    val = ray_losses.mse(pred, target, R)
    want, want_g = ref.mse(a, b)
    out["mse_value"], out["mse_grad"] = rel_err(val, want), rel_err(pred.grad.to_numpy(), want_g)

    counts = [128] * 8 + [48] * 8
    fine, near, far = _samples(rng, counts)
    fine.normalized_coords(near, far)
    p = fine.to_numpy()
    S = fine.n_samples
    w = f32(rng.uniform(0, 0.05, S))
    weights = ti_field(S, grad=True)
    put(weights, w)
    val = ray_losses.distortion(weights, fine, len(counts))
    s0, s1 = f32(fine.s0.to_numpy()[:S]), f32(fine.s1.to_numpy()[:S])
    want, want_g = ref.distortion(w, s0, s1, p["ray_start"], p["ray_count"])
    out["distortion_value"] = rel_err(val, want)
    out["distortion_grad"] = rel_err(weights.grad.to_numpy(), want_g)

    prop = sampling.RaySampler(len(counts), 32 * len(counts))
    prop.stratified(near, far, len(counts), 32, jitter=True, seed=9)
    q = prop.to_numpy()
    pw = f32(rng.uniform(0, 0.05, prop.n_samples))
    pweights = ti_field(prop.n_samples, grad=True)
    put(pweights, pw)
    val = ray_losses.interlevel(fine, weights, prop, pweights, len(counts))
    want, want_g = ref.interlevel(f32(p["t0"]), f32(p["t1"]), w, p["ray_start"], p["ray_count"],
                                  f32(q["t0"]), f32(q["t1"]), pw, q["ray_start"], q["ray_count"])
    out["interlevel_value"] = rel_err(val, want)
    out["interlevel_grad"] = rel_err(pweights.grad.to_numpy(), want_g)
    return out


def check_losses(rng):
    from taichi_syncnerf.kernels import losses
    from taichi_syncnerf.kernels.reference import losses as ref

    out = {}
    n = 5000
    x, y = ti_field((n, 2), grad=True), ti_field((n, 2), grad=True)
    xv, dy = f32(rng.uniform(-20, 20, (n, 2))), f32(rng.normal(size=(n, 2)))
    for name, fwd, bwd, rf, rb in (
            ("trunc_exp", lambda: losses.trunc_exp_forward(x, y, n, bias=-1.0),
             lambda: losses.trunc_exp_backward(x, y, n, bias=-1.0),
             lambda v: ref.trunc_exp_forward(v, -1.0), lambda v, d: ref.trunc_exp_backward(v, d, -1.0)),
            ("sigmoid", lambda: losses.sigmoid_forward(x, y, n), lambda: losses.sigmoid_backward(x, y, n),
             ref.sigmoid_forward, ref.sigmoid_backward)):
        put(x, xv)
        fwd()
        out[f"{name}_forward"] = rel_err(y.to_numpy(), rf(xv))
        put(y.grad, dy)
        bwd()
        out[f"{name}_backward"] = rel_err(x.grad.to_numpy(), rb(xv, dy))
    d = ti_field(9, grad=True)
    dv = f32(rng.normal(0, 0.05, 9))
    put(d, dv)
    mask = np.array([0, 1, 1, 1, 1, 0, 1, 1, 1], np.int32)
    m = ti_field(9, dtype="i32")
    put(m, mask)
    d.grad.fill(0.0)
    val = losses.offset_l1(d, 0.01, m)
    want, want_g = ref.offset_l1(dv, 0.01, mask)
    out["offset_l1_value"], out["offset_l1_grad"] = rel_err(val, want), rel_err(d.grad.to_numpy(), want_g)
    return out


def check_sh(rng):
    from taichi_syncnerf.kernels.sh import sh_encode
    from taichi_syncnerf.kernels.reference import sh as ref

    n = 2000
    d = rng.normal(size=(n, 3))
    d = f32(d / np.linalg.norm(d, axis=1, keepdims=True))
    dirs, res = ti_field((n, 3)), ti_field((n, 16))
    put(dirs, d)
    sh_encode(dirs, res, n, 4)
    return {"forward": rel_err(res.to_numpy(), ref.sh_encode(d, 4))}


def check_explicit(rng):
    from taichi_syncnerf.kernels import explicit
    from taichi_syncnerf.kernels.reference import explicit as ref

    counts = [96] * 12 + [0, 17]
    smp, _, _ = _samples(rng, counts)
    p = smp.to_numpy()
    S, R, D = smp.n_samples, len(counts), 64
    fv, bv, dv = f32(rng.normal(size=(S, D))), f32(rng.normal(size=(R, 3 * D))), f32(rng.normal(size=(S, 3)))
    feat, basis = ti_field((S, D), grad=True), ti_field((R, 3 * D), grad=True)
    res = ti_field((S, 3), grad=True)
    put(feat, fv)
    put(basis, bv)
    explicit.explicit_color_forward(feat, basis, smp.ray_start, smp.ray_count, res, R, D)
    out = {"forward": rel_err(res.to_numpy(), ref.explicit_color_forward(fv, bv, p["ray_start"],
                                                                         p["ray_count"], R, D))}
    put(res.grad, dv)
    basis.grad.fill(0.0)
    explicit.explicit_color_backward(feat, basis, smp.ray_start, smp.ray_count, res, R, D)
    want_f, want_b = ref.explicit_color_backward(fv, bv, p["ray_start"], p["ray_count"], dv, R, D)
    out["backward_feat"] = rel_err(feat.grad.to_numpy(), want_f)
    out["backward_basis"] = rel_err(basis.grad.to_numpy(), want_b)
    return out


def check_points(rng):
    from taichi_syncnerf.kernels import points
    from taichi_syncnerf.kernels.reference import points as ref

    counts = [64] * 20 + [0, 30]
    smp, _, _ = _samples(rng, counts)
    p = smp.to_numpy()
    S, R, C = smp.n_samples, len(counts), 5
    o, d = f32(rng.normal(size=(R, 3))), f32(rng.normal(size=(R, 3)))
    tv, cam = f32(rng.uniform(-0.8, 0.8, R)), rng.integers(0, C, R).astype(np.int32)
    off = f32(rng.normal(0, 0.05, C))
    fields = dict(o=ti_field((R, 3)), d=ti_field((R, 3)), t=ti_field(R), cam=ti_field(R, dtype="i32"),
                  off=ti_field(C, grad=True), pts=ti_field((S, 4), grad=True))
    for k, v in (("o", o), ("d", d), ("t", tv), ("cam", cam), ("off", off)):
        put(fields[k], v)
    lo, hi = [-3.0, -3.0, -3.0], [3.0, 3.0, 3.0]
    points.points_forward(fields["o"], fields["d"], fields["t"], fields["cam"], fields["off"], smp.t0, smp.t1,
                          smp.ray_start, smp.ray_count, fields["pts"], R, lo, hi)
    want = ref.points_forward(o, d, tv, cam, off, f32(p["t0"]), f32(p["t1"]), p["ray_start"], p["ray_count"],
                              lo, hi)
    g = f32(rng.normal(size=(S, 4)))
    put(fields["pts"].grad, g)
    fields["off"].grad.fill(0.0)
    points.points_backward(fields["pts"], fields["cam"], fields["off"], smp.ray_start, smp.ray_count, R)
    return {"forward": rel_err(fields["pts"].to_numpy(), want),
            "backward_offsets": rel_err(fields["off"].grad.to_numpy(),
                                        ref.points_backward(g, cam, C, p["ray_start"], p["ray_count"]))}


def check_adam(rng):
    from taichi_syncnerf.kernels.adam import Adam
    from taichi_syncnerf.kernels.reference import adam as ref

    P = 4096
    p = ti_field(P, grad=True)
    pv = f32(rng.normal(size=P))
    put(p, pv)
    opt = Adam([{"name": "p", "param": p, "lr": 1e-2}])
    m, v = np.zeros(P), np.zeros(P)
    want = pv
    for t in range(1, 21):
        g = f32(rng.normal(size=P) * 10.0 ** rng.uniform(-4, 1, P))
        put(p.grad, g)
        opt.step()
        want, m, v = ref.adam_update(want, g, m, v, t, 1e-2)
    # the error of 20 steps relative to how far the parameters moved
    moved = np.abs(want - pv).max()
    return {"params_20_steps": float(np.abs(p.to_numpy() - want).max() / moved)}


def check_plane_regularizers(rng):
    from taichi_syncnerf.kernels import plane_regularizers as reg
    from taichi_syncnerf.kernels.planes import PlaneEncoder
    from taichi_syncnerf.kernels.reference import planes as ref

    F, space, time_res = 8, [32, 64], 25
    enc = PlaneEncoder(4, F, space, time_res, max_points=1)
    params = f32(rng.uniform(0.5, 1.5, enc.n_params))
    enc.set_params(params)
    out = {}
    for name, fn, rfn in (("plane_tv", reg.plane_tv, ref.plane_tv),
                          ("time_smoothness", reg.time_smoothness, ref.time_smoothness),
                          ("time_l1", reg.time_l1, ref.time_l1)):
        enc.zero_grad()
        val = fn(enc, 0.1)
        want, want_g = rfn(params, 4, F, space, time_res, 0.1)
        out[f"{name}_value"], out[f"{name}_grad"] = rel_err(val, want), rel_err(enc.get_grad(), want_g)
    enc.zero_grad()
    vals = reg.plane_regularizers(enc, 0.1, 0.2, 0.3)
    want_g = np.zeros(enc.n_params)
    for name, rfn, w in (("plane_tv", ref.plane_tv, 0.1), ("time_smoothness", ref.time_smoothness, 0.2),
                         ("time_l1", ref.time_l1, 0.3)):
        want, g = rfn(params, 4, F, space, time_res, w)
        out[f"combined_{name}_value"] = rel_err(vals[name], want)
        want_g += g
    out["combined_grad"] = rel_err(enc.get_grad(), want_g)
    return out


def check_sampling(rng):
    from taichi_syncnerf.kernels import sampling
    from taichi_syncnerf.kernels.reference import sampling as ref

    R, n, m = 32, 64, 48
    near_v, far_v = f32(rng.uniform(0.5, 2.0, R)), f32(rng.uniform(4.0, 20.0, R))
    near, far = ti_field(R), ti_field(R)
    put(near, near_v)
    put(far, far_v)
    coarse = sampling.RaySampler(R, R * n)
    coarse.stratified(near, far, R, n, jitter=True, seed=3)
    c = coarse.to_numpy()
    want = ref.stratified(near_v, far_v, n, jitter=True, seed=3)
    span = (far_v - near_v)[c["ray_id"]]
    out = {"stratified": max(float((np.abs(c[k] - want[k]) / span).max()) for k in ("t0", "t1"))}
    w = f32(rng.uniform(0, 1, coarse.n_samples) ** 4)
    weights = ti_field(coarse.n_samples)
    put(weights, w)
    fine = sampling.RaySampler(R, R * m)
    fine.importance(coarse, weights, R, m, jitter=True, seed=5)
    f = fine.to_numpy()
    want = ref.importance(c["ray_start"], c["ray_count"], f32(c["t0"]), f32(c["t1"]), w, m,
                          jitter=True, seed=5)
    span = (far_v - near_v)[f["ray_id"]]
    out["importance"] = max(float((np.abs(f[k] - want[k]) / span).max()) for k in ("t0", "t1"))
    fine.normalized_coords(near, far)
    s0, s1 = ref.normalized_coords(f["ray_start"], f["ray_count"], f32(f["t0"]), f32(f["t1"]), near_v, far_v)
    S = fine.n_samples
    out["normalized_coords"] = max(float(np.abs(fine.s0.to_numpy()[:S] - s0).max()),
                                   float(np.abs(fine.s1.to_numpy()[:S] - s1).max()))
    return out


def check_vm(rng):
    from taichi_syncnerf.kernels import vm
    from taichi_syncnerf.kernels.reference import vm as ref

    # the synthetic MixVoxels preset's density grid at its first size, 3000 points: atomic adds
    # of many points into the same texels
    comps, res, n = (8, 4, 4), (32, 28, 24), 3000
    enc = vm.VMEncoder(comps, res, max_points=n, seed=1)
    params = f32(rng.normal(0.0, 0.5, enc.n_params))
    pts = f32(rng.uniform(-1.05, 1.05, (n, 3)))
    g = f32(rng.normal(size=(n, enc.output_dim)))
    x, feat = ti_field((n, 4), grad=True), ti_field((n, enc.output_dim), grad=True)
    enc.set_params(params)
    put(x, np.concatenate([pts, np.zeros((n, 1))], 1))
    enc.forward(x, feat, n)
    out = {"forward": rel_err(feat.to_numpy(), ref.forward(params, pts, comps, res))}
    enc.params.grad.fill(0.0)
    put(feat.grad, g)
    enc.backward(x, feat, n)
    want_p, want_x = ref.backward(params, pts, g, comps, res)
    out["backward_params"] = rel_err(enc.params.grad.to_numpy(), want_p)
    out["backward_coords"] = rel_err(x.grad.to_numpy()[:, :3], want_x)
    return out


def check_allframes(rng):
    from taichi_syncnerf.kernels import allframes
    from taichi_syncnerf.kernels.reference import allframes as ref

    out = {}
    # head: 9 slots (cameras) x 60 frames, width 32, 1800 samples sorted by slot: the table
    # gradient sums about 200 samples per row
    K, F, D, N = 9, 60, 32, 1800
    slot = np.sort(rng.integers(0, K, N)).astype(np.int32)
    hs, hc = f32(np.abs(rng.normal(0, 0.5, (N, D)))), f32(np.abs(rng.normal(0, 0.5, (N, D))))
    zs, zc = f32(rng.normal(0, 0.3, (K * F, D + 1))), f32(rng.normal(0, 0.3, (K * F, 3 * (D + 1))))
    gs, gc = f32(rng.normal(size=(N, F))), f32(rng.normal(size=(N, F, 3)))
    fields = {k: ti_field(shape, grad=True) for k, shape in
              (("hs", (N, D)), ("hc", (N, D)), ("zs", K * F * (D + 1)), ("zc", K * F * 3 * (D + 1)))}
    slot_f, start_f = ti_field(N, dtype="i32"), ti_field(K + 1, dtype="i32")
    put(slot_f, slot)
    put(start_f, np.searchsorted(slot, np.arange(K + 1)).astype(np.int32))
    for k, v in (("hs", hs), ("hc", hc), ("zs", zs.ravel()), ("zc", zc.ravel())):
        put(fields[k], v)
    for kind, b in (("relu", 1.0), ("softplus", 1.0), ("softplus", 8.0)):
        head = allframes.FrameHead(N, F, D, density_scale=25.0, activation=kind, sharpness=b)
        act = kind if b == 1.0 else f"{kind}{b:g}"
        args = (fields["hs"], fields["hc"], fields["zs"], fields["zc"], slot_f)
        head.forward(*args, N)
        s_want, c_want = ref.head(hs, hc, zs, zc, slot, F, 25.0, kind, b)
        out[f"head_{act}_sigma"] = rel_err(head.sigma.to_numpy(), s_want)
        out[f"head_{act}_rgb"] = rel_err(head.rgb.to_numpy(), c_want)
        fields["zs"].grad.fill(0.0)
        fields["zc"].grad.fill(0.0)
        put(head.sigma.grad, gs)
        put(head.rgb.grad, gc)
        head.backward(*args, start_f, K, N)
        want = ref.head_backward(hs, hc, zs, zc, slot, F, gs, gc, 25.0, kind, b)
        for k, w in zip(("hs", "hc", "zs", "zc"), want):
            out[f"head_{act}_backward_{k}"] = rel_err(fields[k].grad.to_numpy().reshape(w.shape), w)
    # renderer: 8 rays of 96 samples (two ending opaque), 30 frames, about half the samples dynamic
    counts, F = [96] * 8, 30
    smp, _, _ = _samples(rng, counts)
    p = smp.to_numpy()
    S, R = smp.n_samples, len(counts)
    rays = np.array([0, 2, 3, 5, 6, 7], np.int32)
    dyn_index = -np.ones(S, np.int32)
    dyn = np.flatnonzero(rng.uniform(size=S) < 0.5)
    dyn_index[dyn] = np.arange(len(dyn))
    nd = len(dyn)
    sigma, rgb = f32(rng.uniform(0, 2.0, (nd, F))), f32(rng.uniform(0, 1, (nd, F, 3)))
    sigma_st, rgb_st = f32(rng.uniform(0, 2.0, S)), f32(rng.uniform(0, 1, (S, 3)))
    for r in (2, 6):  # surfaces
        a = p["ray_start"][r] + 40
        sigma_st[a:a + 4] = 300.0
    bg = (1.0, 1.0, 1.0)
    ff = {}
    for k, v, dt in (("rays", rays, "i32"), ("dyn", dyn_index, "i32"), ("sigma", sigma, None), ("rgb", rgb, None),
                     ("sigma_st", sigma_st, None), ("rgb_st", rgb_st, None)):
        ff[k] = ti_field(v.shape, dtype=dt, grad=dt is None)
        put(ff[k], v)
    ren = allframes.AllFramesRenderer(R, F, S)
    args = (smp, ff["rays"], len(rays), ff["dyn"], ff["sigma"], ff["rgb"], ff["sigma_st"], ff["rgb_st"])
    ren.forward(*args, background=bg)
    rargs = (f32(p["t0"]), f32(p["t1"]), p["ray_start"], p["ray_count"], rays, dyn_index, sigma, rgb, sigma_st,
             rgb_st, bg)
    out["render_colour"] = rel_err(ren.colour.to_numpy()[:len(rays)], ref.render(*rargs))
    dc = f32(rng.normal(size=(len(rays), F, 3)))
    put(ren.colour.grad, dc)
    ren.backward(*args)
    ds, drgb = ref.render_backward(*rargs, dc)
    out["render_backward_sigma"] = rel_err(ff["sigma"].grad.to_numpy(), ds, floor=1e-6)
    out["render_backward_rgb"] = rel_err(ff["rgb"].grad.to_numpy(), drgb)
    return out


def check_timefn(rng):
    from taichi_syncnerf.kernels import timefn
    from taichi_syncnerf.kernels.reference import timefn as ref

    # the published 270 frames and 10 frequencies, 21 cameras: each offset's gradient sums 270 rows
    K, F, L = 21, 270, 10
    o = f32(rng.normal(0, 0.02, K))
    off, table, dt = ti_field(K, grad=True), ti_field((K * F, 2 * L), grad=True), ti_field(K * F)
    put(off, o)
    timefn.time_encoding(off, table, K, F, L, 1)
    t = ref.table_times(o, F).ravel()
    out = {"encoding": rel_err(table.to_numpy(), ref.encode_times(t, L))}
    g = f32(rng.normal(size=(K * F, 2 * L)))
    put(table.grad, g)
    off.grad.fill(0.0)
    timefn.time_encoding_backward(off, table, dt, K, F, L, 1)
    d_rows = np.sum(ref.encode_times_derivative(t, L) * g, axis=1)
    out["backward_rows"] = rel_err(dt.to_numpy(), d_rows)
    out["backward_offsets"] = rel_err(off.grad.to_numpy(), d_rows.reshape(K, F).sum(1))
    q = f32(rng.uniform(-1, 1, 500))
    times, enc = ti_field(500), ti_field((500, 2 * L))
    put(times, q)
    timefn.time_encoding_at(times, enc, 500, L)
    out["encoding_at"] = rel_err(enc.to_numpy(), ref.encode_times(q, L))
    return out


def check_variation(rng):
    from taichi_syncnerf.kernels import variation
    from taichi_syncnerf.kernels.reference import variation as ref

    # 4096 rays (the loss is a sum over all of them), 0..64 samples each
    R = 4096
    counts = rng.integers(0, 65, R)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    S = int(counts.sum())
    x = f32(rng.normal(-2.0, 3.0, S))
    y = (rng.uniform(size=R) < 0.2).astype(np.float64)
    fs = {"start": ti_field(R, dtype="i32"), "count": ti_field(R, dtype="i32"), "argmax": ti_field(R, dtype="i32"),
          "logit": ti_field(S, grad=True), "ray_logit": ti_field(R, grad=True), "label": ti_field(R),
          "ray_dyn": ti_field(R, dtype="i32"), "dyn": ti_field(S, dtype="i32")}
    for k, v in (("start", start.astype(np.int32)), ("count", counts.astype(np.int32)), ("logit", x),
                 ("label", y)):
        put(fs[k], v)
    variation.ray_max_logit(fs["logit"], fs["start"], fs["count"], fs["ray_logit"], fs["argmax"], R)
    m = ref.ray_max_logit(x, start, counts)
    out = {"ray_max_logit": rel_err(fs["ray_logit"].to_numpy(), m)}
    loss = variation.weighted_bce(fs["ray_logit"], fs["label"], R, pos_weight=19.0, weight=1.0)
    out["bce"] = rel_err([loss], [ref.weighted_bce(m, y, 19.0)])
    out["bce_grad"] = rel_err(fs["ray_logit"].grad.to_numpy(), ref.weighted_bce_grad(m, y, 19.0))
    variation.ray_max_logit_backward(fs["logit"], fs["start"], fs["count"], fs["ray_logit"], fs["argmax"], R)
    want = np.zeros(S)
    g = ref.weighted_bce_grad(m, y, 19.0)
    for r in np.flatnonzero(counts):
        want[start[r] + np.argmax(x[start[r]:start[r] + counts[r]])] = g[r]
    out["max_logit_backward"] = rel_err(fs["logit"].grad.to_numpy(), want)
    flags = (rng.uniform(size=R) < 0.5).astype(np.int32)
    put(fs["ray_dyn"], flags)
    variation.route_samples(fs["logit"], fs["start"], fs["count"], fs["ray_dyn"], fs["dyn"], R, 4, 0.01)
    out["routing_mismatch"] = float(np.mean(fs["dyn"].to_numpy() != ref.route_samples(x, start, counts, flags,
                                                                                         4, 0.01)))
    return out


FAMILIES = {name[len("check_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("check_")}


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
