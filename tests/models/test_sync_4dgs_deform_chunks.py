"""Sync-4DGS deformation in chunks: the network runs over at most ``chunk`` Gaussians at a time, so its
per-row buffers are sized by the chunk, not by the capacity, and the chunked passes give the deltas and
the gradients (parameters, canonical means, time) of one pass over every Gaussian."""
import numpy as np
import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides

CAP, N, T = 40, 30, 0.137
HEADS = {"position": 3, "scale": 3, "rotation": 4, "opacity": 1, "sh": 12}


def gaussians_cfg():
    return apply_overrides(DEFAULTS, [
        "gaussians.plane_res=4", "gaussians.plane_multires=[1, 2]", "gaussians.plane_features=3",
        "gaussians.deform_width=6", "gaussians.deform_depth=2", "gaussians.deform_zero_init=false"])["gaussians"]


def deformation(chunk, capacity=CAP):
    from taichi_syncnerf.models.gaussians.deform import Deformation

    d = Deformation(gaussians_cfg(), capacity, HEADS, 5, [[-1.2] * 3, [1.2] * 3], seed=11, chunk=chunk)
    rng = np.random.default_rng(4)
    d.encoder.params.from_numpy(rng.uniform(0.5, 1.5, d.encoder.n_params))   # time planes too: dL/dt != 0
    for k, mlp in enumerate([d.trunk, *d.heads.values()]):
        mlp.set_params(np.random.default_rng(20 + k).uniform(-0.4, 0.4, mlp.n_params))
    return d


@pytest.fixture(scope="module")
def pair():
    """The same deformation twice: chunks of 7 rows (30 Gaussians: 7, 7, 7, 7, 2) and one chunk."""
    import taichi as ti

    means = ti.field(float, shape=3 * CAP, needs_grad=True)
    m = np.zeros(3 * CAP)
    m[: 3 * N] = np.random.default_rng(5).normal(size=3 * N) * 0.6
    means.from_numpy(m)
    return deformation(7), deformation(CAP), means


def params_grads(d):
    return {name: p.grad.to_numpy().copy() for name, p in d.named_params().items()}


def run(d, means, n, grads, prefill=0.0):
    """Forward at T, the heads' output gradients ``grads``, backward; every parameter gradient and the
    means' gradient start at ``prefill`` (backward ADDS to them)."""
    out = d.forward(means, n, T)
    deltas = {name: f.to_numpy().copy() for name, f in out.items()}
    for name, f in out.items():
        full = np.zeros(f.shape)
        full[:n] = grads[name][:n]
        f.grad.from_numpy(full)
    for p in d.named_params().values():
        p.grad.fill(prefill)
    means.grad.fill(prefill)
    dt = d.backward(means, n)
    return deltas, params_grads(d), means.grad.to_numpy().copy(), dt


def head_grads(seed):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(CAP, dim)) for name, dim in HEADS.items()}


@pytest.mark.parametrize("n", [N, 14, 5])   # 5 chunks (the last one short), 2 full chunks, less than a chunk
def test_chunked_deformation_matches_one_pass(pair, n):
    chunked, whole, means = pair
    assert chunked.chunk == 7 and whole.chunk == CAP
    grads = head_grads(n)
    a_out, a_par, a_means, a_dt = run(chunked, means, n, grads)
    b_out, b_par, b_means, b_dt = run(whole, means, n, grads)
    for name in HEADS:
        assert np.abs(b_out[name][:n]).max() > 1e-3
        np.testing.assert_allclose(a_out[name][:n], b_out[name][:n], rtol=0, atol=1e-13)
    for name, g in b_par.items():
        assert np.abs(g).max() > 1e-6, name                          # every parameter group takes part
        np.testing.assert_allclose(a_par[name], g, rtol=1e-12, atol=1e-12 * np.abs(g).max())
    assert np.abs(b_means[: 3 * n]).max() > 1e-6
    assert not b_means[3 * n:].any() and not a_means[3 * n:].any()   # only the Gaussians < n
    np.testing.assert_allclose(a_means, b_means, rtol=1e-12, atol=1e-12 * np.abs(b_means).max())
    assert abs(b_dt) > 1e-6
    assert a_dt == pytest.approx(b_dt, rel=1e-12, abs=1e-13)


def test_chunked_backward_accumulates_into_the_gradients(pair):
    """Over several chunks every parameter gradient and the means' gradient are ADDED to (nothing is
    zeroed per chunk or per call), and a backward after the forward of other Gaussians is refused."""
    chunked, _, means = pair
    grads = head_grads(1)
    _, zero_par, zero_means, dt0 = run(chunked, means, N, grads)
    _, par, m, dt = run(chunked, means, N, grads, prefill=0.25)
    for name, g in zero_par.items():
        np.testing.assert_allclose(par[name], g + 0.25, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m, zero_means + 0.25, rtol=1e-12, atol=1e-12)
    assert dt == pytest.approx(dt0, rel=1e-12)
    before = params_grads(chunked)
    dt2 = chunked.backward(means, N)               # again: every chunk's forward is run again
    assert dt2 == pytest.approx(dt0, rel=1e-12)
    for name, g in zero_par.items():
        np.testing.assert_allclose(params_grads(chunked)[name], before[name] + g, rtol=1e-12, atol=1e-12)
    chunked.forward(means, 20, T)
    with pytest.raises(RuntimeError):
        chunked.backward(means, N)


def test_per_row_buffers_are_sized_by_the_chunk():
    """At a large capacity only the heads' outputs (what the cloud reads) have a row per Gaussian."""
    from taichi_syncnerf.kernels.mlp import V
    from taichi_syncnerf.models.gaussians.deform import CHUNK

    cap, chunk = 100_000, 64
    d = deformation(chunk, capacity=cap)
    assert d.chunk == chunk
    for f in (d.x, d.feat, d.h, d.hr, d._acc, *d._head_out.values()):
        assert f.shape[0] == chunk
    assert d.encoder.max_points == chunk and d.encoder._coord_part.shape[0] == chunk
    for mlp in (d.trunk, *d.heads.values()):
        assert mlp.max_batch == chunk and mlp._buf.shape[0] * V == chunk
    assert {name: f.shape for name, f in d.out.items()} == {name: (cap, dim) for name, dim in HEADS.items()}
    with pytest.raises(ValueError):
        d.forward(None, cap + 1, T)
    assert deformation(None, capacity=CAP).chunk == CAP                # the smaller of capacity and chunk
    assert CHUNK >= 4096
