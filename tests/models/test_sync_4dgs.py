"""Sync-4DGS: the gradients of a whole rendered image's loss (deformation, Gaussians, planes, MLPs and
the camera's time offset) against float64 central finite differences, the deformation against the
numpy twins of the planes and MLPs, the D-SSIM gradient, density control, checkpoints and export.

The scene: 10 Gaussians in front of one 40x24 camera, the fine stage on, every plane (time planes
included) and MLP random so that the image moves with time. Finite differences use h = 1e-6 on
losses of O(0.1): about 1e-9 absolute from truncation and round-off. The rasterizer's skips
(alpha < 1/255, T < 1e-4, the 0.99 clamp) and L1's kink make the loss piecewise smooth; the seed
keeps every perturbation on one piece (a crossing shows as one entry far off).
"""
import numpy as np
import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides

W, H = 40, 24


def tiny_cfg(*extra):
    return apply_overrides(DEFAULTS, [
        "model.kind=sync-4dgs", "gaussians.max_gaussians=16", "gaussians.sh_degree=1", "gaussians.plane_res=4",
        "gaussians.plane_multires=[1, 2]", "gaussians.plane_features=3", "gaussians.deform_width=6",
        "gaussians.time_res=5", "gaussians.static_steps=0", "gaussians.ssim_weight=0.2", "offsets.l1=0",
        *extra])


def camera_view(cam=1, time=0.1, rgb_seed=7):
    from taichi_syncnerf.data.cameras import Intrinsics, look_at

    intr = Intrinsics.from_fov(0.9, W, H, cx=21.3, cy=11.1)
    c2w = look_at(np.array([0.3, -4.0, 0.5]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
    rgb = np.random.default_rng(rgb_seed).uniform(0.0, 1.0, (H, W, 3))
    return {"cam": cam, "frame": 0, "time": time, "intrinsics": intr, "c2w": c2w, "rgb": rgb}


@pytest.fixture(scope="module")
def built():
    """One model for the module (each new set of fields instantiates every kernel again)."""
    from taichi_syncnerf.models.gaussians.model import SyncGaussians

    return SyncGaussians(tiny_cfg(), n_cameras=3, n_frames=10, test_index=0, background=(0.2, 0.5, 0.9), width=W,
                         height=H, extent=1.0)


@pytest.fixture
def model(built):
    return make_model(built)


def make_model(model, n=10, seed=3):
    """``model`` with 10 random Gaussians, random planes and MLPs, in the fine stage."""
    rng = np.random.default_rng(seed)
    k = model.cloud.n_coeffs
    model.cloud.set({"means": rng.normal(size=(n, 3)) * 0.5, "sh_dc": rng.normal(size=(n, 3)) * 0.5,
                     "sh_rest": rng.normal(size=(n, 3 * (k - 1))) * 0.2, "opacity": rng.uniform(-1.0, 1.5, n),
                     "log_scales": rng.uniform(-1.6, -0.9, (n, 3)), "quats": rng.normal(size=(n, 4))})
    model.deform.set_box([[-1.2] * 3, [1.2] * 3])
    model.deform.encoder.params.from_numpy(rng.uniform(0.5, 1.5, model.deform.encoder.n_params))
    for k, mlp in enumerate([model.deform.trunk, *model.deform.heads.values()]):
        mlp.set_params(np.random.default_rng(seed + k).uniform(-0.3, 0.3, mlp.n_params))
    model.fine = True
    model.sh_active = 1
    model.offsets.params.from_numpy(np.array([0.0, 0.05, -0.03]))
    return model


def loss_and_grads(model, view):
    model.optimizer.zero_grad()
    out = model.forward_backward(view)
    grads = {name: model.optimizer.group(name).param.grad.to_numpy().copy() for name in model.optimizer.names}
    model.optimizer.zero_grad()
    return out, grads


def fd(model, view, field, i, eps=1e-6):
    values = field.to_numpy()
    out = []
    for sign in (1.0, -1.0):
        v = values.copy()
        v[i] += sign * eps
        field.from_numpy(v)
        out.append(loss_and_grads(model, view)[0]["loss"])
    field.from_numpy(values)
    return (out[0] - out[1]) / (2.0 * eps)


def test_offset_gradient_is_the_summed_time_gradient_and_matches_finite_differences(model):
    view = camera_view()
    out, grads = loss_and_grads(model, view)
    assert out["loss"] > 0 and abs(out["time_grad"]) > 1e-4          # the image moves with time
    assert grads["offsets"][1] == pytest.approx(out["time_grad"], rel=1e-12)
    assert grads["offsets"][0] == 0.0 and grads["offsets"][2] == 0.0   # only the view's camera
    numeric = fd(model, view, model.offsets.params, 1)
    assert grads["offsets"][1] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_every_gradient_matches_finite_differences(model):
    view = camera_view()
    _, grads = loss_and_grads(model, view)
    rng = np.random.default_rng(5)
    for name in model.optimizer.names:
        if name == "offsets":
            continue
        g = grads[name]
        assert np.abs(g).max() > 1e-6, name                           # every group takes part
        mag = np.abs(g)
        big = np.flatnonzero(mag > 0.05 * mag.max())
        idx = sorted(set(np.argsort(mag)[::-1][:3].tolist()) | set(rng.choice(big, min(3, len(big)), False).tolist()))
        field = model.optimizer.group(name).param
        for i in idx:
            numeric = fd(model, view, field, i)
            assert g[i] == pytest.approx(numeric, rel=1e-5, abs=1e-6 * mag.max()), (name, i)


def test_coarse_stage_has_no_time_gradient(model):
    model.fine = False
    out, grads = loss_and_grads(model, camera_view())
    assert out["time_grad"] == 0.0 and not grads["offsets"].any()
    assert not any(grads[n].any() for n in grads if n.startswith("deform."))


def test_deformation_matches_the_numpy_twins(model):
    """Deltas, parameter gradients, mean gradients and dL/dt against kernels/reference/{planes,mlp}."""
    from taichi_syncnerf.kernels.reference import mlp as ref_mlp
    from taichi_syncnerf.kernels.reference import planes as ref_planes

    d, c = model.deform, model.cloud
    n, t = c.n, 0.137
    out = d.forward(c.params["means"], n, t)
    means = c.get()["means"]
    lo, hi = d.box
    x = np.concatenate([2.0 * (means - lo) / (hi - lo) - 1.0, np.full((n, 1), t)], 1)
    enc = d.encoder
    feat = ref_planes.forward(enc.get_params(), x, 4, enc.n_features, enc.space_res, enc.time_res)
    h = ref_mlp.forward(d.trunk.layers(), feat)
    hr = np.maximum(h, 0.0)
    rng = np.random.default_rng(2)
    g_hr, expected = np.zeros_like(hr), {}
    for name, mlp in d.heads.items():
        np.testing.assert_allclose(out[name].to_numpy()[:n], ref_mlp.forward(mlp.layers(), hr), rtol=1e-10, atol=1e-12)
        g = rng.normal(size=(n, mlp.out_dim))
        full = np.zeros(out[name].shape)
        full[:n] = g
        out[name].grad.from_numpy(full)
        expected[name], dinp = ref_mlp.backward(mlp.layers(), hr, g)
        g_hr += dinp
    model.optimizer.zero_grad()
    dt = d.backward(c.params["means"], n)
    for name, mlp in d.heads.items():
        for (gw, gb), (rw, rb) in zip(mlp.unflatten(mlp.params.grad.to_numpy()), expected[name]):
            np.testing.assert_allclose(gw, rw, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(gb, rb, rtol=1e-9, atol=1e-12)
    g_h = g_hr * (h > 0)
    dw_trunk, g_feat = ref_mlp.backward(d.trunk.layers(), feat, g_h)
    for (gw, gb), (rw, rb) in zip(d.trunk.unflatten(d.trunk.params.grad.to_numpy()), dw_trunk):
        np.testing.assert_allclose(gw, rw, rtol=1e-9, atol=1e-12)
    g_params, g_x = ref_planes.backward(enc.get_params(), x, g_feat, 4, enc.n_features, enc.space_res, enc.time_res)
    np.testing.assert_allclose(enc.get_grad(), g_params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c.params["means"].grad.to_numpy()[:3 * n].reshape(n, 3),
                               g_x[:, :3] * 2.0 / (hi - lo), rtol=1e-9, atol=1e-12)
    assert dt == pytest.approx(g_x[:, 3].sum(), rel=1e-9)


def test_dssim_gradient_matches_finite_differences():
    from taichi_syncnerf.models.gaussians.loss import image_loss, ssim

    rng = np.random.default_rng(0)
    pred, gt = rng.uniform(size=(9, 13, 3)), rng.uniform(size=(9, 13, 3))
    assert ssim(gt, gt) == pytest.approx(1.0)
    value, grad = image_loss(pred, gt, ssim_weight=1.0)
    assert value == pytest.approx(1.0 - ssim(pred, gt))
    for idx in [(0, 0, 0), (4, 6, 1), (8, 12, 2), (3, 0, 1)]:
        up, dn = pred.copy(), pred.copy()
        up[idx] += 1e-6
        dn[idx] -= 1e-6
        numeric = (image_loss(up, gt, 1.0)[0] - image_loss(dn, gt, 1.0)[0]) / 2e-6
        assert grad[idx] == pytest.approx(numeric, rel=1e-6, abs=1e-10)


@pytest.fixture(scope="module")
def temporal_built():
    from taichi_syncnerf.models.gaussians.model import SyncGaussians

    cfg = tiny_cfg("gaussians.temporal_opacity=true")
    return SyncGaussians(cfg, n_cameras=3, n_frames=10, test_index=0, background=(0.2, 0.5, 0.9), width=W,
                         height=H, extent=1.0)


def timed(model, seed=3):
    """``make_model`` with half the Gaussians living around the view's time (0.1 + offset 0.05)."""
    make_model(model, seed=seed)
    a = model.cloud.get()
    rng = np.random.default_rng(seed + 50)
    a["t_centre"][:5, 0] = 0.15 + rng.uniform(-0.2, 0.2, 5)
    a["t_log_scale"][:5, 0] = np.log(rng.uniform(0.08, 0.2, 5))
    model.cloud.set(a)
    return model


def test_temporal_opacity_is_the_opacity_times_the_time_window(temporal_built):
    from taichi_syncnerf.models.gaussians.cloud import TIMELESS

    model = timed(temporal_built)
    a = model.cloud.get()
    assert np.all(a["t_log_scale"][5:] == TIMELESS)
    t = 0.15
    deltas = model.deform.forward(model.cloud.params["means"], model.cloud.n, t)
    model.cloud.compose(deltas, t)
    logit = a["opacity"] + deltas["opacity"].to_numpy()[:10, 0]
    z = (t - a["t_centre"][:, 0]) / np.exp(a["t_log_scale"][:, 0])
    want = 1.0 / (1.0 + np.exp(-logit)) * np.exp(-0.5 * z * z)
    got = 1.0 / (1.0 + np.exp(-model.cloud.opacity.to_numpy()[:10]))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(model.cloud.opacity.to_numpy()[5:10], logit[5:])   # timeless: untouched


def test_timeless_gaussians_render_and_learn_as_without_temporal_opacity(temporal_built, built):
    view = camera_view()
    plain, tm = make_model(built), make_model(temporal_built)
    out_p, g_p = loss_and_grads(plain, view)
    out_t, g_t = loss_and_grads(tm, view)
    assert out_t["loss"] == pytest.approx(out_p["loss"], rel=1e-12)
    assert out_t["time_grad"] == pytest.approx(out_p["time_grad"], rel=1e-9)
    for name in ("means", "opacity", "log_scales", "sh_dc"):
        np.testing.assert_allclose(g_t[name], g_p[name], rtol=1e-9, atol=1e-15)
    assert not g_t["t_centre"].any() and not g_t["t_log_scale"].any()


def test_temporal_opacity_gradients_match_finite_differences(temporal_built):
    model = timed(temporal_built)
    view = camera_view()
    out, grads = loss_and_grads(model, view)
    for name in ("t_centre", "t_log_scale", "opacity", "deform.head_opacity"):
        g = grads[name]
        assert np.abs(g).max() > 1e-6, name
        mag = np.abs(g)
        for i in np.argsort(mag)[::-1][:4]:
            numeric = fd(model, view, model.optimizer.group(name).param, int(i))
            assert g[i] == pytest.approx(numeric, rel=1e-5, abs=1e-6 * mag.max()), (name, i)
    # the offset: through the deformation and the time windows together
    assert grads["offsets"][1] == pytest.approx(out["time_grad"], rel=1e-12)
    numeric = fd(model, view, model.offsets.params, 1)
    assert grads["offsets"][1] == pytest.approx(numeric, rel=1e-5, abs=1e-9)
