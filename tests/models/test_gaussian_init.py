"""Sync-4DGS's random initial points: with gaussians.init_max_radius_px no Gaussian starts wider
than the cap in pixels of the camera its point was drawn from, the others keep their scale; with
gaussians.init_depth: photo the points sit on their pixels' rays at depths the other cameras agree
with, and a world-space scene's background pixels are not drawn."""
import numpy as np
import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides

SMALL = ["model.kind=sync-4dgs", "gaussians.max_gaussians=64", "gaussians.sh_degree=0", "gaussians.init_points=60"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from taichi_syncnerf.data.synthetic import make_scene
    from taichi_syncnerf.rays import RaySource

    scene = tmp_path_factory.mktemp("gi") / "scene"
    make_scene(scene, layout="n3dv", cameras=3, frames=4, size=(32, 24), offset_sigma=1.0, seed=2, progress=False)
    return RaySource.open(scene, apply_overrides(DEFAULTS, SMALL), progress=False)


def test_initial_radius_is_capped_in_pixels_of_the_drawing_camera(source):
    from taichi_syncnerf.models.gaussians.points import initial_gaussians, random_points

    free = initial_gaussians(source, apply_overrides(DEFAULTS, SMALL))
    capped = initial_gaussians(source, apply_overrides(DEFAULTS, SMALL + ["gaussians.init_max_radius_px=14"]))
    cfg = apply_overrides(DEFAULTS, SMALL)
    rng = np.random.default_rng(int(cfg["train"]["seed"]) + 17)           # the draw initial_gaussians makes
    pts, _, pixel = random_points(source, 60, rng, cfg["model"]["bbox"], cfg["gaussians"]["init_depth"])
    np.testing.assert_array_equal(pts, free["means"])
    np.testing.assert_array_equal(capped["means"], free["means"])
    radius_px = 3.0 * np.exp(capped["log_scales"][:, 0]) / pixel              # 3 sigma over a pixel's size
    free_px = 3.0 * np.exp(free["log_scales"][:, 0]) / pixel
    assert (free_px > 14.0).sum() >= 10 and (free_px < 14.0).sum() >= 10     # the cap binds for some only
    np.testing.assert_allclose(radius_px, np.minimum(free_px, 14.0), rtol=1e-12)
    # a pixel's size is depth / fx in the drawing camera: the point sits at that depth on its ray
    ds = source.ds
    assert np.all(pixel > 0) and np.all(pixel * ds.intrinsics[1].fx < 1e3)


def _spread(source, pts, cams, frame=0):
    """Per point, the colour spread (mean absolute deviation from their mean) of the nearest pixels
    of ``frame`` where the point projects in every training camera that sees it."""
    from taichi_syncnerf.data.cameras import pixels_of

    ds = source.ds
    seen_cols = []
    for j in np.asarray(source.train_indices):
        intr = ds.intrinsics[j]
        u, v, z = pixels_of(intr, ds.c2w[j], pts)
        px, py = np.floor(np.where(z > 0, u, -1)).astype(int), np.floor(np.where(z > 0, v, -1)).astype(int)
        ok = (z > 0) & (px >= 0) & (px < intr.width) & (py >= 0) & (py < intr.height)
        col = np.asarray(ds.frames[j, frame], np.float64)[np.where(ok, py, 0), np.where(ok, px, 0)] / 255.0
        seen_cols.append(np.where(ok[:, None], col, np.nan))
    c = np.stack(seen_cols)
    return np.nanmean(np.abs(c - np.nanmean(c, 0)), (0, 2))


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    from taichi_syncnerf.data.synthetic import make_scene
    from taichi_syncnerf.rays import RaySource

    scene = tmp_path_factory.mktemp("gt") / "scene"
    make_scene(scene, layout="n3dv", family="static", encoding="clean", cameras=5, frames=3, size=(64, 48),
               offset_sigma=0.0, seed=1, progress=False)
    return RaySource.open(scene, apply_overrides(DEFAULTS, SMALL), progress=False)


def test_photo_depths_lie_on_their_rays_and_agree_across_cameras(textured):
    from taichi_syncnerf.data.cameras import generate_rays
    from taichi_syncnerf.models.gaussians.points import random_points

    cfg = apply_overrides(DEFAULTS, SMALL)
    box = cfg["model"]["bbox"]
    photo, _, p_px = random_points(textured, 400, np.random.default_rng(3), box, "photo")
    rand, _, r_px = random_points(textured, 400, np.random.default_rng(3), box, "random")
    # the same pixels are drawn: each photo point is on the ray of its random twin, at its own depth
    ds = textured.ds
    rng = np.random.default_rng(3)
    cams = rng.choice(np.asarray(textured.train_indices), 400)
    x, y = rng.integers(0, textured.width, 400), rng.integers(0, textured.height, 400)
    for k in np.unique(cams):
        sel = cams == k
        o, d = generate_rays(ds.intrinsics[k], ds.c2w[k], x[sel], y[sel], normalize=False)
        depth = p_px[sel] * ds.intrinsics[k].fx
        np.testing.assert_allclose(photo[sel], o + d * depth[:, None], atol=1e-9)
    # other cameras see the photo points in the colour their own camera saw; random ones not
    sp, sr = _spread(textured, photo, cams), _spread(textured, rand, cams)
    assert np.median(sp) < 0.5 * np.median(sr)


def test_world_space_background_pixels_are_not_drawn(tmp_path):
    from taichi_syncnerf.data.synthetic import make_scene
    from taichi_syncnerf.models.gaussians.points import random_points
    from taichi_syncnerf.rays import RaySource

    make_scene(tmp_path / "b", layout="blender", cameras=4, frames=3, size=(48, 36), offset_sigma=0.0, seed=0,
               progress=False)
    cfg = apply_overrides(DEFAULTS, SMALL)
    src = RaySource.open(tmp_path / "b", cfg, progress=False)
    for mode in ("random", "photo"):
        pts, colours, _ = random_points(src, 300, np.random.default_rng(0), None, mode)
        white = np.all(colours >= 1.0 - 5.1 / 255.0, 1)
        assert white.mean() < 0.02, (mode, white.mean())
        lo, hi = np.asarray(src.bbox).reshape(2, 3)
        assert np.all((pts >= lo - 1e-6) & (pts <= hi + 1e-6))


def test_depth_lr_length_is_the_median_camera_distance_and_survives_a_checkpoint(textured):
    from taichi_syncnerf.models.gaussians.model import median_camera_distance
    from taichi_syncnerf.models.registry import build_model

    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    pts = np.array([[1.0, 0.0, 0.0], [9.0, 0.0, 0.0], [0.0, 3.0, 0.0], [10.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    assert median_camera_distance(pts, centres) == pytest.approx(3.0)     # distances 1, 1, 3, 5, 4
    over = SMALL + ["gaussians.lr_extent=depth", "gaussians.static_steps=0", "gaussians.time_res=3"]
    cfg = apply_overrides(DEFAULTS, over)
    model = build_model(cfg, textured)
    model._ensure_init()
    c = np.asarray(textured.ds.c2w[textured.train_indices])[:, :3, 3]
    want = median_camera_distance(model.cloud.get()["means"], c)
    assert model.lr_length == pytest.approx(want) and abs(want - model.extent) > 0.1 * want
    g = cfg["gaussians"]
    assert model._rate("means", 0) == pytest.approx(g["lr_position_init"] * want)
    other = build_model(cfg, textured)
    other.load_state_arrays(model.state_arrays(), "ckpt")
    assert other.lr_length == pytest.approx(want)
    cams = build_model(apply_overrides(DEFAULTS, SMALL + ["gaussians.time_res=3"]), textured)
    cams._ensure_init()
    assert cams.lr_length == cams.extent


def test_error_points_sit_on_the_worst_pixels_at_the_depth_the_other_cameras_agree_on(tmp_path):
    from taichi_syncnerf.data.cameras import pixels_of
    from taichi_syncnerf.data.synthetic import make_scene
    from taichi_syncnerf.models.gaussians.points import _points_of_pixels, error_points
    from taichi_syncnerf.rays import RaySource

    make_scene(tmp_path / "m", layout="n3dv", family="static", encoding="clean", cameras=5, frames=8, size=(64, 48),
               offset_sigma=0.0, seed=1, progress=False)
    src = RaySource.open(tmp_path / "m", apply_overrides(DEFAULTS, SMALL), progress=False)
    ds, k, frame = src.ds, int(src.train_indices[0]), 5
    frames = np.asarray(ds.frames[k], np.float64) / 255.0
    pred = np.median(frames, 0)                       # the static scene: every mover pixel is wrong
    err = np.abs(frames[frame] - pred).mean(2)
    box = apply_overrides(DEFAULTS, SMALL)["model"]["bbox"]
    pts, colours, pixel = error_points(src, k, frame, pred, np.zeros(ds.n_cameras), 20, 0.1,
                                       np.random.default_rng(0), box)
    assert len(pts) == 20 and (err > 0.1).sum() > 20
    u, v, z = pixels_of(ds.intrinsics[k], ds.c2w[k], pts)
    x, y = np.floor(u).astype(int), np.floor(v).astype(int)
    assert np.all(z > 0) and np.all(err[y, x] > 0.1)
    np.testing.assert_allclose(colours, frames[frame][y, x])
    np.testing.assert_allclose(pixel, z / ds.intrinsics[k].fx, rtol=1e-9)
    # the other cameras see each point, at that frame, in its own colour; at random depths they do not
    rand, _ = _points_of_pixels(src, k, x, y, np.random.default_rng(1).uniform(0, 1, len(x)), box, "random", 48, {})
    cams = np.full(len(x), k)
    assert np.median(_spread(src, pts, cams, frame)) < 0.5 * np.median(_spread(src, rand, cams, frame))
    # nothing wrong, nothing placed
    none = error_points(src, k, frame, frames[frame], np.zeros(ds.n_cameras), 80, 0.1, np.random.default_rng(0), box)
    assert len(none[0]) == 0
