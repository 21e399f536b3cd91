"""K-Planes regularisers vs their float64 numpy twins, hand computations and finite differences."""
import numpy as np
import pytest

from taichi_syncnerf.kernels import plane_regularizers as reg
from taichi_syncnerf.kernels.planes import PlaneEncoder
from taichi_syncnerf.kernels.reference import planes as ref

F = 3
SPACE = [3, 4]
TIME = 5
NAMES = ["plane_tv", "time_smoothness", "time_l1"]
WEIGHT = 0.7


@pytest.fixture(scope="module")
def encoders():
    return {dims: PlaneEncoder(dims, F, SPACE, TIME, max_points=1) for dims in (3, 4)}


def _randomise(enc, seed=0):
    p = np.random.default_rng(seed).uniform(-0.5, 2.0, enc.n_params)
    enc.set_params(p)
    return p


@pytest.mark.parametrize("dims", [3, 4])
@pytest.mark.parametrize("name", NAMES)
def test_matches_reference_and_accumulates(encoders, dims, name):
    enc = encoders[dims]
    p = _randomise(enc)
    start = np.random.default_rng(1).normal(size=enc.n_params)
    enc.params.grad.from_numpy(start)
    value = getattr(reg, name)(enc, WEIGHT)
    want_value, want_grad = getattr(ref, name)(p, dims, F, SPACE, TIME, WEIGHT)
    assert isinstance(value, float)
    assert value == pytest.approx(want_value, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(enc.get_grad() - start, want_grad, atol=1e-13)
    if dims == 3 and name != "plane_tv":
        assert value == 0.0 and not want_grad.any()
    else:
        assert value > 0.1 and np.abs(want_grad).max() > 1e-3
    # Weight 0 does nothing at all.
    enc.params.grad.from_numpy(start)
    assert getattr(reg, name)(enc, 0.0) == 0.0
    np.testing.assert_array_equal(enc.get_grad(), start)


@pytest.mark.parametrize("name", NAMES)
def test_reference_gradient_matches_finite_differences(name):
    rng = np.random.default_rng(2)
    _, total = ref.layout(4, F, SPACE, TIME)
    p = rng.uniform(-0.5, 2.0, total)
    p[np.abs(p - 1.0) < 1e-3] += 0.01  # keep |1 - p| away from its kink
    _, grad = getattr(ref, name)(p, 4, F, SPACE, TIME, WEIGHT)
    h = 1e-6
    fd = np.empty(total)
    for j in range(total):
        e = np.zeros(total)
        e[j] = h
        fd[j] = (getattr(ref, name)(p + e, 4, F, SPACE, TIME, WEIGHT)[0]
                 - getattr(ref, name)(p - e, 4, F, SPACE, TIME, WEIGHT)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_kernel_gradient_matches_finite_differences(encoders, name):
    enc = encoders[4]
    p = _randomise(enc, seed=3)
    p[np.abs(p - 1.0) < 1e-3] += 0.01
    enc.set_params(p)
    enc.zero_grad()
    getattr(reg, name)(enc, WEIGHT)
    grad = enc.get_grad()
    h = 1e-6
    for j in np.random.default_rng(4).choice(enc.n_params, 40, replace=False):
        vals = []
        for sign in (1.0, -1.0):
            enc.params[j] = p[j] + sign * h
            vals.append(getattr(reg, name)(enc, WEIGHT))
        enc.params[j] = p[j]
        assert grad[j] == pytest.approx((vals[0] - vals[1]) / (2 * h), abs=1e-8), (name, j)


@pytest.mark.parametrize("dims", [3, 4])
def test_one_launch_matches_the_three(encoders, dims):
    """plane_regularizers gives each term's value and the sum of their gradients."""
    enc = encoders[dims]
    p = _randomise(enc, seed=5)
    start = np.random.default_rng(6).normal(size=enc.n_params)
    enc.params.grad.from_numpy(start)
    weights = {"plane_tv": 0.7, "time_smoothness": 0.3, "time_l1": 1.1}
    values = reg.plane_regularizers(enc, *weights.values())
    assert set(values) == set(weights)
    want_grad = np.zeros(enc.n_params)
    for name, w in weights.items():
        want_value, g = getattr(ref, name)(p, dims, F, SPACE, TIME, w)
        assert isinstance(values[name], float)
        assert values[name] == pytest.approx(want_value, rel=1e-12, abs=1e-15)
        want_grad += g
    np.testing.assert_allclose(enc.get_grad() - start, want_grad, atol=1e-13)
    # One term switched off leaves its value 0 and its gradient out.
    enc.params.grad.from_numpy(start)
    values = reg.plane_regularizers(enc, 0.0, 0.3, 1.1)
    assert values["plane_tv"] == 0.0
    want = sum(getattr(ref, name)(p, dims, F, SPACE, TIME, w)[1]
               for name, w in weights.items() if name != "plane_tv")
    np.testing.assert_allclose(enc.get_grad() - start, want, atol=1e-13)
    # All weights 0: nothing runs.
    enc.params.grad.from_numpy(start)
    assert reg.plane_regularizers(enc, 0.0, 0.0, 0.0) == dict.fromkeys(weights, 0.0)
    np.testing.assert_array_equal(enc.get_grad(), start)


def test_hand_computed_values(encoders):
    """Ramps give known values: every plane's value = row index * 0.1 + column index * 0.2."""
    enc = encoders[4]
    p = np.empty(enc.n_params)
    for spec in enc.layout:
        rows, cols = np.meshgrid(np.arange(spec.height), np.arange(spec.width), indexing="ij")
        plane = np.repeat((0.1 * rows + 0.2 * cols)[:, :, None], F, axis=2)
        p[spec.offset: spec.offset + spec.size] = plane.ravel()
    enc.set_params(p)
    # TV of one plane = 2 * (0.1^2 + 0.2^2) = 0.1; 6 space planes count twice, 6 time planes once.
    assert reg.plane_tv(enc, 1.0) == pytest.approx(0.1 * (2 * 6 + 6), rel=1e-12)
    # A linear ramp in time has no second difference.
    assert reg.time_smoothness(enc, 1.0) == pytest.approx(0.0, abs=1e-20)
    # Time planes: mean |1 - value| computed directly.
    want = sum(np.abs(1.0 - enc.plane_array(s.scale, s.name)).mean() for s in enc.layout if s.is_time)
    assert reg.time_l1(enc, 2.0) == pytest.approx(2.0 * want, rel=1e-12)
    # At initialisation (time planes = 1) the L1 term and its gradient vanish.
    enc.set_params(enc.initial_params(0))
    enc.zero_grad()
    assert reg.time_l1(enc, 1.0) == 0.0 and reg.time_smoothness(enc, 1.0) == 0.0
    assert not enc.get_grad().any()


def test_time_smoothness_needs_three_time_rows():
    enc = PlaneEncoder(4, F, SPACE, 2, max_points=1)
    with pytest.raises(ValueError):
        reg.time_smoothness(enc, 1.0)
