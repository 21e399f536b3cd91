"""The assembled model: gradients of the whole loss (offsets included) vs finite differences."""
import copy

import numpy as np
import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides
from taichi_syncnerf.models.kplanes.model import SyncKPlanes


def tiny_cfg(proposals, decoder="hybrid"):
    cfg = apply_overrides(DEFAULTS, [
        "kplanes.features=4", "kplanes.space_res=[4, 6]", "kplanes.time_res=5", "kplanes.density_hidden=8",
        "kplanes.geo_features=3", "kplanes.color_hidden=[8]", "kplanes.sh_degree=2", "kplanes.n_samples=6",
        f"kplanes.proposal.samples={proposals}", "kplanes.proposal.features=2", "kplanes.proposal.space_res=[4]",
        "kplanes.proposal.time_res=4", "kplanes.proposal.hidden=4", "kplanes.density_bias=0.0",
        "train.batch_rays=5", "testoptim.batch_rays=5", "offsets.l1=0.01", "kplanes.regularizers.plane_tv=0",
        "kplanes.regularizers.plane_tv_proposal=0", "kplanes.regularizers.time_smoothness=0",
        "kplanes.regularizers.time_smoothness_proposal=0", "kplanes.regularizers.l1_time_planes=0",
        "kplanes.regularizers.l1_time_planes_proposal=0", f"kplanes.decoder={decoder}",
        "kplanes.explicit_basis_hidden=8",
    ])
    return cfg


def make_model(cfg, n_rays=5, seed=0):
    model = SyncKPlanes(cfg, n_cameras=3, n_frames=10, test_index=0, ndc=False, near=0.5, far=2.5,
                        bbox=[[-1, -1, -1], [1, 1, 1]], background=[1.0, 1.0, 1.0], max_rays=n_rays)
    rng = np.random.default_rng(seed)
    o = rng.uniform(-0.2, 0.2, size=(n_rays, 3)) + np.array([0, 0, 1.5])
    d = rng.normal(size=(n_rays, 3)) * 0.2 + np.array([0, 0, -1.0])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    times = rng.uniform(-0.8, 0.8, n_rays)
    cams = np.array([0, 1, 2, 1, 2], np.int32)[:n_rays]
    target = rng.uniform(0, 1, size=(n_rays, 3))
    model.load_rays(o, d, d, times, cams, target)
    model.offsets.params.from_numpy(np.array([0.0, 0.07, -0.05]))
    return model, n_rays


def randomize_planes(model, seed=2):
    """Every plane of every encoder (time planes included) drawn at random, so that the field
    changes along t and the offsets get a photometric gradient."""
    rng = np.random.default_rng(seed)
    for comp in model.components().values():
        values = comp.encoder.params.to_numpy()
        comp.encoder.params.from_numpy(rng.uniform(0.3, 1.5, values.shape))


def densify_field(model, shift=6.0):
    """A dense radiance field puts its weights on the first samples, which the untrained
    proposal does not bound: the interlevel loss is then positive and reaches the proposal."""
    from taichi_syncnerf.kernels.mlp import flatten

    layers = model.field.density_mlp.layers()
    layers[-1][1][0] += shift
    model.field.density_mlp.set_params(flatten(layers))


def freeze_sampling_and_fine_weights(model, monkeypatch):
    """Hold what the model's gradient treats as constant: the final samples (importance
    resampling from the proposal weights) and the final weights seen by the interlevel loss.
    Afterwards ``forward_backward`` evaluates exactly the loss whose gradient it returns."""
    import taichi as ti

    from taichi_syncnerf.models.kplanes import model as module

    fine_weights = model.renderer.weights
    frozen = ti.field(float, shape=fine_weights.shape)
    frozen.copy_from(fine_weights)
    for smp in model.samplers[1:]:
        monkeypatch.setattr(smp, "importance", lambda *a, **k: None)
    original = module.ray_losses.interlevel
    monkeypatch.setattr(module.ray_losses, "interlevel",
                        lambda fine, w, prop, pw, n, **kw: original(fine, frozen, prop, pw, n, **kw))


def loss(model, n):
    model.optimizer.zero_grad()
    return model.forward_backward(n, seed=1, jitter=False)["loss"]


def checked_entries(grad, rng, n_top=3, n_random=3):
    """Indices where the gradient is not negligible: the largest entries and a few at random
    among those above 5 % of the largest."""
    mag = np.abs(grad)
    top = np.argsort(mag)[::-1][:n_top]
    big = np.flatnonzero(mag > 0.05 * mag.max())
    extra = rng.choice(big, size=min(n_random, len(big)), replace=False)
    return sorted(set(top.tolist()) | set(extra.tolist()))


@pytest.mark.parametrize("decoder", ["hybrid", "explicit"])
def test_whole_loss_gradient_matches_finite_differences(decoder, monkeypatch):
    cfg = tiny_cfg("[6]", decoder)
    cfg["offsets"]["l1"] = 0.0  # the offsets' gradient is then purely photometric and interlevel
    model, n = make_model(cfg)
    randomize_planes(model)
    densify_field(model, 3.0)
    model.optimizer.zero_grad()
    stats = model.forward_backward(n, seed=1, jitter=False)
    assert np.isfinite(stats["loss"]) and stats["loss"] > 0 and stats["interlevel"] > 0
    grads = {name: model.optimizer.group(name).param.grad.to_numpy().copy()
             for name in model.optimizer.names}
    assert grads["offsets"][0] == 0.0  # the test camera holds still
    assert np.abs(grads["offsets"][1:]).min() > 1e-4  # offsets see the photometric loss
    freeze_sampling_and_fine_weights(model, monkeypatch)
    assert loss(model, n) == pytest.approx(stats["loss"], rel=1e-12)
    eps = 1e-6
    rng = np.random.default_rng(5)
    checked = 0
    for name in model.optimizer.names:
        field = model.optimizer.group(name).param
        values = field.to_numpy()
        g = grads[name]
        assert np.abs(g).max() > 1e-5, name  # every group gets a gradient worth checking
        idx = [1, 2] if name == "offsets" else checked_entries(g, rng)
        for i in idx:
            up, dn = values.copy(), values.copy()
            up[i] += eps
            dn[i] -= eps
            field.from_numpy(up)
            lp = loss(model, n)
            field.from_numpy(dn)
            lm = loss(model, n)
            field.from_numpy(values)
            fd = (lp - lm) / (2 * eps)
            assert g[i] == pytest.approx(fd, rel=1e-4, abs=1e-3 * np.abs(g).max()), (name, i, g[i], fd)
            checked += 1
    assert checked >= 5 * len(model.optimizer.names) - 3


def test_no_sync_keeps_offsets_at_zero_and_proposals_train():
    from taichi_syncnerf.kernels.mlp import flatten

    cfg = tiny_cfg("[8]")
    cfg["model"]["sync"] = False
    model, n = make_model(cfg)
    model.offsets.params.fill(0.0)
    # A dense field puts the fine weights on the first samples, which the untrained proposal
    # does not bound: the interlevel loss is then positive and the proposal must learn.
    layers = model.field.density_mlp.layers()
    layers[-1][1][0] += 6.0
    model.field.density_mlp.set_params(flatten(layers))
    before = {name: model.optimizer.group(name).param.to_numpy().copy() for name in model.optimizer.names}
    for step in range(3):
        stats = model.train_step(n, step, 1.0, offsets_frozen=False)
        assert np.isfinite(stats["loss"]) and stats["interlevel"] > 0
    after = {name: model.optimizer.group(name).param.to_numpy() for name in model.optimizer.names}
    assert np.all(after["offsets"] == 0.0)
    for name in before:
        if name != "offsets":
            assert not np.allclose(before[name], after[name]), name


def test_state_round_trip():
    cfg = tiny_cfg("[8]")
    a, n = make_model(cfg)
    a.train_step(n, 0, 1.0, offsets_frozen=False)
    state = a.state_arrays()
    b, _ = make_model(copy.deepcopy(cfg), seed=1)
    b.load_state_arrays(state, "test")
    for k, v in b.state_arrays().items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(state[k]), err_msg=k)


def test_hashgrid_proposal_trains():
    cfg = tiny_cfg("[8]")
    cfg["kplanes"]["proposal"].update({"encoder": "hashgrid", "hash_levels": 2, "hash_log2_table": 8,
                                       "hash_base_res": 4, "hash_max_res": 8})
    model, n = make_model(cfg)
    layers = model.field.density_mlp.layers()
    layers[-1][1][0] += 6.0
    from taichi_syncnerf.kernels.mlp import flatten

    model.field.density_mlp.set_params(flatten(layers))
    before = model.proposals[0].encoder.params.to_numpy().copy()
    stats = model.train_step(n, 0, 1.0, offsets_frozen=False)
    assert np.isfinite(stats["loss"]) and stats["interlevel"] > 0
    assert not np.allclose(before, model.proposals[0].encoder.params.to_numpy())


def test_offsets_can_ignore_the_proposal_time_gradient():
    cfg = tiny_cfg("[8]")
    cfg["offsets"]["l1"] = 0.0  # no L1 term: what is left is the photometric and interlevel paths
    model, n = make_model(cfg)
    randomize_planes(model)  # every level's time planes vary along t
    densify_field(model, 3.0)  # the proposal under-bounds these weights: interlevel > 0

    def offsets_grad(proposal_grad=True, interlevel=1.0):
        # both switches are read at every step, so one model serves the three variants
        model.cfg["kplanes"]["proposal"]["offsets_grad"] = proposal_grad
        model.cfg["kplanes"]["regularizers"]["interlevel"] = interlevel
        model.optimizer.zero_grad()
        stats = model.forward_backward(n, seed=1, jitter=False)
        return stats, model.offsets.params.grad.to_numpy().copy()

    stats, with_proposals = offsets_grad()
    assert stats["interlevel"] > 0
    _, without = offsets_grad(proposal_grad=False)
    _, no_interlevel = offsets_grad(interlevel=0.0)
    # The photometric gradient reaches the trainable offsets ...
    assert np.abs(without[1:]).min() > 1e-5
    # ... and without the proposal path it is all they see: exactly the no-interlevel gradient.
    np.testing.assert_allclose(without, no_interlevel, rtol=1e-10, atol=1e-14)
    # With the proposal path the interlevel loss adds its own share.
    assert np.abs(with_proposals - without)[1:].min() > 1e-3 * np.abs(without).max()
