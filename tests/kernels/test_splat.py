"""kernels/splat.py: forward and backward against the numpy twin, gradients against float64 central
finite differences, binning, thresholds, cameras (the f32 run: test_splat_f32.py).

Tolerances: kernel and twin share every formula and order of operations, so forward values
agree to 1e-12 relative and gradients to 1e-9 (they sum per-pixel terms in other orders).
Finite differences use h = 1e-6 on a loss of O(1-100): truncation and round-off give about
1e-8 absolute, checked at ``rtol 1e-5, atol 1e-6 x the largest entry``. The thresholds (1/255,
1e-4, the 0.99 clamp) make the loss piecewise smooth; the scene's seed was chosen so that no
perturbation crosses one (a crossing would show as one wrong entry far above tolerance).
"""
import numpy as np
import pytest

try:
    from . import finite_diff
except ImportError:  # imported by test_splat_f32.py run as a script: tests/kernels is on sys.path
    finite_diff = None

W, H, N_MAX = 40, 24, 24  # 3 x 2 tiles, the last column and row of tiles partial
BG = (0.2, 0.5, 0.9)
PARAMS = ("means", "log_scales", "quats", "opacity_logits", "sh")
# indices of the special Gaussians of make_scene
BEHIND, NEAR_PLANE, FAR_OFF, PART_OFF, FOV_CLAMP, TINY, DARK = 8, 9, 10, 11, 12, 13, 14
OPAQUE = (15, 16, 17, 18)


def make_camera():
    from taichi_syncnerf.data.cameras import Intrinsics, look_at
    from taichi_syncnerf.kernels import splat

    intr = Intrinsics.from_fov(0.9, W, H, cx=21.3, cy=11.1)
    c2w = look_at(np.array([0.3, -4.0, 0.5]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
    return splat.Camera.from_opengl_c2w(intr, c2w)


def make_scene(seed=3):
    """19 Gaussians: 8 random overlapping ones, then one of each special case (see the indices)."""
    rng = np.random.default_rng(seed)
    cam = make_camera()
    n = 19
    means = rng.normal(size=(n, 3)) * 0.7
    log_scales = rng.uniform(-2.2, -0.9, (n, 3))
    quats = rng.normal(size=(n, 4)) * rng.uniform(0.5, 2.0, (n, 1))  # unnormalised
    logits = rng.uniform(-1.0, 2.5, n)
    sh = rng.normal(size=(n, 48)) * 0.25

    def world(p_cam):  # OpenCV camera-space point -> world
        return cam.R.T @ (np.asarray(p_cam, float) - cam.t)

    means[BEHIND] = world([0.2, 0.1, -1.0])
    means[NEAR_PLANE] = world([0.0, 0.0, 0.005])
    means[FAR_OFF] = world([-60.0, 0.0, 4.0])  # u about -590: no tile
    means[PART_OFF] = world([-2.3, 0.3, 4.0])  # u about -3: its footprint reaches the image
    log_scales[PART_OFF] = np.log([0.5, 0.4, 0.3])
    means[FOV_CLAMP] = world([3.2, -0.4, 4.0])  # x/z = 0.8 beyond the clamp 0.63: J clamped
    log_scales[FOV_CLAMP] = np.log([0.9, 0.6, 0.5])
    log_scales[TINY] = -7.0
    sh[DARK, 0:3] = (-5.0, 0.4, -5.0)  # red and blue clamped at 0
    for k, i in enumerate(OPAQUE):  # four nearly opaque balls in a row: pixels stop early
        means[i] = world([0.3 + 0.05 * k, -0.2, 3.0 + 0.2 * k])
        log_scales[i] = np.log([0.45, 0.4, 0.42])
        logits[i] = 6.0
    return dict(cam=cam, means=means, log_scales=log_scales, quats=quats, opacity_logits=logits,
                sh=sh, n=n)


def put(field, arr):
    full = np.zeros(field.shape, dtype=field.to_numpy().dtype)
    full[: len(arr)] = arr
    field.from_numpy(full)


def output_grads(seed=5, h=H, w=W):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(h, w, 3)), rng.normal(size=(h, w)), rng.normal(size=(h, w))


class Scene:
    """Input fields of a rasterizer, loaded from a make_scene dict."""

    def __init__(self, sc, n_max=N_MAX):
        import taichi as ti

        self.sc = sc
        self.fields = dict(means=ti.field(float, (n_max, 3)),
                           log_scales=ti.field(float, (n_max, 3)),
                           quats=ti.field(float, (n_max, 4)), opacity_logits=ti.field(float, n_max),
                           sh=ti.field(float, (n_max, sc["sh"].shape[1])))
        self.load(sc)

    def load(self, values):
        for k in PARAMS:
            put(self.fields[k], values[k])

    def forward(self, ras, values=None, cam=None, **kw):
        if values is not None:
            self.load(values)
        ras.forward(*(self.fields[k] for k in PARAMS), self.sc["n"], cam or self.sc["cam"],
                    kw.pop("background", BG), **kw)


def ref_forward(sc, cam=None, **kw):
    from taichi_syncnerf.kernels.reference import splat as ref

    kw.setdefault("background", BG)
    return ref.forward(*(sc[k] for k in PARAMS), cam or sc["cam"], **kw)


def images(ras, h=H, w=W):
    return {k: getattr(ras, k).to_numpy()[:h, :w] for k in ("colour", "alpha", "depth", "final_t",
                                                            "n_contrib")}


def tile_lists(ras, n_tiles):
    start, ids = ras._tile_start.to_numpy(), ras._eid.to_numpy()
    return [ids[start[t]:start[t + 1]] for t in range(n_tiles)]


def loss_of(img, grads):
    g_c, g_a, g_d = grads
    return float(np.sum(img["colour"] * g_c) + np.sum(img["alpha"] * g_a)
                 + np.sum(img["depth"] * g_d))


GRAD_KEYS = ("d_means", "d_log_scales", "d_quats", "d_opacity_logits", "d_sh", "d_mean2d",
             "d_mean2d_norm_ndc")


def kernel_grads(ras, n):
    out = {k: getattr(ras, k).to_numpy()[:n] for k in GRAD_KEYS}
    out["d_background"] = ras.d_background.to_numpy()
    return out


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def setup(scene):
    from taichi_syncnerf.kernels import splat

    return dict(sc=scene, fields=Scene(scene), ras=splat.Rasterizer(N_MAX, W, H, sh_degree=3),
                ras_pp=splat.Rasterizer(N_MAX, W, H, sh_degree=3, pixel_parallel=True))


# ------------------------------------------------------------------------------------------ forward


def test_tile_culling_changes_no_pixel(monkeypatch):
    """A Gaussian is listed only in the tiles it can reach (tile_reaches): against lists of every tile
    of its rect, the same colour, alpha, depth and final T, and shorter lists (elongated and faint
    Gaussians in a wide image); with alpha_min 0 nothing is culled."""
    from taichi_syncnerf.data.cameras import Intrinsics, look_at
    from taichi_syncnerf.kernels import splat
    from taichi_syncnerf.kernels.reference import splat as ref

    sc = make_scene(seed=5)
    c2w = look_at(np.array([0.3, -4.0, 0.5]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
    sc["cam"] = splat.Camera.from_opengl_c2w(Intrinsics.from_fov(0.9, 160, 96), c2w)   # 10 x 6 tiles
    sc["log_scales"][:8, 0] += 1.2                        # long thin ellipses: corners of the rect are empty
    sc["opacity_logits"][:8] = -3.0                       # faint: they reach less far than 3 sigma
    culled = ref_forward(sc)
    monkeypatch.setattr(ref, "tile_reaches", lambda *a, **k: True)
    full = ref_forward(sc)
    for k in ("colour", "alpha", "depth", "final_t"):
        np.testing.assert_array_equal(culled[k], full[k], err_msg=k)
    n_culled, n_full = sum(map(len, culled["lists"])), sum(map(len, full["lists"]))
    assert n_culled < 0.8 * n_full
    off = ref_forward(sc, alpha_min=0.0)
    monkeypatch.undo()
    assert sum(map(len, ref_forward(sc, alpha_min=0.0)["lists"])) == sum(map(len, off["lists"])) == n_full


def test_reach_box_drops_no_tile_of_the_reference_lists():
    """The kernel asks the tile test only about the tiles of each Gaussian's ellipse box (its rect
    cut to where power >= lcut can hold): on thin, rotated, faint and opaque Gaussians at sub-pixel
    positions, every tile list equals the float64 twin's (which asks about every tile of the rect),
    and the boxes are much smaller than the rects."""
    from taichi_syncnerf.data.cameras import Intrinsics, look_at
    from taichi_syncnerf.kernels import splat

    rng = np.random.default_rng(11)
    n = 300
    c2w = look_at(np.array([0.3, -4.0, 0.5]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
    cam = splat.Camera.from_opengl_c2w(Intrinsics.from_fov(0.9, 176, 112), c2w)   # 11 x 7 tiles
    log_scales = rng.uniform(-3.5, -1.5, (n, 3))
    log_scales[np.arange(n), rng.integers(0, 3, n)] += rng.uniform(0.5, 2.5, n)     # needles
    sc = dict(cam=cam, means=rng.normal(size=(n, 3)) * [1.2, 0.8, 0.8], log_scales=log_scales,
              quats=rng.normal(size=(n, 4)), opacity_logits=rng.uniform(-6.0, 6.0, n),
              sh=rng.normal(size=(n, 48)) * 0.2, n=n)
    ras = splat.Rasterizer(n, 176, 112, sh_degree=3)
    Scene(sc, n_max=n).forward(ras, sc)
    want = ref_forward(sc)
    lists = tile_lists(ras, 77)
    for t, (a, b) in enumerate(zip(lists, want["lists"])):
        np.testing.assert_array_equal(a, b, err_msg=f"tile {t}")
    rect, reach = ras._rect.to_numpy()[:n], ras._reach.to_numpy()[:n]
    area = lambda r: np.maximum(r[:, 2] - r[:, 0], 0) * np.maximum(r[:, 3] - r[:, 1], 0)   # noqa: E731
    listed = np.bincount(np.concatenate(lists), minlength=n)
    assert np.all(area(reach) >= listed) and np.all(area(reach) <= area(rect))
    assert listed.sum() > 2000 and area(reach).sum() < 0.6 * area(rect).sum()   # measured 2917, 5075 / 8763


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_forward_matches_reference(setup, sh_degree):
    sc, ras = setup["sc"], setup["ras"]
    setup["fields"].forward(ras, sc, sh_degree=sh_degree)
    want = ref_forward(sc, sh_degree=sh_degree)
    got = images(ras)
    for k in ("colour", "alpha", "depth", "final_t"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-13, err_msg=k)
    np.testing.assert_array_equal(got["n_contrib"], want["n_contrib"])
    proj, n = want["proj"], sc["n"]
    np.testing.assert_array_equal(ras.radius.to_numpy()[:n], proj["radius"])
    gd = ras._gdata.to_numpy()[:n]
    for cols, ref_val in (([0], proj["u"]), ([1], proj["v"]), ([2, 3, 4], proj["conic"]),
                          ([5], proj["opacity"]), ([6, 7, 8], proj["rgb"]), ([9], proj["z"])):
        np.testing.assert_allclose(gd[:, cols].squeeze(), ref_val, rtol=1e-12, atol=1e-13)
    n_tiles = len(want["lists"])
    for t, (a, b) in enumerate(zip(tile_lists(ras, n_tiles), want["lists"])):
        np.testing.assert_array_equal(a, b, err_msg=f"tile {t}")
    assert ras.n_entries == sum(len(x) for x in want["lists"])


def test_long_tile_lists_with_depth_ties():
    """Lists of 17-80 entries (insertion-sorted runs of 16, then 1-3 merge passes, with and without
    the copy back) and Gaussians at exactly the same depth (ordered by index)."""
    from taichi_syncnerf.kernels import splat

    rng = np.random.default_rng(21)
    n = 80
    sc = dict(cam=make_camera(), means=rng.normal(size=(n, 3)) * 0.5,
              log_scales=rng.uniform(-2.0, -1.2, (n, 3)), quats=rng.normal(size=(n, 4)),
              opacity_logits=rng.uniform(-3.0, 0.0, n), sh=rng.normal(size=(n, 48)) * 0.2, n=n)
    sc["means"][60:] = sc["means"][40:60]  # same depth, later index
    sc["log_scales"][60:] += 0.3
    ras = splat.Rasterizer(n, W, H, sh_degree=3)
    Scene(sc, n_max=n).forward(ras, sc)
    want = ref_forward(sc)
    lengths = [len(x) for x in want["lists"]]
    assert max(lengths) > 64 and any(16 < L <= 32 for L in lengths), lengths
    for t, (a, b) in enumerate(zip(tile_lists(ras, len(lengths)), want["lists"])):
        np.testing.assert_array_equal(a, b, err_msg=f"tile {t}")
    got = images(ras)
    np.testing.assert_array_equal(got["n_contrib"], want["n_contrib"])
    np.testing.assert_allclose(got["colour"], want["colour"], rtol=1e-12, atol=1e-13)


def test_special_gaussians(setup):
    sc, ras = setup["sc"], setup["ras"]
    setup["fields"].forward(ras, sc)
    want = ref_forward(sc)
    radius, proj = ras.radius.to_numpy(), want["proj"]
    assert radius[BEHIND] == radius[NEAR_PLANE] == radius[FAR_OFF] == 0
    assert radius[PART_OFF] > 0 and proj["u"][PART_OFF] < 0  # mean off-screen, listed
    assert radius[FOV_CLAMP] > 0 and proj["u"][FOV_CLAMP] > W
    assert radius[TINY] == 3  # the 0.3 low-pass alone: ceil(3 sqrt(0.3 + sqrt(0.1)))
    listed = np.concatenate(want["lists"])
    for i in (PART_OFF, FOV_CLAMP, TINY, DARK):
        assert i in listed
    assert set(np.nonzero(proj["clamped"][DARK])[0]) == {0, 2}
    assert ras._clamped.to_numpy()[DARK] == 0b101
    # the 8 ordinary Gaussians overlap: some pixel blends at least 4 of them
    assert want["n_contrib"].max() >= 4
    # the partly off-screen and the FOV-clamped Gaussian change the image where they touch it
    for i in (PART_OFF, FOV_CLAMP):
        less = dict(sc, opacity_logits=sc["opacity_logits"].copy())
        less["opacity_logits"][i] = -30.0
        assert np.abs(ref_forward(less)["colour"] - want["colour"]).max() > 1e-2


@pytest.mark.parametrize("alpha_min,t_min", [(1 / 255, 1e-4), (0.0, 0.0), (0.05, 0.02)])
def test_thresholds_match_reference(setup, alpha_min, t_min):
    """The 1/255 skip and the early stop: same pixels, same lists positions in kernel and twin."""
    sc, ras = setup["sc"], setup["ras"]
    setup["fields"].forward(ras, sc, alpha_min=alpha_min, t_min=t_min)
    want = ref_forward(sc, alpha_min=alpha_min, t_min=t_min)
    got = images(ras)
    np.testing.assert_array_equal(got["n_contrib"], want["n_contrib"])
    for k in ("colour", "alpha", "depth", "final_t"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-13, err_msg=k)
    assert got["final_t"].min() >= t_min  # the stop happens before T falls below t_min


def test_early_termination_happens(setup):
    sc, ras = setup["sc"], setup["ras"]
    setup["fields"].forward(ras, sc)
    stopped = images(ras)
    setup["fields"].forward(ras, sc, t_min=0.0)
    full = images(ras)
    # pixels behind the three opaque discs stop early: fewer entries walked, T kept >= 1e-4
    early = stopped["n_contrib"] < full["n_contrib"]
    assert early.sum() >= 5
    assert np.all(stopped["final_t"][early] >= 1e-4) and np.all(full["final_t"][early] < 1e-4)
    # the 1/255 skip changes the image (tails of every Gaussian are dropped)
    setup["fields"].forward(ras, sc, alpha_min=0.0)
    assert np.abs(images(ras)["colour"] - stopped["colour"]).max() > 1e-4


def test_smaller_image_than_capacity(setup):
    from taichi_syncnerf.data.cameras import Intrinsics, look_at
    from taichi_syncnerf.kernels import splat

    sc, ras = setup["sc"], setup["ras"]
    intr = Intrinsics.from_fov(0.8, 23, 17)
    cam = splat.Camera.from_opengl_c2w(intr, look_at(np.array([1.0, -3.5, 1.0]), np.zeros(3),
                                                     np.array([0.0, 0.0, 1.0])))
    setup["fields"].forward(ras, sc, cam=cam)
    want = ref_forward(sc, cam=cam)
    got = images(ras, 17, 23)
    np.testing.assert_allclose(got["colour"], want["colour"], rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(got["n_contrib"], want["n_contrib"])


def test_entry_buffers_grow(setup):
    from taichi_syncnerf.kernels import splat

    sc = setup["sc"]
    ras = splat.Rasterizer(N_MAX, W, H, sh_degree=3, max_entries=1)
    assert ras._capacity == 16  # the floor
    setup["fields"].forward(ras, sc)
    want = ref_forward(sc)
    assert ras.n_entries > 16 and ras._capacity >= ras.n_entries
    np.testing.assert_allclose(images(ras)["colour"], want["colour"], rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(images(ras)["n_contrib"], want["n_contrib"])


def test_camera_from_opengl_matches_ray_generation():
    from taichi_syncnerf.data.cameras import Intrinsics, generate_rays, look_at
    from taichi_syncnerf.kernels import splat

    intr = Intrinsics.from_fov(0.7, 64, 48, cx=30.0, cy=25.0)
    c2w = look_at(np.array([1.0, 2.0, 3.0]), np.array([0.1, -0.2, 0.3]), np.array([0.0, 0.0, 1.0]))
    cam = splat.Camera.from_opengl_c2w(intr, c2w)
    x, y = np.array([0, 10, 63]), np.array([0, 30, 47])
    o, d = generate_rays(intr, c2w, x, y)
    np.testing.assert_allclose(o, np.broadcast_to(cam.centre, o.shape), atol=1e-12)
    p = (o + 2.5 * d) @ cam.R.T + cam.t  # points on the rays, OpenCV camera space
    assert np.all(p[:, 2] > 0)
    np.testing.assert_allclose(cam.fx * p[:, 0] / p[:, 2] + cam.cx, x + 0.5, atol=1e-9)
    np.testing.assert_allclose(cam.fy * p[:, 1] / p[:, 2] + cam.cy, y + 0.5, atol=1e-9)
    np.testing.assert_allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-12)


def test_bad_arguments_raise(setup):
    import taichi as ti

    from taichi_syncnerf.kernels import splat

    sc, ras, f = setup["sc"], setup["ras"], setup["fields"].fields
    args = [f[k] for k in PARAMS]
    with pytest.raises(ValueError, match="outside"):
        ras.forward(*args, N_MAX + 1, sc["cam"])
    with pytest.raises(ValueError, match="sh_degree"):
        ras.forward(*args, 4, sc["cam"], sh_degree=4)
    with pytest.raises(ValueError, match="quats"):
        ras.forward(f["means"], f["log_scales"], ti.field(float, (N_MAX, 3)), f["opacity_logits"],
                    f["sh"], 4, sc["cam"])
    big = splat.Camera(50.0, 50.0, 30.0, 20.0, W + 1, H, np.eye(3), np.zeros(3))
    with pytest.raises(ValueError, match="exceeds"):
        ras.forward(*args, 4, big)
    with pytest.raises(ValueError, match="sh_degree"):
        splat.Rasterizer(4, 8, 8, sh_degree=4)
    with pytest.raises(RuntimeError, match="forward"):
        splat.Rasterizer(4, 8, 8, sh_degree=0).backward(np.zeros((8, 8, 3)))
    ras.forward(*args, 4, sc["cam"])
    with pytest.raises(ValueError, match="shape"):
        ras.backward(np.zeros((3, 3, 3)))


# ----------------------------------------------------------------------------------------- backward


@pytest.mark.parametrize("sh_degree", [0, 3])
@pytest.mark.parametrize("pixel_parallel", [False, True])
def test_backward_matches_reference(setup, sh_degree, pixel_parallel):
    from taichi_syncnerf.kernels.reference import splat as ref

    sc = setup["sc"]
    ras = setup["ras_pp" if pixel_parallel else "ras"]
    grads = output_grads()
    setup["fields"].forward(ras, sc, sh_degree=sh_degree)
    for fld in (ras.d_means, ras.d_sh, ras.d_quats):
        fld.fill(123.0)  # must be overwritten
    ras.backward(*grads)
    want = ref.backward(ref_forward(sc, sh_degree=sh_degree), *grads)
    got = kernel_grads(ras, sc["n"])
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-9, atol=1e-10 * np.abs(v).max(), err_msg=k)
    assert np.all(got["d_means"][[BEHIND, NEAR_PLANE, FAR_OFF]] == 0.0)
    for i in (PART_OFF, FOV_CLAMP, TINY, DARK, *OPAQUE):
        assert np.abs(got["d_means"][i]).max() > 0.0
    if sh_degree == 0:
        assert np.all(got["d_sh"][:, 3:] == 0.0)
    ndc = np.hypot(got["d_mean2d"][:, 0] * W / 2, got["d_mean2d"][:, 1] * H / 2)
    np.testing.assert_allclose(got["d_mean2d_norm_ndc"], ndc)  # the densification statistic


def test_capacity_of_lower_degree(scene):
    """A rasterizer built for SH degree 1 (an (N, 12) sh field): forward and backward as twin."""
    from taichi_syncnerf.kernels import splat
    from taichi_syncnerf.kernels.reference import splat as ref

    sc = dict(scene, sh=scene["sh"][:, :12])
    ras = splat.Rasterizer(N_MAX, W, H, sh_degree=1)
    Scene(sc).forward(ras, sc)
    fwd = ref_forward(sc, sh_degree=1)
    np.testing.assert_allclose(images(ras)["colour"], fwd["colour"], rtol=1e-12, atol=1e-13)
    grads = output_grads()
    ras.backward(*grads)
    want = ref.backward(fwd, *grads)
    got = kernel_grads(ras, sc["n"])
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-9, atol=1e-10 * np.abs(v).max(), err_msg=k)


def test_backward_output_gradient_terms(setup):
    """Each output gradient alone (the others None) equals the twin with that term alone; a field
    argument works like a numpy one."""
    from taichi_syncnerf.kernels.reference import splat as ref

    sc, ras = setup["sc"], setup["ras"]
    grads = output_grads(seed=11)
    setup["fields"].forward(ras, sc)
    fwd = ref_forward(sc)
    for term in range(3):
        args = [g if j == term else None for j, g in enumerate(grads)]
        ras.backward(*args)
        want = ref.backward(fwd, *args)
        got = kernel_grads(ras, sc["n"])
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-9, atol=1e-10 * (np.abs(v).max() + 1e-30),
                                       err_msg=f"term {term}: {k}")
    put(ras.colour.grad, grads[0])
    ras.backward(d_colour=ras.colour.grad)  # in place
    np.testing.assert_allclose(ras.d_means.to_numpy()[:sc["n"]],
                               ref.backward(fwd, grads[0])["d_means"], rtol=1e-9, atol=1e-9)


def _fd_check(got, fd, name):
    scale = np.abs(fd).max()
    np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-6 * scale, err_msg=name)


def test_backward_matches_finite_differences(setup):
    """The kernel's gradients against central differences of the kernel's own loss (default
    thresholds, degree 3, every parameter of every Gaussian and the background)."""
    sc, ras, fields = setup["sc"], setup["ras"], setup["fields"]
    grads = output_grads(seed=7)
    fields.forward(ras, sc)
    ras.backward(*grads)
    got = kernel_grads(ras, sc["n"])

    def loss(values, background=BG):
        fields.forward(ras, values, background=background)
        return loss_of(images(ras), grads)

    for name in PARAMS:
        fd = finite_diff(lambda x: loss(dict(sc, **{name: x})), sc[name])
        _fd_check(got["d_" + name], fd, name)
    fd_bg = finite_diff(lambda b: loss(sc, background=tuple(b)), np.array(BG))
    _fd_check(got["d_background"], fd_bg, "background")
    fields.load(sc)


def test_reference_backward_matches_finite_differences(scene):
    """The twin on its own: its backward against central differences of its forward, for an
    ordinary, the FOV-clamped and an opaque Gaussian (all their parameters)."""
    from taichi_syncnerf.kernels.reference import splat as ref

    sc = scene
    grads = output_grads(seed=9)
    got = ref.backward(ref_forward(sc), *grads)
    rows = np.zeros(sc["n"], bool)
    rows[[1, FOV_CLAMP, OPAQUE[1]]] = True

    def loss(values):
        return loss_of(ref_forward(values), grads)

    for name in PARAMS:
        mask = np.broadcast_to(rows.reshape((-1,) + (1,) * (sc[name].ndim - 1)), sc[name].shape)
        fd = finite_diff(lambda x: loss(dict(sc, **{name: x})), sc[name], mask=mask)
        _fd_check(np.where(mask, got["d_" + name], 0.0), fd, name)
