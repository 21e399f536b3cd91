"""The benchmark scripts' own pieces: the points they draw and the multiply-add ceiling."""
import importlib.util
import math
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_box_points_hit_at_most_two_texels_per_axis():
    field = _load("field")
    pts = field.box_points(4096, np.random.default_rng(3))
    assert pts.shape == (4096, 4)
    assert np.all(np.abs(pts) < 1.0)
    assert np.all(pts.max(0) - pts.min(0) <= field.BOX_SIDE)
    for res in (64, 128, 256, 512, 150):  # every axis of every scale, time included
        cell = np.floor((pts + 1.0) * 0.5 * (res - 1)).astype(int)
        assert np.all(cell.max(0) - cell.min(0) <= 1)


def test_ray_points_lie_on_their_rays():
    field = _load("field")
    rng = np.random.default_rng(4)
    dirs = rng.normal(size=(8, 3))
    pts = field.ray_points(64, 8, dirs, rng).reshape(8, 8, 4)
    assert np.all(np.abs(pts) <= 1.0)
    assert np.all(pts[:, :, 3] == pts[:, :1, 3])  # one time per ray
    steps = np.diff(pts[:, :, :3], axis=1)
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    cross = np.cross(steps, unit[:, None, :])
    assert np.allclose(cross, 0.0, atol=1e-12)


def test_multiply_add_ceiling_runs():
    import taichi as ti

    tiles = _load("mlp_tiles")
    top = tiles.ceiling(ti, threads=2, repeats=1, iters=200)
    assert math.isfinite(top) and top > 0.0
