"""f32 checks of the K-Planes kernels (planes, MLP, hash grid, renderer, losses, ...): each
``check_<family>(rng)`` returns ``{quantity: error}`` against the float64 twin."""
import numpy as np

try:
    from .f32_common import f32, put, ray_samples, rel_err, ti_field
except ImportError:  # run as a script: tests/kernels is on sys.path
    from f32_common import f32, put, ray_samples, rel_err, ti_field


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


def check_render(rng):
    from taichi_syncnerf.kernels import render
    from taichi_syncnerf.kernels.reference import render as ref

    # long rays (256 samples) that end opaque, two with a surface, a ray of tiny densities, an
    # empty ray
    counts = [256, 256, 192, 0, 128, 256, 64]
    smp, _, _ = ray_samples(rng, counts)
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
    fine, near, far = ray_samples(rng, counts)
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
    smp, _, _ = ray_samples(rng, counts)
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
    smp, _, _ = ray_samples(rng, counts)
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
