"""kernels/ray_losses.py: values against the O(n^2) numpy twins, gradients against float64 finite
differences, and the composition loss -> renderer weights gradient -> density gradient."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import ray_losses, render, sampling
from taichi_syncnerf.kernels.reference import ray_losses as ref
from taichi_syncnerf.kernels.reference import render as ref_render
from . import finite_diff

R_MAX, N_PROP, N_FINE = 8, 10, 7
R = 6
MISS = 2  # ray 2 has no samples at either level


def put(field, arr):
    full = np.zeros(field.shape, dtype=field.to_numpy().dtype)
    full[: len(arr)] = arr
    field.from_numpy(full)



@pytest.fixture(scope="module")
def s():
    """Two packed levels (proposal: stratified; fine: resampled from it) and renderers."""
    rng = np.random.default_rng(21)
    d = dict(near=ti.field(float, shape=R_MAX), far=ti.field(float, shape=R_MAX))
    near = rng.uniform(1.0, 2.0, R)
    far = near + rng.uniform(1.0, 3.0, R)
    far[MISS] = near[MISS]
    put(d["near"], near)
    put(d["far"], far)
    d["prop"] = sampling.RaySampler(R_MAX, R_MAX * N_PROP)
    d["fine"] = sampling.RaySampler(R_MAX, R_MAX * N_FINE)
    d["prop"].stratified(d["near"], d["far"], R, N_PROP, jitter=True, seed=1)
    d["w_init"] = ti.field(float, shape=R_MAX * N_PROP)
    put(d["w_init"], rng.uniform(0.0, 1.0, R * N_PROP) ** 3)
    d["fine"].importance(d["prop"], d["w_init"], R, N_FINE, jitter=True, seed=2)
    d["fine"].normalized_coords(d["near"], d["far"])
    d["pp"], d["fp"] = d["prop"].to_numpy(), d["fine"].to_numpy()
    d["Sp"], d["Sf"] = d["prop"].n_samples, d["fine"].n_samples
    d["wp"] = ti.field(float, shape=R_MAX * N_PROP, needs_grad=True)
    d["wf"] = ti.field(float, shape=R_MAX * N_FINE, needs_grad=True)
    d["pred"] = ti.field(float, shape=(R_MAX, 3), needs_grad=True)
    d["target"] = ti.field(float, shape=(R_MAX, 3))
    d["sig_p"] = ti.field(float, shape=R_MAX * N_PROP, needs_grad=True)
    d["sig_f"] = ti.field(float, shape=R_MAX * N_FINE, needs_grad=True)
    d["rgb"] = ti.field(float, shape=(R_MAX * N_FINE, 3), needs_grad=True)
    d["ren_p"] = render.VolumeRenderer(R_MAX, R_MAX * N_PROP, colour=False)
    d["ren_f"] = render.VolumeRenderer(R_MAX, R_MAX * N_FINE)
    return d


def test_mse_value_gradient_and_modes(s, rng):
    pred, target = rng.uniform(size=(R, 3)), rng.uniform(size=(R, 3))
    put(s["pred"], pred)
    put(s["target"], target)
    val = ray_losses.mse(s["pred"], s["target"], R, scale=0.5)
    want_val, want_grad = ref.mse(pred, target, scale=0.5)
    assert val == pytest.approx(want_val, rel=1e-12)
    np.testing.assert_allclose(s["pred"].grad.to_numpy()[:R], want_grad, rtol=1e-12)
    fd = finite_diff(lambda x: ref.mse(x, target, 0.5)[0], pred)
    np.testing.assert_allclose(want_grad, fd, rtol=1e-6, atol=1e-10)
    ray_losses.mse(s["pred"], s["target"], R, scale=0.5, accumulate=True)
    np.testing.assert_allclose(s["pred"].grad.to_numpy()[:R], 2 * want_grad, rtol=1e-12)
    ray_losses.mse(s["pred"], s["target"], R, grad=False)  # value only: gradient untouched
    np.testing.assert_allclose(s["pred"].grad.to_numpy()[:R], 2 * want_grad, rtol=1e-12)
    assert ray_losses.mse(s["pred"], s["target"], 0) == 0.0


def test_distortion_matches_brute_force_and_finite_differences(s, rng):
    fp, Sf = s["fp"], s["Sf"]
    w = rng.uniform(0.0, 0.4, Sf)
    put(s["wf"], w)
    s0, s1 = s["fine"].s0.to_numpy()[:Sf], s["fine"].s1.to_numpy()[:Sf]
    assert np.all(np.diff(s0[:N_FINE]) >= 0) and s1.max() <= 1.0
    val = ray_losses.distortion(s["wf"], s["fine"], scale=2.0)
    want_val, want_grad = ref.distortion(w, s0, s1, fp["ray_start"], fp["ray_count"], scale=2.0)
    assert val == pytest.approx(want_val, rel=1e-12) and val > 0
    np.testing.assert_allclose(s["wf"].grad.to_numpy()[:Sf], want_grad, rtol=1e-11, atol=1e-14)
    fd = finite_diff(lambda x: ref.distortion(x, s0, s1, fp["ray_start"], fp["ray_count"],
                                              2.0)[0], w)
    np.testing.assert_allclose(want_grad, fd, rtol=1e-6, atol=1e-9)
    ray_losses.distortion(s["wf"], s["fine"], scale=1.0, accumulate=True)
    np.testing.assert_allclose(s["wf"].grad.to_numpy()[:Sf], 1.5 * want_grad, rtol=1e-11)


def test_interlevel_matches_brute_force_and_finite_differences(s, rng):
    pp, fp, Sp, Sf = s["pp"], s["fp"], s["Sp"], s["Sf"]
    wp = rng.uniform(0.0, 0.3, Sp)
    wf = rng.uniform(0.0, 0.6, Sf)
    put(s["wp"], wp)
    put(s["wf"], wf)
    s["wp"].grad.fill(99.0)  # overwritten
    args = (fp["t0"], fp["t1"], wf, fp["ray_start"], fp["ray_count"], pp["t0"], pp["t1"])
    val = ray_losses.interlevel(s["fine"], s["wf"], s["prop"], s["wp"], scale=0.7)
    want_val, want_grad = ref.interlevel(*args, wp, pp["ray_start"], pp["ray_count"], scale=0.7)
    assert val == pytest.approx(want_val, rel=1e-12) and val > 0
    got = s["wp"].grad.to_numpy()[:Sp]
    np.testing.assert_allclose(got, want_grad, rtol=1e-11, atol=1e-14)
    assert np.count_nonzero(got) > 5 and np.count_nonzero(got == 0) > 0
    fd = finite_diff(lambda x: ref.interlevel(*args, x, pp["ray_start"], pp["ray_count"], 0.7)[0],
                     wp)
    np.testing.assert_allclose(want_grad, fd, rtol=1e-6, atol=1e-9)


def test_interlevel_overlap_rule_on_hand_made_intervals():
    """Touching ends do not overlap; bound = sum of the overlapping proposal weights."""
    t0_p, t1_p, w_p = np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]), np.array([.1, .2, .3])
    t0_f, t1_f, w_f = np.array([0.5, 1.0, 2.5]), np.array([1.0, 2.5, 2.5]), np.array([.5, .6, .1])
    val, grad = ref.interlevel(t0_f, t1_f, w_f, [0], [3], t0_p, t1_p, w_p, [0], [3], eps=0.0)
    bounds = np.array([0.1, 0.5, 0.3])  # [0.5,1]: first; [1,2.5]: second+third; point 2.5: third
    excess = np.maximum(w_f - bounds, 0)
    assert val == pytest.approx(np.sum(excess**2 / w_f))
    np.testing.assert_allclose(grad, [-2 * excess[0] / w_f[0], -2 * excess[1] / w_f[1],
                                      -2 * excess[1] / w_f[1]])


def test_proposal_chain_density_to_interlevel(s, rng):
    """sigma_prop -> weights-only render -> interlevel -> weights.grad -> sigma_prop.grad."""
    pp, fp, Sp, Sf = s["pp"], s["fp"], s["Sp"], s["Sf"]
    sig = rng.uniform(0.0, 3.0, Sp)
    wf = rng.uniform(0.0, 0.5, Sf)
    put(s["sig_p"], sig)
    put(s["wf"], wf)
    ren = s["ren_p"]
    ren.forward(s["prop"], s["sig_p"], None)
    val = ray_losses.interlevel(s["fine"], s["wf"], s["prop"], ren.weights)
    ren.backward(s["prop"], s["sig_p"], None, d_weights=True)

    def chain(x):
        w = ref_render.forward(x, None, pp["t0"], pp["t1"], pp["ray_start"], pp["ray_count"])
        return ref.interlevel(fp["t0"], fp["t1"], wf, fp["ray_start"], fp["ray_count"], pp["t0"],
                              pp["t1"], w["weights"], pp["ray_start"], pp["ray_count"])[0]

    assert val == pytest.approx(chain(sig), rel=1e-12)
    fd = finite_diff(chain, sig)
    np.testing.assert_allclose(s["sig_p"].grad.to_numpy()[:Sp], fd, rtol=1e-6, atol=1e-9)
    assert np.abs(fd).max() > 1e-3


def test_fine_chain_mse_plus_distortion(s, rng):
    """sigma, rgb -> render -> MSE (colour.grad) + distortion (weights.grad) -> backward."""
    fp, Sf = s["fp"], s["Sf"]
    sig, col = rng.uniform(0.0, 3.0, Sf), rng.uniform(size=(Sf, 3))
    target = rng.uniform(size=(R, 3))
    put(s["sig_f"], sig)
    put(s["rgb"], col)
    put(s["target"], target)
    s0, s1 = s["fine"].s0.to_numpy()[:Sf], s["fine"].s1.to_numpy()[:Sf]
    ren, bg = s["ren_f"], (1.0, 1.0, 1.0)
    ren.forward(s["fine"], s["sig_f"], s["rgb"], background=bg)
    val = ray_losses.mse(ren.colour, s["target"], R)
    val += ray_losses.distortion(ren.weights, s["fine"], scale=0.1)
    ren.backward(s["fine"], s["sig_f"], s["rgb"], d_colour=True, d_weights=True)

    def chain(x, c):
        o = ref_render.forward(x, c, fp["t0"], fp["t1"], fp["ray_start"], fp["ray_count"], bg)
        return (ref.mse(o["colour"], target)[0]
                + ref.distortion(o["weights"], s0, s1, fp["ray_start"], fp["ray_count"], 0.1)[0])

    assert val == pytest.approx(chain(sig, col), rel=1e-12)
    np.testing.assert_allclose(s["sig_f"].grad.to_numpy()[:Sf], finite_diff(lambda x: chain(x, col),
                                                                          sig), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s["rgb"].grad.to_numpy()[:Sf], finite_diff(lambda c: chain(sig, c),
                                                                        col), rtol=1e-6, atol=1e-9)
