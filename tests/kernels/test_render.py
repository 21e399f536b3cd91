"""kernels/render.py: forward against the numpy twin, backward against float64 finite differences."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import render, sampling
from taichi_syncnerf.kernels.reference import render as ref
from . import finite_diff

R_MAX, S_MAX = 8, 64
COUNTS = [5, 0, 8, 3, 8, 1, 6]  # ray 1 has no samples; ray 4 terminates early
BG = (0.3, 0.6, 0.9)


def put(field, arr):
    full = np.zeros(field.shape, dtype=field.to_numpy().dtype)
    full[: len(arr)] = arr
    field.from_numpy(full)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(7)
    R = len(COUNTS)
    near, far = ti.field(float, shape=R_MAX), ti.field(float, shape=R_MAX)
    counts = ti.field(ti.i32, shape=R_MAX)
    put(near, rng.uniform(1.0, 2.0, R))
    put(far, rng.uniform(3.0, 5.0, R))
    put(counts, np.array(COUNTS, np.int32))
    samples = sampling.RaySampler(R_MAX, S_MAX)
    samples.stratified(near, far, R, counts=counts, jitter=True, seed=4)
    p = samples.to_numpy()
    sig = rng.uniform(0.0, 2.0, samples.n_samples)
    a = p["ray_start"][4]
    sig[a:a + 8] = rng.uniform(15.0, 30.0, 8)  # T < 1e-4 after about two samples
    sigma = ti.field(float, shape=S_MAX, needs_grad=True)
    rgb = ti.field(float, shape=(S_MAX, 3), needs_grad=True)
    col = rng.uniform(0.0, 1.0, (samples.n_samples, 3))
    put(sigma, sig)
    put(rgb, col)
    grads = dict(d_colour=rng.normal(size=(R, 3)), d_opacity=rng.normal(size=R),
                 d_depth=rng.normal(size=R), d_weights=rng.normal(size=samples.n_samples))
    return dict(samples=samples, p=p, sigma=sigma, rgb=rgb, sig=sig, col=col, grads=grads, R=R,
                ren=render.VolumeRenderer(R_MAX, S_MAX),
                ren_w=render.VolumeRenderer(R_MAX, S_MAX, colour=False))


def ref_forward(d, sig, col, with_colour=True):
    p = d["p"]
    return ref.forward(sig, col if with_colour else None, p["t0"], p["t1"], p["ray_start"],
                       p["ray_count"], BG if with_colour else (0, 0, 0))


def loss_of(out, grads, with_colour=True):
    """Scalar whose output gradients are `grads` (colour term only for colour renderers)."""
    val = (np.sum(grads["d_opacity"] * out["opacity"]) + np.sum(grads["d_depth"] * out["depth"])
           + np.sum(grads["d_weights"] * out["weights"]))
    return val + (np.sum(grads["d_colour"] * out["colour"]) if with_colour else 0.0)



def test_forward_matches_reference(setup):
    d, R, S = setup, setup["R"], setup["samples"].n_samples
    ren = d["ren"]
    ren.forward(d["samples"], d["sigma"], d["rgb"], background=BG)
    want = ref_forward(d, d["sig"], d["col"])
    np.testing.assert_allclose(ren.colour.to_numpy()[:R], want["colour"], rtol=1e-12, atol=1e-14)
    for k in ("opacity", "depth"):
        np.testing.assert_allclose(getattr(ren, k).to_numpy()[:R], want[k], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ren.weights.to_numpy()[:S], want["weights"], rtol=1e-12, atol=1e-14)
    used = ren.used.to_numpy()[:R]
    np.testing.assert_array_equal(used, want["used"])
    assert used[1] == 0 and 1 <= used[4] < COUNTS[4]  # empty ray; early termination
    np.testing.assert_array_equal(used[[0, 2, 3, 5, 6]], np.array(COUNTS)[[0, 2, 3, 5, 6]])
    p = d["p"]
    a = p["ray_start"][4]
    assert np.all(ren.weights.to_numpy()[a + used[4]:a + COUNTS[4]] == 0.0)
    np.testing.assert_allclose(ren.colour.to_numpy()[1], BG)  # no samples: background only


def test_reference_backward_matches_finite_differences(setup):
    d = setup
    p = d["p"]
    fwd = ref_forward(d, d["sig"], d["col"])
    ds, dr = ref.backward(d["sig"], d["col"], p["t0"], p["t1"], p["ray_start"], p["ray_count"],
                          fwd, background=BG, **d["grads"])
    fd_s = finite_diff(lambda x: loss_of(ref_forward(d, x, d["col"]), d["grads"]), d["sig"])
    fd_r = finite_diff(lambda x: loss_of(ref_forward(d, d["sig"], x), d["grads"]), d["col"])
    np.testing.assert_allclose(ds, fd_s, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dr, fd_r, rtol=1e-6, atol=1e-8)


def test_backward_matches_finite_differences(setup):
    d, R, S = setup, setup["R"], setup["samples"].n_samples
    ren, g = d["ren"], d["grads"]
    ren.forward(d["samples"], d["sigma"], d["rgb"], background=BG)
    put(ren.colour.grad, g["d_colour"])
    put(ren.opacity.grad, g["d_opacity"])
    put(ren.depth.grad, g["d_depth"])
    put(ren.weights.grad, g["d_weights"])
    d["sigma"].grad.fill(123.0)  # must be overwritten
    d["rgb"].grad.fill(123.0)
    ren.backward(d["samples"], d["sigma"], d["rgb"], d_colour=True, d_opacity=True, d_depth=True,
                 d_weights=True)
    fd_s = finite_diff(lambda x: loss_of(ref_forward(d, x, d["col"]), g), d["sig"])
    fd_r = finite_diff(lambda x: loss_of(ref_forward(d, d["sig"], x), g), d["col"])
    np.testing.assert_allclose(d["sigma"].grad.to_numpy()[:S], fd_s, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d["rgb"].grad.to_numpy()[:S], fd_r, rtol=1e-6, atol=1e-8)
    a, u = d["p"]["ray_start"][4], ren.used.to_numpy()[4]
    assert np.all(d["sigma"].grad.to_numpy()[a + u:a + COUNTS[4]] == 0.0)
    assert np.abs(fd_s).max() > 1e-2


@pytest.mark.parametrize("terms", [("d_colour",), ("d_opacity", "d_depth"), ("d_weights",)])
def test_backward_switches_select_terms(setup, terms):
    d, S = setup, setup["samples"].n_samples
    ren, p = d["ren"], d["p"]
    ren.forward(d["samples"], d["sigma"], d["rgb"], background=BG)
    for k, fld in (("d_colour", ren.colour), ("d_opacity", ren.opacity), ("d_depth", ren.depth),
                   ("d_weights", ren.weights)):
        put(fld.grad, d["grads"][k])  # everything set; only `terms` may be read
    flags = {k: (k in terms) for k in ("d_colour", "d_opacity", "d_depth", "d_weights")}
    ren.backward(d["samples"], d["sigma"], d["rgb"], **flags)
    fwd = ref_forward(d, d["sig"], d["col"])
    ds, dr = ref.backward(d["sig"], d["col"], p["t0"], p["t1"], p["ray_start"], p["ray_count"],
                          fwd, background=BG, **{k: d["grads"][k] for k in terms})
    np.testing.assert_allclose(d["sigma"].grad.to_numpy()[:S], ds, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d["rgb"].grad.to_numpy()[:S], dr, rtol=1e-10, atol=1e-12)


def test_weights_only_renderer(setup):
    d, R, S = setup, setup["R"], setup["samples"].n_samples
    ren, g = d["ren_w"], d["grads"]
    assert ren.colour is None
    ren.forward(d["samples"], d["sigma"], None)
    want = ref_forward(d, d["sig"], None, with_colour=False)
    np.testing.assert_allclose(ren.weights.to_numpy()[:S], want["weights"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ren.opacity.to_numpy()[:R], want["opacity"], rtol=1e-12, atol=1e-14)
    put(ren.opacity.grad, g["d_opacity"])
    put(ren.depth.grad, g["d_depth"])
    put(ren.weights.grad, g["d_weights"])
    ren.backward(d["samples"], d["sigma"], None, d_opacity=True, d_depth=True, d_weights=True)
    fd = finite_diff(lambda x: loss_of(ref_forward(d, x, None, False), g, False), d["sig"])
    np.testing.assert_allclose(d["sigma"].grad.to_numpy()[:S], fd, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="rgb"):
        ren.forward(d["samples"], d["sigma"], d["rgb"])
