"""kernels/splat.py's lanes kernels (pixels of a row blended LANES at a time: every forward on a CPU,
and the backward of a CPU rasterizer) give the images and gradients of the per-pixel kernels (a
GPU's, ``pixel_parallel=True``: the same operations per pixel) and of the float64 twin, float64."""
import numpy as np
import pytest

try:
    from .test_splat import N_MAX, Scene, images, make_scene, ref_forward
except ImportError:  # imported by test_splat_f32.py run as a script: tests/kernels is on sys.path
    from test_splat import N_MAX, Scene, images, make_scene, ref_forward

OUTPUTS = ("colour", "alpha", "depth", "final_t", "n_contrib")


@pytest.mark.parametrize("size,t_min", [((40, 24), 1e-4), ((37, 21), 1e-4), ((37, 21), 0.4)])
def test_render_only_kernel_equals_the_training_kernel(size, t_min):
    """Partial lane groups at the right edge (37 = 2 x 16 + 5) and, with t_min 0.4, pixels that
    stop early while other lanes of their row go on. out[True]: the per-pixel kernel."""
    from taichi_syncnerf.kernels import splat

    w, h = size
    sc = make_scene()
    cam = sc["cam"]
    cam = splat.Camera(cam.fx, cam.fy, cam.cx * w / 40, cam.cy * h / 24, w, h, cam.R, cam.t)
    fields = Scene(sc)
    out = {}
    for per_pixel in (True, False):
        ras = splat.Rasterizer(N_MAX, 40, 24, sh_degree=3, pixel_parallel=per_pixel)
        ras.colour.fill(-1.0)
        fields.forward(ras, cam=cam, backward=per_pixel, t_min=t_min)
        out[per_pixel] = {k: getattr(ras, k).to_numpy()[:h, :w] for k in OUTPUTS}
    assert out[True]["n_contrib"].max() > 3 and (out[True]["final_t"] < 0.5).any()
    if t_min > 0.1:   # stopped pixels beside pixels that blend on
        stopped = out[True]["final_t"] < 0.5
        assert stopped.any() and (~stopped & (out[True]["n_contrib"] > 0)).any()
    for k in OUTPUTS:
        np.testing.assert_allclose(out[False][k], out[True][k], rtol=1e-13, atol=1e-15, err_msg=k)
    with pytest.raises(RuntimeError, match="backward=True"):
        ras.backward(d_colour=np.ones((h, w, 3)))


def crowded_scene(seed=11, n=160, w=70, h=41):
    """Many overlapping Gaussians over 5 x 3 tiles (the last column and row partial), a third of them
    nearly opaque so that many pixels stop early, and a few wide faint ones that reach every tile."""
    from taichi_syncnerf.data.cameras import Intrinsics, look_at
    from taichi_syncnerf.kernels import splat

    rng = np.random.default_rng(seed)
    c2w = look_at(np.array([0.3, -4.0, 0.5]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
    cam = splat.Camera.from_opengl_c2w(Intrinsics.from_fov(0.9, w, h, cx=w / 2 + 0.3, cy=h / 2 - 0.2), c2w)
    log_scales = rng.uniform(-2.6, -1.3, (n, 3))
    log_scales[:6] += 1.2
    logits = rng.uniform(-2.0, 2.0, n)
    logits[rng.random(n) < 0.33] = 5.0
    logits[:6] = -2.5
    return dict(cam=cam, means=rng.normal(size=(n, 3)) * [0.9, 0.6, 0.6],
                log_scales=log_scales, quats=rng.normal(size=(n, 4)), opacity_logits=logits,
                sh=rng.normal(size=(n, 48)) * 0.3, n=n)


@pytest.mark.parametrize("t_min", [1e-4, 0.05])
def test_render_only_matches_reference_on_a_crowded_scene(t_min):
    """forward(backward=False) (its own exp, SIMD lanes) against the float64 twin: lists of up to 60+
    Gaussians per tile, pixels that stop early beside pixels that blend on."""
    from taichi_syncnerf.kernels import splat, splat_funcs

    sc = crowded_scene()
    w, h = sc["cam"].width, sc["cam"].height
    ras = splat.Rasterizer(sc["n"], w, h, sh_degree=3)
    Scene(sc, n_max=sc["n"]).forward(ras, sc, backward=False, t_min=t_min)
    want = ref_forward(sc, t_min=t_min)
    got = images(ras, h, w)
    lengths = [len(x) for x in want["lists"]]
    assert len(lengths) == 15 and min(lengths) >= 5 and max(lengths) >= 60, lengths
    stopped = got["n_contrib"] < np.array([[lengths[(y // 16) * 5 + x // 16] for x in range(w)]
                                           for y in range(h)])
    assert stopped.mean() > 0.2 and want["final_t"].min() < 10 * t_min
    # the row test (a Gaussian further than YR from a pixel row is skipped there) is exercised
    gdata, start, ids = ras._gdata.to_numpy(), ras._tile_start.to_numpy(), ras._eid.to_numpy()
    rows = [abs(gdata[g, splat_funcs.V] - (y + 0.5)) > gdata[g, splat_funcs.YR]
            for t in range(15) for y in range(16 * (t // 5), min(h, 16 * (t // 5) + 16))
            for g in ids[start[t]:start[t + 1]]]
    assert 0.2 < np.mean(rows) < 0.9, np.mean(rows)
    np.testing.assert_array_equal(got["n_contrib"], want["n_contrib"])
    for k in ("colour", "alpha", "depth", "final_t"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-11, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("t_min", [1e-4, 0.05])
def test_lanes_backward_equals_the_per_pixel_backward_on_a_crowded_scene(t_min):
    """The CPU's backward (a tile row's LANES pixels walked back to front together, each lane from
    its own last Gaussian; the lanes' contributions to an entry summed before they are added) against
    the per-pixel one with atomic adds: the same gradients, with pixels that stopped early beside
    pixels that blended on, partial tiles, and colour, alpha and depth terms."""
    from taichi_syncnerf.kernels import splat

    sc = crowded_scene()
    w, h = sc["cam"].width, sc["cam"].height
    rng = np.random.default_rng(4)
    grads = (rng.normal(size=(h, w, 3)), rng.normal(size=(h, w)), rng.normal(size=(h, w)) * 0.1)
    fields = Scene(sc, n_max=sc["n"])
    got = {}
    for per_pixel in (False, True):
        ras = splat.Rasterizer(sc["n"], w, h, sh_degree=3, pixel_parallel=per_pixel)
        fields.forward(ras, sc, t_min=t_min)
        ras.backward(*grads)
        got[per_pixel] = {k: getattr(ras, k).to_numpy()[:sc["n"]] for k in
                          ("d_means", "d_log_scales", "d_quats", "d_opacity_logits", "d_sh", "d_mean2d")}
        got[per_pixel]["d_background"] = ras.d_background.to_numpy()
        got[per_pixel]["n_contrib"] = ras.n_contrib.to_numpy()[:h, :w]
    np.testing.assert_array_equal(got[False]["n_contrib"], got[True]["n_contrib"])
    assert (got[True]["n_contrib"] > 20).mean() > 0.2
    for k, want in got[True].items():
        assert np.abs(want).max() > 0.0, k
        np.testing.assert_allclose(got[False][k], want, rtol=1e-9, atol=1e-11 * np.abs(want).max(), err_msg=k)
