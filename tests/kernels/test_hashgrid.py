"""Hash-grid encoder vs its float64 numpy twin and finite differences."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import hashgrid
from taichi_syncnerf.kernels.reference import hashgrid as ref

N = 40
# Tiny table (2^8 slots): the coarse levels are dense, the fine ones hashed (with collisions).
CONFIG = dict(n_levels=4, n_features=2, log2_table_size=8, base_res=2, max_res=12, max_points=N)


@pytest.fixture(scope="module")
def make():
    """Factory of (encoder, twin, x, feat); one encoder per dims for the module, because every
    encoder instance compiles its own kernels."""
    cache = {}

    def _make(dims, seed=3):
        if dims not in cache:
            enc = hashgrid.HashGridEncoder(dims=dims, seed=seed, **CONFIG)
            x = ti.field(float, shape=(N, dims), needs_grad=True)
            feat = ti.field(float, shape=(N, enc.output_dim + 1), needs_grad=True)
            cache[dims] = enc, x, feat
        enc, x, feat = cache[dims]
        twin = ref.HashGridEncoder(dims=dims, seed=seed, **CONFIG)
        # A larger spread than the 1e-4 init keeps the gradients well conditioned.
        params = np.random.default_rng(seed).normal(size=enc.n_params)
        enc.params.from_numpy(params)
        twin.params = params.copy()
        enc.params.grad.fill(0.0)
        return enc, twin, x, feat

    return _make


def _points(rng, dims, resolutions, n=N, margin=1e-3):
    """Random points in (-1, 1) whose cell positions stay `margin` away from every cell face, so
    finite differences do not straddle a kink of the piecewise-linear interpolation."""
    pts = []
    while len(pts) < n:
        p = rng.uniform(-0.999, 0.999, size=dims)
        pos = np.outer(resolutions, (p + 1) / 2)
        if np.all(np.abs(pos - np.round(pos)) > margin):
            pts.append(p)
    return np.array(pts)


def test_layout_and_init_match_reference():
    enc = hashgrid.HashGridEncoder(dims=4, seed=7, **CONFIG)
    twin = ref.HashGridEncoder(dims=4, seed=7, **CONFIG)
    assert enc.resolutions == twin.resolutions == [2, 3, 6, 12]
    assert enc.hashed == twin.hashed == [0, 0, 1, 1]
    assert enc.offsets == twin.offsets and enc.n_params == twin.n_params
    p = enc.params.to_numpy()
    np.testing.assert_array_equal(p, twin.params)
    assert np.abs(p).max() <= 1e-4 and p.std() > 3e-5
    # per_level_scale gives the same levels as the equivalent max_res.
    assert hashgrid.level_resolutions(4, 16, per_level_scale=2.0) == [16, 32, 64, 128]
    assert hashgrid.level_resolutions(16, 16, max_res=2048)[-1] == 2048


@pytest.mark.parametrize("dims", [3, 4])
def test_forward_matches_reference(make, dims, rng):
    enc, twin, x, feat = make(dims)
    pts = rng.uniform(-1.0, 1.0, size=(N, dims))
    x.from_numpy(pts)
    feat.fill(7.0)
    n = N - 5
    enc.forward(x, feat, n)
    out = feat.to_numpy()
    np.testing.assert_allclose(out[:n, : enc.output_dim], twin.forward(pts[:n]), rtol=1e-12, atol=1e-12)
    assert np.all(out[n:] == 7.0) and np.all(out[:, -1] == 7.0)  # rows >= n and extra column untouched


def test_clamps_outside_and_zero_coordinate_gradient(make, rng):
    enc, twin, x, feat = make(4)
    pts = rng.uniform(-1.0, 1.0, size=(N, 4))
    pts[:10, 3] = rng.uniform(1.0, 3.0, size=10)
    pts[10:20, 0] = rng.uniform(-3.0, -1.0, size=10)
    x.from_numpy(pts)
    enc.forward(x, feat, N)
    clipped = np.clip(pts, -1, 1)
    np.testing.assert_allclose(feat.to_numpy()[:, : enc.output_dim], twin.forward(clipped), rtol=1e-12, atol=1e-12)
    feat.grad.from_numpy(rng.normal(size=feat.shape))
    enc.backward(x, feat, N)
    gx = x.grad.to_numpy()
    assert np.all(gx[:10, 3] == 0.0) and np.all(gx[10:20, 0] == 0.0)
    assert np.all(gx[:10, :3] != 0.0)
    # A NaN coordinate must not index outside the table (no crash, other rows unaffected).
    pts[25] = np.nan
    x.from_numpy(pts)
    enc.forward(x, feat, N)
    np.testing.assert_allclose(feat.to_numpy()[:25, : enc.output_dim], twin.forward(clipped[:25]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dims", [3, 4])
def test_backward_matches_reference_and_finite_differences(make, dims, rng):
    enc, twin, x, feat = make(dims)
    pts = _points(rng, dims, enc.resolutions)
    n = N - 3
    x.from_numpy(pts)
    dfeat = rng.normal(size=feat.shape)
    feat.grad.from_numpy(dfeat)
    enc.params.grad.fill(0.5)  # backward accumulates into params.grad
    x.grad.fill(9.0)  # ... and overwrites x.grad rows < n
    enc.backward(x, feat, n)
    np.testing.assert_array_equal(feat.grad.to_numpy(), dfeat)  # upstream gradient left as set
    gp = enc.params.grad.to_numpy() - 0.5
    gx = x.grad.to_numpy()
    rp, rx = twin.backward(pts[:n], dfeat[:n, : enc.output_dim])
    np.testing.assert_allclose(gp, rp, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx[:n], rx, rtol=1e-10, atol=1e-12)
    assert np.all(gx[n:] == 9.0)
    assert np.abs(gx[:n, dims - 1]).min() > 0.0  # the last axis (time when dims = 4) gets gradients

    # Finite differences of the Taichi forward: loss = sum(dfeat * feat) over rows < n.
    def loss_rows(p_x=None, params=None):
        if params is not None:
            enc.params.from_numpy(params)
        x.from_numpy(pts if p_x is None else p_x)
        enc.forward(x, feat, n)
        return np.sum(dfeat[:n, : enc.output_dim] * feat.to_numpy()[:n, : enc.output_dim], axis=1)

    h = 1e-6
    params0 = enc.params.to_numpy()
    for d in range(dims):  # rows are independent: perturb a whole column at once
        plus, minus = pts.copy(), pts.copy()
        plus[:, d] += h
        minus[:, d] -= h
        fd = (loss_rows(plus) - loss_rows(minus)) / (2 * h)
        np.testing.assert_allclose(gx[:n, d], fd, rtol=1e-6, atol=1e-7)
    for k in np.random.default_rng(5).choice(enc.n_params, size=12, replace=False):
        plus, minus = params0.copy(), params0.copy()
        plus[k] += h
        minus[k] -= h
        fd = (loss_rows(params=plus).sum() - loss_rows(params=minus).sum()) / (2 * h)
        assert abs(gp[k] - fd) <= 1e-7 + 1e-6 * abs(fd)
    enc.params.from_numpy(params0)


def test_backward_without_coordinate_gradient_leaves_x_grad(make, rng):
    enc, twin, x, feat = make(3)
    pts = rng.uniform(-1, 1, size=(N, 3))
    x.from_numpy(pts)
    dfeat = rng.normal(size=feat.shape)
    feat.grad.from_numpy(dfeat)
    x.grad.fill(4.0)
    enc.params.grad.fill(0.0)
    enc.backward(x, feat, N, coord_grad=False)
    enc.backward(x, feat, N, coord_grad=False)  # accumulates twice
    assert np.all(x.grad.to_numpy() == 4.0)
    rp, _ = twin.backward(pts, dfeat[:, : enc.output_dim])
    np.testing.assert_allclose(enc.params.grad.to_numpy(), 2 * rp, rtol=1e-10, atol=1e-12)


def test_bad_arguments_raise(make):
    with pytest.raises(ValueError, match="dims"):
        hashgrid.HashGridEncoder(dims=2, **CONFIG)
    with pytest.raises(ValueError, match="exactly one"):
        hashgrid.HashGridEncoder(dims=3, n_levels=2, n_features=2, log2_table_size=8, base_res=2)
    enc, _, x, feat = make(3)
    with pytest.raises(ValueError, match="max_points"):
        enc.forward(x, feat, N + 1)
    small = ti.field(float, shape=(N, 2))
    with pytest.raises(ValueError, match="x must be"):
        enc.forward(small, feat, N)
    with pytest.raises(ValueError, match="needs_grad"):
        enc.backward(ti.field(float, shape=(N, 3)), feat, N)
