"""f32 checks of the MixVoxels kernels (VM grids, all-frames head and renderer, time encoding,
variation heads): each ``check_<family>(rng)`` returns ``{quantity: error}`` against the float64
twin."""
import numpy as np

try:
    from .f32_common import f32, put, ray_samples, rel_err, ti_field
except ImportError:  # run as a script: tests/kernels is on sys.path
    from f32_common import f32, put, ray_samples, rel_err, ti_field


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
    smp, _, _ = ray_samples(rng, counts)
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
    from taichi_syncnerf.timeline import T_LO, T_SPAN

    # the published 270 frames and 10 frequencies, 21 cameras: each offset's gradient sums 270 rows
    K, F, L = 21, 270, 10
    o = f32(rng.normal(0, 0.02, K))
    off, table, dt = ti_field(K, grad=True), ti_field((K * F, 2 * L), grad=True), ti_field(K * F)
    put(off, o)
    timefn.time_encoding(off, table, K, F, L, 1, T_SPAN)
    t = ref.table_times(o, F).ravel()
    out = {"encoding": rel_err(table.to_numpy(), ref.encode_times(t, L))}
    g = f32(rng.normal(size=(K * F, 2 * L)))
    put(table.grad, g)
    off.grad.fill(0.0)
    timefn.time_encoding_backward(off, table, dt, K, F, L, 1, T_SPAN)
    d_rows = np.sum(ref.encode_times_derivative(t, L) * g, axis=1)
    out["backward_rows"] = rel_err(dt.to_numpy(), d_rows)
    out["backward_offsets"] = rel_err(off.grad.to_numpy(), d_rows.reshape(K, F).sum(1))
    q = f32(rng.uniform(-1, 1, 500))
    times, enc = ti_field(500), ti_field((500, 2 * L))
    put(times, q)
    timefn.time_encoding_at(times, enc, 500, L, T_LO, T_SPAN)
    out["encoding_at"] = rel_err(enc.to_numpy(), ref.encode_times(q, L))
    # the learned time grid (16 features per frame), read at the same times
    G = 16
    gv = f32(rng.normal(size=(F, G)))
    grid, gtab = ti_field(F * G, grad=True), ti_field((K * F, G), grad=True)
    put(grid, gv.ravel())
    # offsets well inside a frame interval: f32 rounding of the time must not change the interval
    o = f32((np.round(rng.normal(0, 3, K)) + rng.uniform(0.2, 0.8, K)) * 1.6 / (F - 1))
    put(off, o)
    t = ref.table_times(o, F).ravel()
    timefn.time_grid_encoding(off, grid, gtab, K, F, G, 0, 1, T_SPAN)
    out["grid_encoding"] = rel_err(gtab.to_numpy(), ref.grid_read(t, gv))
    gg = f32(rng.normal(size=(K * F, G)))
    put(gtab.grad, gg)
    off.grad.fill(0.0)
    grid.grad.fill(0.0)
    dt.fill(0.0)
    timefn.time_grid_encoding_backward(off, grid, gtab, dt, K, F, G, 0, 1, T_SPAN)
    p = np.clip((t + 0.8) / 1.6 * (F - 1), 0, F - 1)
    f0 = np.minimum(np.floor(p).astype(int), F - 2)
    w = p - f0
    slope = np.where((p > 0) & (p < F - 1), 1.0, 0.0)[:, None] * (gv[f0 + 1] - gv[f0]) * (F - 1) / 1.6
    d_grid_rows = np.sum(slope * gg, axis=1)
    want_grid = np.zeros((F, G))
    np.add.at(want_grid, f0, (1 - w)[:, None] * gg)
    np.add.at(want_grid, f0 + 1, w[:, None] * gg)
    out["grid_backward_rows"] = rel_err(dt.to_numpy(), d_grid_rows)
    out["grid_backward_offsets"] = rel_err(off.grad.to_numpy(), d_grid_rows.reshape(K, F).sum(1))
    out["grid_backward_grid"] = rel_err(grid.grad.to_numpy(), want_grid.ravel())
    timefn.time_grid_encoding_at(times, grid, gtab, 500, F, G, 0, T_LO, T_SPAN)
    out["grid_encoding_at"] = rel_err(gtab.to_numpy()[:500], ref.grid_read(q, gv))
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
