"""MixVoxels glue kernels vs their float64 twins, and their backwards vs finite differences.

Every field has rows past ``n`` (and gradients hold a sentinel before a backward): those rows must
stay untouched and the touched gradients must be overwritten, not accumulated."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import mixglue
from taichi_syncnerf.kernels.reference import mixglue as ref
from tests.kernels import finite_diff

SENT = 7.0  # content of the untouched rows, and of every gradient before a backward
TOL = dict(rtol=1e-12, atol=1e-12)


def _field(a, rows=None, dtype=float, grad=False):
    """A field holding ``a`` in its first rows and SENT in the ``rows - len(a)`` after them."""
    a = np.asarray(a)
    shape = (rows or len(a),) + a.shape[1:]
    full = np.full(shape, SENT)
    full[:len(a)] = a
    f = ti.field(dtype, shape=shape, needs_grad=grad)
    f.from_numpy(full.astype(np.int32 if dtype == ti.i32 else np.float64))
    if grad:
        f.grad.fill(SENT)
    return f


def _out(shape, dtype=float, grad=False):
    f = ti.field(dtype, shape=shape, needs_grad=grad)
    f.fill(SENT)
    return f


@pytest.mark.parametrize("relu, scale", [(1, 3.0), (0, 2.5)])
def test_sum_activate(rng, relu, scale):
    n, M = 6, 4
    pre = np.array([1.3, -0.7, 0.4, -2.1, 0.9, -0.3])  # row sums: both sides of the ReLU, far from 0
    x = rng.normal(size=(n, M))
    x[:, 0] += pre - x.sum(1)
    feat, out = _field(x, n + 2, grad=True), _out(n + 2, grad=True)
    mixglue.sum_activate(feat, out, n, M, scale, relu)
    want = ref.sum_activate(x, scale, relu)
    np.testing.assert_allclose(out.to_numpy()[:n], want, **TOL)
    np.testing.assert_array_equal(out.to_numpy()[n:], SENT)
    np.testing.assert_allclose(want, scale * (np.maximum(pre, 0) if relu else pre), rtol=1e-12)

    g = rng.normal(size=n + 2)
    out.grad.from_numpy(g)
    mixglue.sum_activate_backward(feat, out, n, M, scale, relu)
    got = feat.grad.to_numpy()
    np.testing.assert_allclose(got[:n], ref.sum_activate_backward(x, g[:n], scale, relu), **TOL)
    fd = finite_diff(lambda v: float(np.sum(ref.sum_activate(v, scale, relu) * g[:n])), x)
    np.testing.assert_allclose(got[:n], fd, atol=1e-8)
    np.testing.assert_array_equal(got[n:], SENT)
    live = pre > 0 if relu else np.ones(n, bool)
    assert np.all(got[:n][live] != 0) and np.all(got[:n][~live] == 0)
    assert (~live).any() == bool(relu)


def test_concat_dirs(rng):
    n, M, R = 6, 3, 4
    x = rng.normal(size=(n, M))
    dirs = rng.normal(size=(R, 3)) * 3.0
    dirs[1] *= 1e-3  # a short direction is normalised too
    dirs[2] = 0.0  # a zero direction stays zero
    ray_of = np.array([3, 0, 2, 3, 1, 0], np.int32)
    feat, out = _field(x, n + 2, grad=True), _out((n + 2, M + 3), grad=True)
    mixglue.concat_dirs(feat, _field(dirs), _field(ray_of, dtype=ti.i32), out, n, M)
    want = ref.concat_dirs(x, dirs, ray_of)
    got = out.to_numpy()
    np.testing.assert_allclose(got[:n], want, **TOL)
    np.testing.assert_array_equal(got[n:], SENT)
    np.testing.assert_allclose(np.linalg.norm(want[:, M:], axis=1), np.where(ray_of == 2, 0.0, 1.0), atol=1e-15)

    g = rng.normal(size=(n + 2, M + 3))
    out.grad.from_numpy(g)
    mixglue.concat_dirs_backward(feat, out, n, M)
    got = feat.grad.to_numpy()
    np.testing.assert_allclose(got[:n], ref.concat_dirs_backward(g[:n], M), **TOL)
    fd = finite_diff(lambda v: float(np.sum(ref.concat_dirs(v, dirs, ray_of) * g[:n])), x)
    np.testing.assert_allclose(got[:n], fd, atol=1e-8)
    np.testing.assert_array_equal(got[n:], SENT)
    assert np.all(got[:n] != 0)


def test_sigmoid3(rng):
    n = 5
    x = rng.normal(0, 3, size=(n, 3))
    xf, out = _field(x, n + 2, grad=True), _out((n + 2, 3), grad=True)
    mixglue.sigmoid3(xf, out, n)
    np.testing.assert_allclose(out.to_numpy()[:n], ref.sigmoid3(x), **TOL)
    np.testing.assert_array_equal(out.to_numpy()[n:], SENT)
    np.testing.assert_allclose(ref.sigmoid3(np.array([0.0, 50.0, -50.0])), [0.5, 1.0, 0.0], atol=1e-15)

    g = rng.normal(size=(n + 2, 3))
    out.grad.from_numpy(g)
    mixglue.sigmoid3_backward(xf, out, n)
    got = xf.grad.to_numpy()
    np.testing.assert_allclose(got[:n], ref.sigmoid3_backward(x, g[:n]), **TOL)
    np.testing.assert_allclose(got[:n], finite_diff(lambda v: float(np.sum(ref.sigmoid3(v) * g[:n])), x), atol=1e-8)
    np.testing.assert_array_equal(got[n:], SENT)
    assert np.all(got[:n] != 0)


def test_box_points(rng):
    R, n = 4, 7
    lo, hi = np.array([-2.0, -1.5, 0.5]), np.array([2.0, 1.0, 3.0])
    o, d = rng.normal(size=(R, 3)), rng.normal(size=(R, 3))
    o[3], d[3] = lo, hi - lo  # ray 3 runs from the box's low corner (t = 0) to its high one (t = 1)
    t0 = np.concatenate([rng.uniform(0, 2, n - 3), [0.0, 0.0, 1.0]])
    t1 = np.concatenate([t0[:n - 3] + rng.uniform(0, 0.3, n - 3), [0.0, 1.0, 1.0]])
    ray_id = np.array([1, 0, 2, 1, 3, 3, 3], np.int32)
    out = _out((n + 2, 3))
    mixglue.box_points(_field(o), _field(d), _field(t0, n + 2), _field(t1, n + 2), _field(ray_id, n + 2, ti.i32),
                       out, n, *lo, *hi)
    want = ref.box_points(o, d, t0, t1, ray_id, lo, hi)
    np.testing.assert_allclose(out.to_numpy()[:n], want, **TOL)
    np.testing.assert_array_equal(out.to_numpy()[n:], SENT)
    np.testing.assert_allclose(want[n - 3:], [[-1.0] * 3, [0.0] * 3, [1.0] * 3], atol=1e-15)


def test_gathers(rng):
    S, n, M = 7, 5, 3
    src = rng.normal(size=(S, M + 1))
    index = np.array([6, 0, 3, 3, 5], np.int32)
    out = _out((n + 2, M + 1))
    mixglue.gather_rows(_field(src), _field(index, n + 2, ti.i32), out, n, M)
    got = out.to_numpy()
    np.testing.assert_allclose(got[:n, :M], ref.gather_rows(src, index, M), **TOL)
    np.testing.assert_array_equal(got[:n, :M], src[[6, 0, 3, 3, 5], :M])
    np.testing.assert_array_equal(got[:, M:], SENT)  # columns >= M untouched
    np.testing.assert_array_equal(got[n:], SENT)

    for dtype, a in ((float, rng.normal(size=S)), (ti.i32, rng.integers(-50, 50, S))):
        out = _out(n + 2, dtype)
        mixglue.gather_scalar(_field(a, dtype=dtype), _field(index, n + 2, ti.i32), out, n)
        np.testing.assert_allclose(out.to_numpy()[:n], ref.gather_scalar(a, index), **TOL)
        np.testing.assert_array_equal(out.to_numpy()[n:], SENT)


def test_pack_rows(rng):
    Q, C, D = 3, 3, 2
    L = Q * C * (D + 1)
    s = rng.normal(size=(Q, C * D))
    src, dst = _field(s, Q + 1, grad=True), _out(L + 3, grad=True)
    mixglue.pack_rows(src, dst, Q, C, D)
    got = dst.to_numpy()
    want = ref.pack_rows(s, C, D)
    np.testing.assert_allclose(got[:L], want, **TOL)
    np.testing.assert_array_equal(got[:L].reshape(Q * C, D + 1)[:, D], 0.0)  # the bias column
    np.testing.assert_array_equal(got[L:], SENT)
    for q, c, d in np.ndindex(Q, C, D):
        assert got[(q * C + c) * (D + 1) + d] == s[q, c * D + d]

    g = rng.normal(size=L + 3)  # the bias entries have a gradient too: it must not leak into src
    dst.grad.from_numpy(g)
    mixglue.pack_rows_backward(src, dst, Q, C, D)
    got = src.grad.to_numpy()
    np.testing.assert_allclose(got[:Q], ref.pack_rows_backward(g, Q, C, D), **TOL)
    np.testing.assert_allclose(got[:Q], finite_diff(lambda v: float(np.sum(ref.pack_rows(v, C, D) * g[:L])), s),
                               atol=1e-8)
    np.testing.assert_array_equal(got[Q:], SENT)
    assert np.all(got[:Q] != 0)


def test_occupancy(rng):
    res = (4, 3, 2)  # (rx, ry, rz); occ is flat with x fastest
    n_cells = int(np.prod(res))
    hand = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.6, -0.2, -0.9],
                     [1.0 + 1e-9, 0.0, 0.0], [0.0, -1.5, 0.0], [0.0, 0.0, 2.0]])
    hand_cell = [0, 23, 18, 7, -1, -1, -1]  # (z ry + y) rx + x, -1: outside
    p = np.concatenate([hand, rng.uniform(-1.3, 1.3, size=(40, 3))])
    n = len(p)
    pts = _field(p, n + 2)
    for occ in (np.arange(n_cells) + 1, rng.integers(0, 2, n_cells)):  # the cell id + 1, then a 0/1 mask
        keep = _out(n + 2, ti.i32)
        mixglue.occupancy(pts, _field(occ, dtype=ti.i32), keep, n, *res)
        got = keep.to_numpy()
        want = ref.occupancy(p, occ, res)
        np.testing.assert_array_equal(got[:n], want)
        np.testing.assert_array_equal(got[n:], SENT)
        np.testing.assert_array_equal(want[:len(hand)], [occ[c] if c >= 0 else 0 for c in hand_cell])
        inside = np.all(np.abs(p) <= 1.0, 1)
        assert (~inside).sum() >= 10 and np.all(got[:n][~inside] == 0)
    ids = ref.occupancy(p, np.arange(n_cells) + 1, res)
    assert len(np.unique(ids[ids > 0])) >= 10  # many cells are hit
    assert (want[inside] == 0).any() and (want[inside] == 1).any()  # the 0/1 mask drops some inside points
