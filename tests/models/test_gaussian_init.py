"""Sync-4DGS's random initial points with gaussians.init_max_radius_px: no Gaussian starts wider
than the cap in pixels of the camera its point was drawn from, the others keep their scale."""
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
    pts, _, pixel = random_points(source, 60, rng, cfg["model"]["bbox"])
    np.testing.assert_array_equal(pts, free["means"])
    np.testing.assert_array_equal(capped["means"], free["means"])
    radius_px = 3.0 * np.exp(capped["log_scales"][:, 0]) / pixel              # 3 sigma over a pixel's size
    free_px = 3.0 * np.exp(free["log_scales"][:, 0]) / pixel
    assert (free_px > 14.0).sum() >= 10 and (free_px < 14.0).sum() >= 10     # the cap binds for some only
    np.testing.assert_allclose(radius_px, np.minimum(free_px, 14.0), rtol=1e-12)
    # a pixel's size is depth / fx in the drawing camera: the point sits at that depth on its ray
    ds = source.ds
    assert np.all(pixel > 0) and np.all(pixel * ds.intrinsics[1].fx < 1e3)
