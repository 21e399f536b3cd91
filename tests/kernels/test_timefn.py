"""Time encoding and its time derivative vs the float64 twin and finite differences."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import timefn
from taichi_syncnerf.kernels.reference import timefn as ref
from taichi_syncnerf.timeline import T_LO, T_SPAN
from tests.kernels import finite_diff

K, F, L = 3, 7, 6


@pytest.fixture(scope="module")
def fields():
    off = ti.field(float, shape=K, needs_grad=True)
    table = ti.field(float, shape=(K * F, 2 * L), needs_grad=True)
    dt = ti.field(float, shape=K * F)
    return off, table, dt


@pytest.mark.parametrize("per_camera", [1, 0])
def test_encoding_matches_reference(fields, rng, per_camera):
    off, table, dt = fields
    o = rng.normal(0, 0.1, K)
    off.from_numpy(o)
    k = K if per_camera else 1
    timefn.time_encoding(off, table, k, F, L, per_camera, T_SPAN)
    want = ref.time_encoding(o, F, L, per_camera=bool(per_camera))
    np.testing.assert_allclose(table.to_numpy()[:k * F], want, rtol=1e-12, atol=1e-12)
    # frame 0 without offset is tau = 0: sin 0, cos 1
    if not per_camera:
        np.testing.assert_allclose(table.to_numpy()[0, 1::2], 1 / np.sqrt(L))


def test_offset_gradient_matches_finite_differences(fields, rng):
    off, table, dt = fields
    o = rng.normal(0, 0.1, K)
    g = rng.normal(size=(K * F, 2 * L))
    off.from_numpy(o)
    off.grad.fill(0.5)  # accumulates
    timefn.time_encoding(off, table, K, F, L, 1, T_SPAN)
    table.grad.from_numpy(g)
    timefn.time_encoding_backward(off, table, dt, K, F, L, 1, T_SPAN)
    loss = lambda v: float(np.sum(ref.time_encoding(v, F, L) * g))  # noqa: E731
    np.testing.assert_allclose(off.grad.to_numpy() - 0.5, finite_diff(loss, o), atol=1e-7)
    # per-row time derivative
    t = ref.table_times(o, F).ravel()
    row_loss = lambda tt: float(np.sum(ref.encode_times(tt, L) * g))  # noqa: E731
    np.testing.assert_allclose(dt.to_numpy(), finite_diff(row_loss, t), atol=1e-7)
    assert np.abs(dt.to_numpy()).max() > 0.1


def test_encoding_at_arbitrary_times(rng):
    t = rng.uniform(-1, 1, 11)
    times = ti.field(float, shape=11)
    out = ti.field(float, shape=(11, 2 * L))
    times.from_numpy(t)
    timefn.time_encoding_at(times, out, 11, L, T_LO, T_SPAN)
    np.testing.assert_allclose(out.to_numpy(), ref.encode_times(t, L), rtol=1e-12, atol=1e-12)


def test_reference_time_derivative_matches_finite_differences(rng):
    t = rng.uniform(-1, 1, 9)
    g = rng.normal(size=(9, 2 * L))
    got = np.sum(ref.encode_times_derivative(t, L) * g, axis=1)
    want = finite_diff(lambda v: float(np.sum(ref.encode_times(v, L) * g)), t)
    np.testing.assert_allclose(got, want, atol=1e-7)


G = 4


def _grid_fields():
    grid = ti.field(float, shape=F * G, needs_grad=True)
    table = ti.field(float, shape=(K * F, 2 * L + G), needs_grad=True)
    return grid, table


@pytest.mark.parametrize("per_camera", [1, 0])
def test_grid_encoding_matches_reference_and_reads_each_frame_at_zero_offset(rng, per_camera):
    off = ti.field(float, shape=K, needs_grad=True)
    grid, table = _grid_fields()
    gv = rng.normal(size=(F, G))
    grid.from_numpy(gv.ravel())
    o = rng.normal(0, 0.3, K)  # some rows fall outside the video and are clamped
    off.from_numpy(o)
    k = K if per_camera else 1
    timefn.time_grid_encoding(off, grid, table, k, F, G, 2 * L, per_camera, T_SPAN)
    want = ref.time_grid_encoding(o, gv, per_camera=bool(per_camera))
    np.testing.assert_allclose(table.to_numpy()[:k * F, 2 * L:], want, rtol=1e-12, atol=1e-12)
    off.fill(0.0)
    timefn.time_grid_encoding(off, grid, table, K, F, G, 2 * L, 1, T_SPAN)
    np.testing.assert_allclose(table.to_numpy()[:F, 2 * L:], gv, atol=1e-12)
    np.testing.assert_allclose(table.to_numpy()[2 * F:3 * F, 2 * L:], gv, atol=1e-12)


def test_grid_gradients_match_finite_differences(rng):
    off = ti.field(float, shape=K, needs_grad=True)
    grid, table = _grid_fields()
    dt = ti.field(float, shape=K * F)
    gv = rng.normal(size=(F, G))
    # offsets away from whole frames (the interpolation has kinks there); camera 2 is clamped
    o = np.array([0.37, -0.61, 2.3]) * 1.6 / (F - 1)
    o[2] = 1.9
    g = rng.normal(size=(K * F, G))
    grid.from_numpy(gv.ravel())
    off.from_numpy(o)
    off.grad.fill(0.5)
    grid.grad.fill(0.0)
    dt.fill(0.25)  # accumulates onto the sinusoids' derivative
    timefn.time_grid_encoding(off, grid, table, K, F, G, 2 * L, 1, T_SPAN)
    tg = np.zeros((K * F, 2 * L + G))
    tg[:, 2 * L:] = g
    table.grad.from_numpy(tg)
    timefn.time_grid_encoding_backward(off, grid, table, dt, K, F, G, 2 * L, 1, T_SPAN)
    loss_o = lambda v: float(np.sum(ref.time_grid_encoding(v, gv) * g))  # noqa: E731
    loss_g = lambda v: float(np.sum(ref.time_grid_encoding(o, v.reshape(F, G)) * g))  # noqa: E731
    got_o = off.grad.to_numpy() - 0.5
    np.testing.assert_allclose(got_o, finite_diff(loss_o, o), atol=1e-6)
    assert abs(got_o[0]) > 0.1 and abs(got_o[1]) > 0.1 and got_o[2] == 0.0
    np.testing.assert_allclose(grid.grad.to_numpy(), finite_diff(loss_g, gv.ravel()), atol=1e-7)
    t = ref.table_times(o, F).ravel()
    row_loss = lambda tt: float(np.sum(ref.grid_read(tt, gv) * g))  # noqa: E731
    np.testing.assert_allclose(dt.to_numpy() - 0.25, finite_diff(row_loss, t), atol=1e-6)


def test_grid_encoding_at_arbitrary_times(rng):
    grid, _ = _grid_fields()
    gv = rng.normal(size=(F, G))
    grid.from_numpy(gv.ravel())
    t = rng.uniform(-1, 1, 11)
    times = ti.field(float, shape=11)
    out = ti.field(float, shape=(11, 3 + G))
    times.from_numpy(t)
    timefn.time_grid_encoding_at(times, grid, out, 11, F, G, 3, T_LO, T_SPAN)
    np.testing.assert_allclose(out.to_numpy()[:, 3:], ref.grid_read(t, gv), rtol=1e-12, atol=1e-12)
