"""Variation-field heads (ray max logit, weighted BCE, routing) vs twins and finite differences."""
import numpy as np
import taichi as ti

from taichi_syncnerf.kernels import variation
from taichi_syncnerf.kernels.reference import variation as ref
from tests.kernels import finite_diff

COUNTS = np.array([4, 0, 6, 3, 5])
R, S = len(COUNTS), int(COUNTS.sum())
START = np.concatenate([[0], np.cumsum(COUNTS)[:-1]])


def _fields():
    start, count = ti.field(ti.i32, shape=R), ti.field(ti.i32, shape=R)
    start.from_numpy(START.astype(np.int32))
    count.from_numpy(COUNTS.astype(np.int32))
    logit = ti.field(float, shape=S, needs_grad=True)
    ray_logit = ti.field(float, shape=R, needs_grad=True)
    argmax = ti.field(ti.i32, shape=R)
    label = ti.field(float, shape=R)
    return start, count, logit, ray_logit, argmax, label


def test_max_logit_bce_and_gradient(rng):
    start, count, logit, ray_logit, argmax, label = _fields()
    x = rng.normal(0, 2, S)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.0])
    logit.from_numpy(x)
    label.from_numpy(y)
    variation.ray_max_logit(logit, start, count, ray_logit, argmax, R)
    np.testing.assert_allclose(ray_logit.to_numpy(), ref.ray_max_logit(x, START, COUNTS), rtol=1e-12)
    loss = variation.weighted_bce(ray_logit, label, R, pos_weight=19.0, weight=3.0)
    want = lambda v: ref.weighted_bce(ref.ray_max_logit(v, START, COUNTS), y, 19.0)  # noqa: E731
    np.testing.assert_allclose(loss, want(x), rtol=1e-12)
    variation.ray_max_logit_backward(logit, start, count, ray_logit, argmax, R)
    np.testing.assert_allclose(logit.grad.to_numpy(), finite_diff(lambda v: 3.0 * want(v), x), atol=1e-7)
    assert np.count_nonzero(logit.grad.to_numpy()) == 4  # one sample per non-empty ray


def test_routing_matches_reference(rng):
    start, count, logit, *_ = _fields()
    x = rng.normal(-3, 3, S)
    logit.from_numpy(x)
    ray_dyn = ti.field(ti.i32, shape=R)
    flags = np.array([1, 1, 1, 0, 1])
    ray_dyn.from_numpy(flags.astype(np.int32))
    out = ti.field(ti.i32, shape=S)
    for half, thr in ((0, 0.5), (1, 0.3), (2, 0.01)):
        variation.route_samples(logit, start, count, ray_dyn, out, R, half, thr)
        np.testing.assert_array_equal(out.to_numpy(), ref.route_samples(x, START, COUNTS, flags, half, thr))
    assert out.to_numpy()[START[3]:START[3] + 3].sum() == 0


def test_reference_bce_gradient_matches_finite_differences(rng):
    x, y = rng.normal(0, 2, 7), np.array([1.0, 0, 0, 1, 1, 0, 1])
    np.testing.assert_allclose(ref.weighted_bce_grad(x, y, 19.0),
                               finite_diff(lambda v: ref.weighted_bce(v, y, 19.0), x), atol=1e-7)
