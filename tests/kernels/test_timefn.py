"""Time encoding and its time derivative vs the float64 twin and finite differences."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import timefn
from taichi_syncnerf.kernels.reference import timefn as ref
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
    timefn.time_encoding(off, table, k, F, L, per_camera)
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
    timefn.time_encoding(off, table, K, F, L, 1)
    table.grad.from_numpy(g)
    timefn.time_encoding_backward(off, table, dt, K, F, L, 1)
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
    timefn.time_encoding_at(times, out, 11, L)
    np.testing.assert_allclose(out.to_numpy(), ref.encode_times(t, L), rtol=1e-12, atol=1e-12)


def test_reference_time_derivative_matches_finite_differences(rng):
    t = rng.uniform(-1, 1, 9)
    g = rng.normal(size=(9, 2 * L))
    got = np.sum(ref.encode_times_derivative(t, L) * g, axis=1)
    want = finite_diff(lambda v: float(np.sum(ref.encode_times(v, L) * g)), t)
    np.testing.assert_allclose(got, want, atol=1e-7)
