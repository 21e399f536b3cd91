"""The assembled model: gradients of the whole loss (offsets included) vs finite differences."""
import copy

import numpy as np
import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides
from taichi_syncnerf.models.sync_kplanes import SyncKPlanes


def tiny_cfg(proposals, decoder="hybrid"):
    cfg = apply_overrides(DEFAULTS, [
        "model.features=4", "model.space_res=[4, 6]", "model.time_res=5", "model.density_hidden=8",
        "model.geo_features=3", "model.color_hidden=[8]", "model.sh_degree=2", "model.n_samples=6",
        f"model.proposal.samples={proposals}", "model.proposal.features=2", "model.proposal.space_res=[4]",
        "model.proposal.time_res=4", "model.proposal.hidden=4", "model.density_bias=0.0",
        "train.batch_rays=5", "testoptim.batch_rays=5", "offsets.l1=0.01", "regularizers.plane_tv=0",
        "regularizers.plane_tv_proposal=0",
        "regularizers.time_smoothness=0", "regularizers.time_smoothness_proposal=0", "regularizers.l1_time_planes=0",
        "regularizers.l1_time_planes_proposal=0", f"model.decoder={decoder}", "model.explicit_basis_hidden=8",
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


def loss(model, n):
    model.optimizer.zero_grad()
    return model.forward_backward(n, seed=1, jitter=False)["loss"]


@pytest.mark.parametrize("decoder", ["hybrid", "explicit"])
def test_whole_loss_gradient_matches_finite_differences(decoder):
    model, n = make_model(tiny_cfg("[]", decoder))
    model.optimizer.zero_grad()
    stats = model.forward_backward(n, seed=1, jitter=False)
    assert np.isfinite(stats["loss"]) and stats["loss"] > 0
    grads = {name: model.optimizer.group(name).param.grad.to_numpy().copy()
             for name in model.optimizer.names}
    assert grads["offsets"][0] == 0.0  # the test camera holds still
    assert np.abs(grads["offsets"][1:]).max() > 1e-6  # offsets see the photometric loss
    eps = 1e-6
    rng = np.random.default_rng(5)
    for name in model.optimizer.names:
        field = model.optimizer.group(name).param
        values = field.to_numpy()
        idx = [1, 2] if name == "offsets" else rng.choice(len(values), size=min(4, len(values)), replace=False)
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
            assert grads[name][i] == pytest.approx(fd, rel=2e-4, abs=1e-8), (name, i)


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
    cfg["model"]["proposal"].update({"encoder": "hashgrid", "hash_levels": 2, "hash_log2_table": 8,
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
    from taichi_syncnerf.kernels.mlp import flatten

    def offsets_grad(**overrides):
        cfg = tiny_cfg("[8]")
        cfg["offsets"]["proposal_grad"] = overrides.get("proposal_grad", True)
        cfg["regularizers"]["interlevel"] = overrides.get("interlevel", 1.0)
        model, n = make_model(cfg)
        layers = model.field.density_mlp.layers()
        layers[-1][1][0] += 6.0  # the proposal under-bounds these weights: interlevel > 0
        model.field.density_mlp.set_params(flatten(layers))
        # time planes start constant (no time gradient): vary the proposal's planes
        enc = model.proposals[0].encoder.params
        values = enc.to_numpy()
        enc.from_numpy(values + np.random.default_rng(3).normal(0.0, 0.2, values.shape))
        model.optimizer.zero_grad()
        stats = model.forward_backward(n, seed=1, jitter=False)
        return stats, model.offsets.params.grad.to_numpy().copy()

    stats, with_proposals = offsets_grad()
    assert stats["interlevel"] > 0
    _, without = offsets_grad(proposal_grad=False)
    _, no_interlevel = offsets_grad(interlevel=0.0)
    # Without the proposal path, the offsets see exactly the gradient of the losses on the final field.
    np.testing.assert_allclose(without, no_interlevel, rtol=1e-10, atol=1e-14)
    assert np.abs(with_proposals - without).max() > 1e-6
