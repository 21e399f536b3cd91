"""All-frames head and renderer vs their float64 twins and finite differences."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import allframes
from taichi_syncnerf.kernels.reference import allframes as ref
from taichi_syncnerf.kernels.sampling import RaySampler
from tests.kernels import finite_diff

F, D, K = 5, 4, 2
N = 9  # dynamic samples
SCALE = 3.0


def _load(field, a):
    full = np.zeros(field.shape)
    full[:len(a)] = a
    field.from_numpy(full)


@pytest.mark.parametrize("activation, sharpness, shift", [("relu", 1.0, 0.0), ("softplus", 1.0, 0.0),
                                                         ("softplus", 6.0, 0.0), ("softplus", 1.0, -1.5)])
def test_head_forward_and_backward(rng, activation, sharpness, shift):
    hs_f = ti.field(float, shape=(N, D), needs_grad=True)
    hc_f = ti.field(float, shape=(N, D), needs_grad=True)
    zs_f = ti.field(float, shape=K * F * (D + 1), needs_grad=True)
    zc_f = ti.field(float, shape=K * F * 3 * (D + 1), needs_grad=True)
    slot_f = ti.field(ti.i32, shape=N)
    start_f = ti.field(ti.i32, shape=K + 1)
    head = allframes.FrameHead(N, F, D, density_scale=SCALE, activation=activation, sharpness=sharpness, shift=shift)
    hs, hc = rng.normal(size=(N, D)), rng.normal(size=(N, D))
    zs, zc = rng.normal(size=(K * F, D + 1)), rng.normal(size=(K * F, 3 * (D + 1)))
    zs[:3, D] = [-40.0, -12.0, 30.0]  # far tails of the softplus (exp(-40) is lost in 1 + exp(-40))
    slot = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    gs, gc = rng.normal(size=(N, F)), rng.normal(size=(N, F, 3))
    for f_, a in ((hs_f, hs), (hc_f, hc), (zs_f, zs.ravel()), (zc_f, zc.ravel()), (slot_f, slot),
                  (start_f, [0, 4, 9])):
        f_.from_numpy(np.asarray(a, f_.dtype == ti.i32 and np.int32 or np.float64))
    head.forward(hs_f, hc_f, zs_f, zc_f, slot_f, N)
    s_want, c_want = ref.head(hs, hc, zs, zc, slot, F, SCALE, activation, sharpness, shift)
    # softplus: relative to each entry, down to exp(-40) (a flat 0 there would stop training)
    np.testing.assert_allclose(head.sigma.to_numpy(), s_want, rtol=1e-12, atol=1e-12 if activation == "relu" else 0)
    np.testing.assert_allclose(head.rgb.to_numpy(), c_want, rtol=1e-12, atol=1e-12)
    if activation == "relu":
        assert (s_want == 0).any() and (s_want > 0).any()  # both sides of the ReLU are tested
    else:
        assert (s_want < 0.3 * SCALE / sharpness).any() and (s_want > SCALE).any()  # both tails of the softplus
    zs_f.grad.fill(0.25)  # accumulates
    zc_f.grad.fill(0.0)
    head.sigma.grad.from_numpy(gs)
    head.rgb.grad.from_numpy(gc)
    head.backward(hs_f, hc_f, zs_f, zc_f, slot_f, start_f, K, N)

    def loss(hs_, hc_, zs_, zc_):
        s, c = ref.head(hs_, hc_, zs_, zc_, slot, F, SCALE, activation, sharpness, shift)
        return float(np.sum(s * gs) + np.sum(c * gc))

    np.testing.assert_allclose(hs_f.grad.to_numpy(), finite_diff(lambda v: loss(v, hc, zs, zc), hs), atol=1e-6)
    np.testing.assert_allclose(hc_f.grad.to_numpy(), finite_diff(lambda v: loss(hs, v, zs, zc), hc), atol=1e-6)
    np.testing.assert_allclose(zs_f.grad.to_numpy().reshape(zs.shape) - 0.25,
                               finite_diff(lambda v: loss(hs, hc, v, zc), zs), atol=1e-6)
    np.testing.assert_allclose(zc_f.grad.to_numpy().reshape(zc.shape),
                               finite_diff(lambda v: loss(hs, hc, zs, v), zc), atol=1e-6)


@pytest.fixture
def packed(rng):
    """4 rays with 5, 3, 6, 4 samples; rays 0 and 2 are rendered as dynamic."""
    R = 4
    counts = np.array([5, 3, 6, 4])
    smp = RaySampler(R, 32)
    near, far = ti.field(float, shape=R), ti.field(float, shape=R)
    near.from_numpy(np.zeros(R))
    far.from_numpy(np.array([1.0, 1.5, 2.0, 1.2]))
    cnt = ti.field(ti.i32, shape=R)
    cnt.from_numpy(counts.astype(np.int32))
    smp.stratified(near, far, R, counts=cnt, jitter=True, seed=3)
    return smp


def test_render_forward_and_backward(rng, packed):
    smp = packed
    p = smp.to_numpy()
    S = smp.n_samples
    rays = np.array([0, 2])
    dyn_index = -np.ones(S, int)
    ray0 = np.arange(p["ray_start"][0], p["ray_start"][0] + 5)
    ray2 = np.arange(p["ray_start"][2], p["ray_start"][2] + 6)
    dyn_samples = np.concatenate([ray0[[0, 2, 3]], ray2[[1, 2, 4, 5]]])
    dyn_index[dyn_samples] = np.arange(len(dyn_samples))
    nd = len(dyn_samples)
    sigma, rgb = rng.uniform(0, 3, (nd, F)), rng.uniform(0, 1, (nd, F, 3))
    sigma_st, rgb_st = rng.uniform(0, 3, S), rng.uniform(0, 1, (S, 3))
    bg = (0.2, 0.5, 1.0)
    fields = {}
    for name, a, dt in (("rays", rays, ti.i32), ("dyn", dyn_index, ti.i32), ("sigma", sigma, float),
                        ("rgb", rgb, float), ("sigma_st", sigma_st, float), ("rgb_st", rgb_st, float)):
        f_ = ti.field(dt, shape=np.shape(a), needs_grad=dt is float)
        f_.from_numpy(np.asarray(a, np.int32 if dt is ti.i32 else np.float64))
        fields[name] = f_
    ren = allframes.AllFramesRenderer(4, F, 32)
    args = (smp, fields["rays"], 2, fields["dyn"], fields["sigma"], fields["rgb"], fields["sigma_st"],
            fields["rgb_st"])
    ren.forward(*args, background=bg)
    want = ref.render(p["t0"], p["t1"], p["ray_start"], p["ray_count"], rays, dyn_index, sigma, rgb, sigma_st,
                      rgb_st, bg)
    np.testing.assert_allclose(ren.colour.to_numpy()[:2], want, rtol=1e-12, atol=1e-12)
    target = ti.field(float, shape=(4, F, 3))
    tgt = rng.uniform(0, 1, (2, F, 3))
    _load(target, tgt)
    loss = allframes.mse(ren.colour, target, 2, weight=2.0)
    np.testing.assert_allclose(loss, np.mean((want - tgt) ** 2), rtol=1e-12)
    ren.backward(*args)

    def fd_loss(sg, c):
        col = ref.render(p["t0"], p["t1"], p["ray_start"], p["ray_count"], rays, dyn_index, sg, c, sigma_st,
                         rgb_st, bg)
        return 2.0 * float(np.mean((col - tgt) ** 2))

    np.testing.assert_allclose(fields["sigma"].grad.to_numpy(), finite_diff(lambda v: fd_loss(v, rgb), sigma),
                               atol=1e-8)
    np.testing.assert_allclose(fields["rgb"].grad.to_numpy(), finite_diff(lambda v: fd_loss(sigma, v), rgb),
                               atol=1e-8)
    assert np.abs(fields["sigma"].grad.to_numpy()).max() > 1e-3


@pytest.mark.parametrize("activation, sharpness", [("relu", 1.0), ("softplus", 1.0), ("softplus", 6.0)])
def test_reference_head_backward_matches_finite_differences(rng, activation, sharpness):
    """The numpy backward twins (used by the f32 checks) are themselves right."""
    hs, hc = rng.normal(size=(N, D)), rng.normal(size=(N, D))
    zs, zc = rng.normal(size=(K * F, D + 1)), rng.normal(size=(K * F, 3 * (D + 1)))
    slot = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    gs, gc = rng.normal(size=(N, F)), rng.normal(size=(N, F, 3))
    got = ref.head_backward(hs, hc, zs, zc, slot, F, gs, gc, SCALE, activation, sharpness)

    def loss(hs_, hc_, zs_, zc_):
        s, c = ref.head(hs_, hc_, zs_, zc_, slot, F, SCALE, activation, sharpness)
        return float(np.sum(s * gs) + np.sum(c * gc))

    for i, (v, fn) in enumerate(((hs, lambda v: loss(v, hc, zs, zc)), (hc, lambda v: loss(hs, v, zs, zc)),
                                 (zs, lambda v: loss(hs, hc, v, zc)), (zc, lambda v: loss(hs, hc, zs, v)))):
        np.testing.assert_allclose(got[i], finite_diff(fn, v), atol=1e-6)


def test_reference_render_backward_matches_finite_differences(rng, packed):
    p = packed.to_numpy()
    S = packed.n_samples
    rays = np.array([0, 2])
    dyn_index = -np.ones(S, int)
    dyn_samples = np.concatenate([p["ray_start"][0] + np.array([0, 2, 3]), p["ray_start"][2] + np.array([1, 4, 5])])
    dyn_index[dyn_samples] = np.arange(len(dyn_samples))
    nd = len(dyn_samples)
    sigma, rgb = rng.uniform(0, 3, (nd, F)), rng.uniform(0, 1, (nd, F, 3))
    sigma_st, rgb_st = rng.uniform(0, 3, S), rng.uniform(0, 1, (S, 3))
    bg, dc = (0.2, 0.5, 1.0), rng.normal(size=(2, F, 3))
    args = (p["t0"], p["t1"], p["ray_start"], p["ray_count"], rays, dyn_index)
    ds, drgb = ref.render_backward(*args, sigma, rgb, sigma_st, rgb_st, bg, dc)
    loss = lambda sg, c: float(np.sum(ref.render(*args, sg, c, sigma_st, rgb_st, bg) * dc))  # noqa: E731
    np.testing.assert_allclose(ds, finite_diff(lambda v: loss(v, rgb), sigma), atol=1e-7)
    np.testing.assert_allclose(drgb, finite_diff(lambda v: loss(sigma, v), rgb), atol=1e-7)
