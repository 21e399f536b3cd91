"""K-Planes encoder vs its float64 numpy twin and finite differences (float64 runtime)."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import planes
from taichi_syncnerf.kernels.reference import planes as ref

N = 40
F = 4
SPACE = [3, 5]
TIME = 4
H = 1e-6  # finite-difference step
TOL = 1e-7


@pytest.fixture(scope="module")
def make():
    """Factory of (encoder, x, feat) with random parameters; one encoder per configuration for
    the module, because every encoder instance compiles its own kernels."""
    cache = {}

    def _make(dims, groups=1, seed=5):
        key = (dims, groups)
        if key not in cache:
            enc = planes.PlaneEncoder(dims, F, SPACE, TIME, max_points=N + 2, feature_groups=groups)
            x = ti.field(float, shape=(N + 2, dims), needs_grad=True)
            feat = ti.field(float, shape=(N + 2, enc.output_dim), needs_grad=True)
            cache[key] = enc, x, feat
        enc, x, feat = cache[key]
        # Values around 1 with both signs of deviation: every plane matters, none is constant.
        enc.set_params(np.random.default_rng(seed).uniform(-0.5, 1.5, enc.n_params))
        enc.zero_grad()
        return enc, x, feat

    return _make


def _points(rng, dims, n=N, margin=1e-3):
    """Points in (-1, 1) whose cell positions stay `margin` away from every texel line (no
    finite difference straddles a kink), plus a few rows with coordinates outside [-1, 1]."""
    pts = []
    while len(pts) < n:
        p = rng.uniform(-0.995, 0.995, size=dims)
        ok = True
        for a in range(dims):
            for r in (SPACE if a < 3 else [TIME]):
                pos = (p[a] + 1) / 2 * (r - 1)
                ok &= abs(pos - np.round(pos)) > margin
        if ok:
            pts.append(p)
    pts = np.array(pts)
    # Rows 0..3: one axis each pushed out of range (|coord| > 1): clamped, zero gradient there.
    for a in range(min(dims, 4)):
        pts[a, a] = 1.3 if a % 2 else -1.7
    return pts


def _load(field, values):
    full = np.zeros(field.shape)
    full[: len(values)] = values
    field.from_numpy(full)


def _loss_and_grads(enc, x, feat, pts, weights, mode="owner"):
    """Forward, then backward of L = sum(weights * feat); returns (L, dL/dparams, dL/dx)."""
    n = len(pts)
    _load(x, pts)
    enc.forward(x, feat, n)
    _load(feat.grad, weights)
    enc.zero_grad()
    enc.backward(x, feat, n, mode=mode)
    loss = float((feat.to_numpy()[:n] * weights).sum())
    return loss, enc.get_grad(), x.grad.to_numpy()[:n]


def test_layout_and_init():
    enc = planes.PlaneEncoder(4, F, SPACE, TIME, max_points=4, seed=11)
    assert enc.plane_names() == ["xy", "xz", "yz", "xt", "yt", "zt"]
    assert planes.plane_names(3) == ["xy", "xz", "yz"]
    entries, total = ref.layout(4, F, SPACE, TIME)
    assert enc.n_params == total and enc.output_dim == len(SPACE) * F
    assert [spec.offset for spec in enc.layout] == [e[5] for e in entries]
    for spec in enc.layout:
        plane = enc.plane_array(spec.scale, spec.name)
        assert plane.shape == (spec.height, spec.width, F)
        res = SPACE[spec.scale]
        assert plane.shape[:2] == ((TIME if spec.name[1] == "t" else res), res)
        if spec.is_time:
            np.testing.assert_array_equal(plane, 1.0)
        else:
            assert plane.min() >= 0.1 and plane.max() <= 0.5 and plane.std() > 0.05
    np.testing.assert_array_equal(enc.get_params(), enc.initial_params(11))
    assert not np.array_equal(enc.initial_params(12), enc.initial_params(11))
    low = enc.initial_params(0, init_range=(2.0, 3.0))
    assert low[: enc.layout[0].size].min() >= 2.0
    # A 3-D encoder has no time planes and ignores time_res.
    enc3 = planes.PlaneEncoder(3, F, SPACE, 0, max_points=4)
    assert enc3.n_params == ref.layout(3, F, SPACE, 2)[1]


def test_params_roundtrip_and_plane_view(make):
    enc, _, _ = make(4)
    p = enc.get_params()
    enc.set_params(p)
    np.testing.assert_array_equal(enc.get_params(), p)
    spec = enc.plane_spec(1, "yt")
    np.testing.assert_array_equal(enc.plane_array(1, "yt").ravel(), p[spec.offset: spec.offset + spec.size])
    assert enc.plane_spec(1, 4) == spec
    with pytest.raises(ValueError):
        enc.set_params(p[:-1])
    with pytest.raises(ValueError):
        enc.set_params(np.full_like(p, np.nan))
    with pytest.raises(ValueError):
        enc.plane_spec(0, "xw")
    with pytest.raises(IndexError):
        enc.plane_spec(2, "xy")


@pytest.mark.parametrize("dims", [3, 4])
def test_forward_matches_reference(make, dims, rng):
    enc, x, feat = make(dims)
    pts = _points(rng, dims)
    # Exact borders and grid nodes too.
    pts[4] = 1.0
    pts[5] = -1.0
    pts[6] = 0.0
    _load(x, pts)
    enc.forward(x, feat, N)
    want = ref.forward(enc.get_params(), pts, dims, F, SPACE, TIME)
    np.testing.assert_allclose(feat.to_numpy()[:N], want, rtol=1e-12, atol=1e-12)
    # Out-of-range coordinates read the border: same as the clamped point.
    clamped = np.clip(pts, -1, 1)
    np.testing.assert_allclose(want, ref.forward(enc.get_params(), clamped, dims, F, SPACE, TIME))


@pytest.mark.parametrize("dims", [3, 4])
def test_param_grad_matches_finite_differences(make, dims, rng):
    enc, x, feat = make(dims)
    pts = _points(rng, dims)
    w = rng.normal(size=(N, enc.output_dim))
    _, gp, _ = _loss_and_grads(enc, x, feat, pts, w)
    base = enc.get_params()
    fd = np.empty(enc.n_params)
    for j in range(enc.n_params):
        vals = []
        for sign in (1.0, -1.0):
            enc.params[j] = base[j] + sign * H
            enc.forward(x, feat, N)
            vals.append((feat.to_numpy()[:N] * w).sum())
        enc.params[j] = base[j]
        fd[j] = (vals[0] - vals[1]) / (2 * H)
    assert np.abs(gp).max() > 0.1 and np.count_nonzero(gp) > 0.5 * gp.size  # not vacuous
    np.testing.assert_allclose(gp, fd, atol=TOL * 10, rtol=1e-7)
    gp_ref, _ = ref.backward(base, pts, w, dims, F, SPACE, TIME)
    np.testing.assert_allclose(gp, gp_ref, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dims", [3, 4])
def test_coord_grad_matches_finite_differences(make, dims, rng):
    enc, x, feat = make(dims)
    pts = _points(rng, dims)
    w = rng.normal(size=(N, enc.output_dim))
    _, _, gx = _loss_and_grads(enc, x, feat, pts, w)
    fd = np.empty_like(pts)
    for a in range(dims):  # each row's loss depends on its own point only
        per_row = []
        for sign in (1.0, -1.0):
            moved = pts.copy()
            moved[:, a] += sign * H
            _load(x, moved)
            enc.forward(x, feat, N)
            per_row.append((feat.to_numpy()[:N] * w).sum(axis=1))
        fd[:, a] = (per_row[0] - per_row[1]) / (2 * H)
    np.testing.assert_allclose(gx, fd, atol=TOL * 10, rtol=1e-6)
    # Out-of-range coordinates have zero gradient; in-range ones (t included) do not.
    for a in range(dims):
        assert gx[a, a] == 0.0
    assert np.all(np.abs(gx[dims:]) > 0)
    _, gx_ref = ref.backward(enc.get_params(), pts, w, dims, F, SPACE, TIME)
    np.testing.assert_allclose(gx, gx_ref, atol=1e-12, rtol=1e-10)


def test_backward_modes_and_feature_groups_agree(make, rng):
    pts = _points(rng, 4)
    enc, x, feat = make(4)
    w = rng.normal(size=(N, enc.output_dim))
    want_p, want_x = ref.backward(enc.get_params(), pts, w, 4, F, SPACE, TIME)
    for groups, mode in [(1, "owner"), (1, "atomic"), (2, "owner"), (4, "owner")]:
        enc, x, feat = make(4, groups)
        _, gp, gx = _loss_and_grads(enc, x, feat, pts, w, mode=mode)
        np.testing.assert_allclose(gp, want_p, atol=1e-12, rtol=1e-12, err_msg=f"{groups} {mode}")
        np.testing.assert_allclose(gx, want_x, atol=1e-12, rtol=1e-10, err_msg=f"{groups} {mode}")


@pytest.mark.parametrize("mode", ["owner", "atomic"])
def test_backward_accumulates_and_overwrites(make, rng, mode):
    enc, x, feat = make(4)
    pts = _points(rng, 4)
    n = N - 5
    w = rng.normal(size=(N + 2, enc.output_dim))  # rows >= n carry junk that must be ignored
    _load(x, pts)
    enc.forward(x, feat, n)
    feat.grad.from_numpy(w)
    x.grad.from_numpy(np.full(x.shape, 7.0))
    enc.zero_grad()
    enc.backward(x, feat, n, mode=mode)
    once = enc.get_grad()
    gx = x.grad.to_numpy()
    want_p, want_x = ref.backward(enc.get_params(), pts[:n], w[:n], 4, F, SPACE, TIME)
    np.testing.assert_allclose(once, want_p, atol=1e-12)
    np.testing.assert_allclose(gx[:n], want_x, atol=1e-12)  # overwritten, not added to the 7s
    np.testing.assert_array_equal(gx[n:], 7.0)  # rows >= n untouched
    np.testing.assert_array_equal(feat.grad.to_numpy(), w)  # output gradient left as set
    enc.backward(x, feat, n, mode=mode)
    np.testing.assert_allclose(enc.get_grad(), 2 * once, atol=1e-12)  # accumulated
    np.testing.assert_allclose(x.grad.to_numpy()[:n], want_x, atol=1e-12)
    x.grad.from_numpy(np.full(x.shape, 7.0))
    enc.backward(x, feat, n, coord_grad=False, mode=mode)
    np.testing.assert_array_equal(x.grad.to_numpy(), 7.0)
    np.testing.assert_allclose(enc.get_grad(), 3 * once, atol=1e-12)


def test_time_gradient_is_zero_at_init_and_not_after(make, rng):
    """Time planes start at 1, so features do not depend on t until they are trained."""
    enc, x, feat = make(4)
    enc.set_params(enc.initial_params(0))
    pts = _points(rng, 4)
    _load(x, pts)
    enc.forward(x, feat, N)
    _load(feat.grad, rng.normal(size=(N, enc.output_dim)))
    enc.backward(x, feat, N)
    assert np.all(x.grad.to_numpy()[:N, 3] == 0.0) and np.abs(x.grad.to_numpy()[4:N, :3]).min() > 0
    p = enc.get_params()
    spec = enc.plane_spec(0, "zt")
    p[spec.offset: spec.offset + spec.size] += rng.normal(0, 0.1, spec.size)
    enc.set_params(p)
    enc.forward(x, feat, N)
    enc.backward(x, feat, N)
    assert np.abs(x.grad.to_numpy()[4:N, 3]).min() > 0


def test_bad_arguments_raise(make):
    enc, x, feat = make(4)
    with pytest.raises(ValueError):
        planes.PlaneEncoder(5, F, SPACE, TIME, max_points=4)
    with pytest.raises(ValueError):
        planes.PlaneEncoder(4, F, [1, 4], TIME, max_points=4)
    with pytest.raises(ValueError):
        planes.PlaneEncoder(4, F, SPACE, 1, max_points=4)
    with pytest.raises(ValueError):
        planes.PlaneEncoder(4, F, SPACE, TIME, max_points=4, feature_groups=3)
    with pytest.raises(ValueError):
        planes.PlaneEncoder(4, F, SPACE, TIME, max_points=4, backward_mode="fast")
    with pytest.raises(ValueError):
        enc.forward(x, feat, N + 3)
    wrong = ti.field(float, shape=(N + 2, enc.output_dim + 1), needs_grad=True)
    with pytest.raises(ValueError):
        enc.forward(x, wrong, N)
    no_grad = ti.field(float, shape=(N + 2, 4))
    with pytest.raises(ValueError):
        enc.backward(no_grad, feat, N)
    with pytest.raises(ValueError):
        enc.backward(x, feat, N, mode="fast")
    no_grad_feat = ti.field(float, shape=(N + 2, enc.output_dim))
    with pytest.raises(ValueError):
        enc.backward(x, no_grad_feat, N, coord_grad=False)
