"""VM encoder and its upsampling vs their float64 numpy twins and finite differences."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import vm
from taichi_syncnerf.kernels.reference import vm as ref
from tests.kernels import finite_diff

COMPS = (3, 2, 2)
RES = (4, 5, 3)
N = 12


def _points(rng, n=N, margin=1e-3):
    pts = []
    while len(pts) < n:
        p = rng.uniform(-0.99, 0.99, 3)
        if all(abs((p[a] + 1) / 2 * (RES[a] - 1) - np.round((p[a] + 1) / 2 * (RES[a] - 1))) > margin
               for a in range(3)):
            pts.append(p)
    pts = np.array(pts)
    pts[0, 0], pts[1, 2] = 1.4, -1.2  # clamped: zero coordinate gradient there
    return pts


@pytest.fixture(scope="module")
def enc():
    e = vm.VMEncoder(COMPS, RES, max_points=N, seed=3, init_std=0.5)
    x = ti.field(float, shape=(N, 4), needs_grad=True)
    feat = ti.field(float, shape=(N, e.output_dim), needs_grad=True)
    return e, x, feat


def _run(e, x, feat, params, pts, g=None):
    e.set_params(params)
    xs = np.zeros((N, 4))
    xs[:, :3] = pts
    x.from_numpy(xs)
    e.forward(x, feat, N)
    out = feat.to_numpy()
    if g is None:
        return out
    e.params.grad.fill(0.0)
    feat.grad.from_numpy(g)
    e.backward(x, feat, N)
    return out, e.params.grad.to_numpy(), x.grad.to_numpy()[:, :3]


def test_forward_matches_reference(enc, rng):
    e, x, feat = enc
    params, pts = rng.normal(size=e.n_params), _points(rng)
    np.testing.assert_allclose(_run(e, x, feat, params, pts), ref.forward(params, pts, COMPS, RES),
                               rtol=1e-12, atol=1e-12)


def test_backward_matches_finite_differences(enc, rng):
    e, x, feat = enc
    params, pts = rng.normal(size=e.n_params), _points(rng)
    g = rng.normal(size=(N, e.output_dim))
    _, dparams, dx = _run(e, x, feat, params, pts, g)
    loss = lambda p, q: float(np.sum(ref.forward(p, q, COMPS, RES) * g))  # noqa: E731
    np.testing.assert_allclose(dparams, finite_diff(lambda p: loss(p, pts), params), atol=1e-7)
    fd_x = finite_diff(lambda q: loss(params, q), pts)
    np.testing.assert_allclose(dx, fd_x, atol=1e-7)
    assert np.all(dx[0, 0] == 0) and np.all(dx[1, 2] == 0) and np.abs(dx).max() > 0.1


def test_resample_matches_reference_and_keeps_the_field(rng):
    old = vm.VMEncoder(COMPS, RES, max_points=N, seed=1)
    old.set_params(rng.normal(size=old.n_params))
    new_res = (7, 9, 5)
    new = vm.VMEncoder(COMPS, new_res, max_points=N)
    vm.resample(old, new)
    want = ref.resample(old.get_params(), COMPS, RES, new_res)
    np.testing.assert_allclose(new.get_params(), want, rtol=1e-12, atol=1e-12)
    # grids doubled minus one keep every old texel: the field at old texel centres is unchanged
    pts = np.stack(np.meshgrid(*[np.linspace(-1, 1, r) for r in RES], indexing="ij"), -1).reshape(-1, 3)
    a = ref.forward(old.get_params(), pts, COMPS, RES)
    b = ref.forward(new.get_params(), pts, COMPS, new_res)
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="comps"):
        vm.VMEncoder((1, 2), (4, 4, 4), max_points=4)
    with pytest.raises(ValueError, match="res"):
        vm.VMEncoder((1, 1, 1), (4, 1, 4), max_points=4)


def test_reference_backward_matches_finite_differences(rng):
    """The numpy backward twin (used by the f32 checks) is itself right."""
    params, pts = rng.normal(size=vm.vm_layout(COMPS, RES)[2]), _points(rng)
    g = rng.normal(size=(N, sum(COMPS)))
    dparams, dx = ref.backward(params, pts, g, COMPS, RES)
    loss = lambda p, q: float(np.sum(ref.forward(p, q, COMPS, RES) * g))  # noqa: E731
    np.testing.assert_allclose(dparams, finite_diff(lambda p: loss(p, pts), params), atol=1e-7)
    np.testing.assert_allclose(dx, finite_diff(lambda q: loss(params, q), pts), atol=1e-7)


def test_zero_initialised_grid_makes_no_full_size_numpy_copy():
    """A grid made to be filled by ``resample`` (``init_std=0``, as every grid growth makes them)
    is zeroed in place: no float64 draw of its parameters and no float32 copy of it (at the
    Plenoptic preset's final size 0.3 GB and 0.15 GB per appearance grid)."""
    import tracemalloc

    comps, res = (8, 4, 4), (160, 160, 80)
    vm.VMEncoder(comps, res, max_points=4, init_std=0.0)  # compiles what it launches
    tracemalloc.start()
    try:
        e = vm.VMEncoder(comps, res, max_points=4, init_std=0.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.n_params > 250_000
    assert peak < e.n_params * 2, f"{peak} bytes of Python allocations for {e.n_params} parameters"
    p = e.get_params()
    assert not p.any()
