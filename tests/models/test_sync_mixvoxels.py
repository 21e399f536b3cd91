"""Sync-MixVoxels assembled: gradients of the whole loss (every parameter group, the offsets
included) vs float64 finite differences, routing, rendering and checkpoint state."""
import numpy as np
import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides
from taichi_syncnerf.kernels.reference import vm as vm_ref
from taichi_syncnerf.models.mixvoxels.model import SyncMixVoxels

C, F, R = 3, 5, 6


def tiny_cfg(*extra):
    return apply_overrides(DEFAULTS, [
        "model.kind=sync-mixvoxels", "mixvoxels.comps_density=[2, 1, 1]", "mixvoxels.comps_app=[2, 1, 1]",
        "mixvoxels.voxels_init=64", "mixvoxels.voxels_final=216", "mixvoxels.upsample_steps=[]",
        "mixvoxels.alpha_mask_steps=[]", "mixvoxels.n_samples=5", "mixvoxels.density_scale=2.0",
        "mixvoxels.static_hidden=4", "mixvoxels.trunk_hidden=4", "mixvoxels.width=3", "mixvoxels.time_freqs=3",
        "mixvoxels.time_hidden=4", "mixvoxels.time_grid=2", "mixvoxels.dynamic_threshold=0.8", "mixvoxels.sample_threshold=0.5",
        "mixvoxels.pool_kernel=1", "mixvoxels.stage1_steps=0", "mixvoxels.bce_weight=0.5",
        "offsets.l1=0.01", f"train.batch_rays={R}", f"testoptim.batch_rays={R}", *extra])


def make_batch(seed=1):
    rng = np.random.default_rng(seed)
    o = rng.uniform(-0.3, 0.3, (R, 3)) + np.array([0, 0, -3.0])
    d = rng.normal(size=(R, 3)) * 0.15 + np.array([0, 0, 1.0])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    frames = rng.uniform(0, 1, (R, F, 3))
    return {"origins": o, "dirs": d, "cams": np.array([0, 1, 1, 1, 2, 2], np.int32),
            "mean_rgb": frames.mean(1), "std": rng.uniform(0, 0.06, R),
            "all_frames": lambda idx: frames[np.asarray(idx)]}


@pytest.fixture(scope="module")
def model():
    """One model for the module: every instance compiles its own kernels (about a minute)."""
    return SyncMixVoxels(tiny_cfg(), n_cameras=C, n_frames=F, test_index=0, ndc=False, near=0.5, far=5.5,
                         bbox=[[-1, -1, -1], [1, 1, 1]], background=[1.0, 1.0, 1.0], max_rays=R)


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for name, field, _ in model.param_groups():  # values of order 1: every branch matters
        if name != "offsets":
            field.from_numpy(rng.normal(0, 0.8, field.shape))
    model.offsets.params.from_numpy(np.array([0.0, 0.07, -0.05]))
    model.optimizer.zero_grad()


def grads_and_loss(model, batch, step=0):
    model.optimizer.zero_grad()
    stats = model.forward_backward(batch, step, seed=3, jitter=True)
    return stats, {name: f.grad.to_numpy().copy() for name, f, _ in model.param_groups()}


@pytest.mark.parametrize("sync", [True, False])
def test_whole_loss_gradient_matches_finite_differences(model, sync):
    """``sync=False``: the per-frame head of the baseline and of stage 1 (no offsets). The time
    function reads a learned time grid beside the sinusoids (``time_grid=2``), so both carry
    the offsets' photometric gradient."""
    randomize(model, seed=1)
    batch = make_batch(3)  # with these values both trained cameras have dynamic samples
    model.mx["stage1_steps"] = 0 if sync else 10
    try:
        _check_gradients(model, batch, sync)
    finally:
        model.mx["stage1_steps"] = 0


def _check_gradients(model, batch, sync):
    stats, grads = grads_and_loss(model, batch)
    # the batch mixes static and dynamic rays, and dynamic and static samples along dynamic rays
    assert 0 < stats["dynamic_rays"] < 1
    assert 0 < model._n_dyn < model.smp.n_samples
    assert stats["mse_dynamic"] > 0 and stats["bce"] > 0
    rng = np.random.default_rng(7)
    h = 1e-6
    checked = 0
    for name, field, _ in model.param_groups():
        g = grads[name]
        if name == "offsets":
            idx = [1, 2]
        elif name.startswith("time." if not sync else "per_frame."):
            assert not g.any()  # the head not in use
            continue
        else:
            nz = np.flatnonzero(g)
            assert len(nz) > 0, f"{name} has no gradient"
            idx = rng.choice(nz, size=min(4, len(nz)), replace=False)
        values = field.to_numpy()
        for i in idx:
            fd = []
            for sgn in (1, -1):
                v = values.copy()
                v[i] += sgn * h
                field.from_numpy(v)
                fd.append(model.forward_backward(batch, 0, seed=3, jitter=True)["loss"])
                model.optimizer.zero_grad()
            field.from_numpy(values)
            want = (fd[0] - fd[1]) / (2 * h)
            assert g[i] == pytest.approx(want, rel=1e-4, abs=1e-7), f"{name}[{i}]"
            checked += 1
    assert checked > 20
    off = grads["offsets"]
    assert off[0] == 0  # the test camera's slot is masked
    if sync:
        # the offsets see more than their L1 term (0.01 * sign): the photometric gradient
        photometric = off[1:] - 0.01 * np.sign([0.07, -0.05])
        assert np.all(np.abs(photometric) > 1e-3), off
    else:
        assert np.all(off == 0)


def test_render_rays_is_static_for_static_rays_and_matches_training_frames(model):
    randomize(model)
    batch = make_batch()
    model.forward_backward(batch, 0, seed=0, jitter=False)
    model.optimizer.zero_grad()
    train_colour = model.all_renderer.colour.to_numpy()
    dyn_rays = model._dyn_rays_np.copy()
    static_colour = model.renderer.colour.to_numpy()[:R]
    f = 3
    t = 0.8 * (2 * f / (F - 1) - 1)
    n = model.load_rays(batch["origins"], batch["dirs"], batch["dirs"], np.full(R, t), batch["cams"])
    out = model.render_rays(n)
    static = np.setdiff1d(np.arange(R), dyn_rays)
    np.testing.assert_allclose(out[static], static_colour[static], atol=1e-10)
    np.testing.assert_allclose(out[dyn_rays], train_colour[:len(dyn_rays), f], atol=1e-10)


def test_upsample_alpha_mask_and_checkpoint_round_trip(model):
    """Last test of the module: it grows the model's grids."""
    randomize(model)
    batch = make_batch()
    model.mx.update({"upsample_steps": [2], "alpha_mask_steps": [3], "alpha_mask_threshold": 0.5})
    for step in range(3):
        model.train_on(batch, step, 1.0, offsets_frozen=False)
    assert model.res == [6, 6, 6] and model.occ is None
    # static density only in the corner x, y, z < 0.2 of the box (texels at -1, -0.6, -0.2 set):
    # occupied mask cells 0..2 of 6, dilated by the pooling to 0..3, so the box ends at 1/3
    enc = model.static.grids.enc["density"]
    p = np.zeros(enc.n_params)
    planes, lines = vm_ref.split(p, enc.comps, enc.res)
    planes[0][:3, :3, 0] = 1.0
    lines[0][:3, 0] = 1.0
    enc.set_params(p)
    model.apply_schedule(3)
    assert model.occ is not None and 0 < model.occ.to_numpy().sum() < 6 ** 3
    np.testing.assert_allclose(model.sample_box, [[-1, -1, -1], [1 / 3, 1 / 3, 1 / 3]], atol=1e-12)
    model.train_on(batch, 3, 1.0, offsets_frozen=False)
    arrays = model.state_arrays()
    n = model.load_rays(batch["origins"], batch["dirs"], batch["dirs"], np.zeros(R), batch["cams"])
    want = model.render_rays(n)
    occ, box = model.occ.to_numpy(), model.sample_box.copy()
    randomize(model, seed=5)
    model.occ.fill(1)
    model.sample_box = model.box.copy()
    n = model.load_rays(batch["origins"], batch["dirs"], batch["dirs"], np.zeros(R), batch["cams"])
    assert not np.allclose(model.render_rays(n), want)
    model.load_state_arrays(arrays, "ckpt")
    np.testing.assert_array_equal(model.occ.to_numpy(), occ)
    np.testing.assert_array_equal(model.sample_box, box)
    n = model.load_rays(batch["origins"], batch["dirs"], batch["dirs"], np.zeros(R), batch["cams"])
    np.testing.assert_allclose(model.render_rays(n), want, atol=1e-12)


def test_softplus_dynamic_density_keeps_a_gradient_where_relu_is_flat(model):
    """A dynamic density pushed below 0 for every sample and frame: with relu no gradient reaches
    the dynamic branch any more (it has died); with softplus it does, so it can come back."""
    randomize(model)
    batch = make_batch()
    model.mx["stage1_steps"] = 10  # the per-frame head, whose bias can hold every frame below 0
    after = model.after_training
    model.after_training = False
    zs = model.per_frame.zs.to_numpy().reshape(F, -1)
    zs[:, :-1] *= 0.01  # queries small, bias far below 0: no sample's density is above 0
    zs[:, -1] = -20.0
    model.per_frame.zs.from_numpy(zs.ravel())
    try:
        found = {}
        for act in ("relu", "softplus"):
            model.mx["dynamic_density_activation"] = act
            stats, grads = grads_and_loss(model, batch)
            assert model.frame_head.softplus == (act == "softplus")
            assert model._n_dyn > 0 and stats["mse_dynamic"] > 0
            found[act] = {k: np.abs(grads[k]).max() for k in ("dynamic.density", "dynamic.trunk_s", "per_frame.zs")}
        assert found["relu"] and all(v == 0 for v in found["relu"].values()), ("relu", found)
        assert all(v > 0 for v in found["softplus"].values()), ("softplus", found)
    finally:
        model.mx["dynamic_density_activation"] = "relu"
        model.mx["stage1_steps"] = 0
        model.after_training = after


def test_softplus_density_turns_relu_at_its_step_in_training_testoptim_and_rendering(model):
    """``dynamic_density_relu_step``: softplus before the step, relu from it on, and the activation of
    the last training step after training (testoptim, rendering)."""
    randomize(model)
    batch = make_batch()
    mx, after, done = model.mx, model.after_training, model.steps_done
    mx["dynamic_density_activation"], mx["dynamic_density_relu_step"] = "softplus", 5
    model.after_training = False
    try:
        seen = []
        for step in (0, 4, 5, 9):
            grads_and_loss(model, batch, step=step)
            seen.append(model.frame_head.softplus)
        assert seen == [1, 1, 0, 0]
        n = model.load_rays(batch["origins"], batch["dirs"], batch["dirs"], np.zeros(R), batch["cams"])
        for steps_done, want in ((5, 1), (6, 0), (None, 0)):
            model.steps_done = steps_done
            model.render_rays(n)
            assert model.eval_head.softplus == want, steps_done
        model.after_training, model.steps_done = True, 3
        grads_and_loss(model, batch, step=100)  # a testoptim step: the last training step's activation
        assert model.frame_head.softplus == 1
        mx["dynamic_density_relu_step"] = None
        model.after_training = False
        grads_and_loss(model, batch, step=10 ** 6)
        assert model.frame_head.softplus == 1
        mx["dynamic_density_activation"] = "relu"
        grads_and_loss(model, batch, step=0)
        assert model.frame_head.softplus == 0 and model.eval_head.softplus == 0
    finally:
        mx["dynamic_density_activation"], mx["dynamic_density_relu_step"] = "relu", None
        model.after_training, model.steps_done = after, done


def test_retrain_variation_moves_only_the_variation_field_and_lowers_its_loss(model):
    """testoptim's variation retraining: only ``variation.*`` groups change; on one fixed batch the
    BCE goes down; the routing agreement is a share of rays."""
    randomize(model, seed=1)
    batch = make_batch(3)
    before = {name: f.to_numpy().copy() for name, f, _ in model.param_groups()}

    def bce():  # on the same samples each time
        stats = model.forward_backward(batch, 0, seed=3, jitter=True, offsets_frozen=True, variation_only=True)
        model.optimizer.zero_grad()
        return stats["bce"]

    first = bce()
    for step in range(10):
        last = model.retrain_variation(batch, step, 0.05)
    assert bce() < first
    assert 0.0 <= last["routing_agreement"] <= 1.0
    for name, f, _ in model.param_groups():
        changed = not np.array_equal(f.to_numpy(), before[name])
        assert changed == name.startswith("variation."), name
    randomize(model)


def test_grid_growth_and_checkpoint_memory(model, monkeypatch):
    """What the final-size grids cost (the Plenoptic preset's 640^3 grids, 0.45 GiB per copy):
    a model that only renders holds no optimiser moments; a grid growth frees the old moments
    before it allocates the new grids (none held right after it); a training step allocates the
    moments of the groups it updates and of no other; a checkpoint copies the large arrays into
    file-backed pages (spill.host_copy), not into anonymous memory, and reads back the same.
    Grows the model's grids."""
    from taichi_syncnerf.models.mixvoxels import spill

    randomize(model)
    batch = make_batch()
    model.mx.update({"upsample_steps": [], "alpha_mask_steps": []})
    model._build_optimizer()
    assert model.optimizer.moments_bytes() == 0
    n = model.load_rays(batch["origins"], batch["dirs"], batch["dirs"], np.zeros(R), batch["cams"])
    model.render_rays(n)
    assert model.optimizer.moments_bytes() == 0
    model.train_on(batch, 10, 1.0, offsets_frozen=False)
    assert model.optimizer.moments_bytes() > 0
    res = [r + 2 for r in model.res]
    model.upsample(res)
    assert model.res == res and model.optimizer.moments_bytes() == 0
    model.train_on(batch, 11, 1.0, offsets_frozen=False)
    item = np.dtype(np.float64).itemsize  # the tests run in float64
    opt = model.optimizer
    updated = [name for name in opt.names if not opt.group(name).frozen]
    assert "static.appearance" in updated and any(name.startswith("per_frame.") for name in opt.names)
    assert opt.moments_bytes() == sum(2 * item * opt.group(name).param.shape[0] for name in updated)

    monkeypatch.setattr(spill, "SPILL_BYTES", 1)  # every array a spilled copy, as the large ones are
    arrays = model.state_arrays()
    for key in ("params/static.appearance", "params/dynamic.density", "adam/static.appearance/m",
                "adam/variation.grid/v"):
        a = arrays[key]
        assert isinstance(a, np.memmap) or isinstance(a.base, np.memmap), key
    want = {name: f.to_numpy() for name, f, _ in model.param_groups()}
    want_m = opt.moments("static.appearance")[0]
    randomize(model, seed=9)
    model.load_state_arrays(arrays, "ckpt")
    for name, f, _ in model.param_groups():
        np.testing.assert_array_equal(f.to_numpy(), want[name])
    np.testing.assert_array_equal(model.optimizer.moments("static.appearance")[0], want_m)
