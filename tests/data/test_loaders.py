"""Layout detection, pose/intrinsics loading, frame options and ray geometry of loaded datasets."""
import json

import numpy as np
import pytest

from taichi_syncnerf.data.dataset import load_dataset
from taichi_syncnerf.timeline import frame_time
from taichi_syncnerf.data.loaders import detect_layout
from taichi_syncnerf.data.synthetic import make_scene, scene_rig
from taichi_syncnerf.data.video import read_video, write_video


def tiny(tmp_path, layout, name="scene", **kw):
    args = dict(layout=layout, cameras=3, frames=6, size=(32, 24), progress=False, seed=3)
    args.update(kw)
    out = tmp_path / name
    make_scene(out, **args)
    return out


def rgba_scene(tmp_path, cameras=2, frames=3, w=8, h=6, seed=0):
    """Blender layout with exact RGBA PNG frames (lossless) and no videos; returns (root, frames)."""
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    root = tmp_path / "rgba"
    data = rng.integers(0, 256, (cameras, frames, h, w, 4), dtype=np.uint8)
    data[..., 0, 0, 3] = 0
    data[..., 0, 1, 3] = 255
    mats = []
    for c in range(cameras):
        (root / "frames_1" / f"cam{c:02d}").mkdir(parents=True)
        for f in range(frames):
            iio.imwrite(root / "frames_1" / f"cam{c:02d}" / f"{f:04d}.png", data[c, f])
        m = np.eye(4)
        m[:3, 3] = [0.0, -4.0 - c, 0.5]
        mats.append(m.tolist())
    (root / "transforms.json").write_text(json.dumps(
        {"camera_angle_x": 0.7, "frames": [{"transform_matrix": m} for m in mats]}))
    return root, data


def expected_composite(rgba, bg):
    a = rgba[..., 3:].astype(np.float64) / 255.0
    return np.clip(np.rint(rgba[..., :3] * a + np.asarray(bg) * 255.0 * (1 - a)), 0, 255)


def ndc_point(k, near, p):
    """NDC of world points (N, 3) (NeRF's projection, an independent twin of ndc_rays)."""
    return np.stack([-2 * k.fx / k.width * p[:, 0] / p[:, 2], -2 * k.fy / k.height * p[:, 1] / p[:, 2],
                     1 + 2 * near / p[:, 2]], -1)


def test_detect_layout(tmp_path):
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "poses_bounds.npy", np.zeros((1, 17)))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "transforms.json").write_text("{}")
    assert detect_layout(tmp_path / "a") == "n3dv"
    assert detect_layout(tmp_path / "b") == "blender"


def test_n3dv_metadata_and_options(tmp_path):
    root = tiny(tmp_path, "n3dv")
    ds = load_dataset(root, build_cache=False)
    gt = json.loads((root / "offsets_gt.json").read_text())
    assert ds.layout == "n3dv" and ds.ndc and (ds.near, ds.far) == (0.0, 2.6)
    assert ds.camera_names == ["cam00", "cam01", "cam02"]
    assert (ds.n_frames, ds.width, ds.height, ds.fps) == (6, 32, 24, 30.0)
    assert ds.test_camera == "cam00" and ds.train_indices.tolist() == [1, 2]
    assert ds.c2w.shape == (3, 3, 4) and ds.cache is None
    np.testing.assert_allclose(ds.offsets_gt_frames, gt["offsets_frames"])
    np.testing.assert_allclose(ds.offsets_gt_normalised(), np.array(gt["offsets_frames"]) * 1.6 / 5)
    assert np.min(ds.scene.bounds) == pytest.approx(1 / 0.95)
    half = load_dataset(root, downsample=2, test_camera="cam02", max_frames=4, build_cache=False)
    assert (half.width, half.height, half.n_frames) == (16, 12, 4)
    assert half.intrinsics[0].fx == pytest.approx(ds.intrinsics[0].fx / 2)
    assert half.test_index == 2 and half.train_indices.tolist() == [0, 1]
    assert load_dataset(root, test_camera=1, build_cache=False).test_camera == "cam01"


def test_frame_range_selects_source_frames(tmp_path):
    root = tiny(tmp_path, "n3dv", frames=8)
    ds = load_dataset(root, frame_range=(2, 7), max_frames=3)
    assert (ds.frame_start, ds.n_frames) == (2, 3)
    for c in range(3):
        np.testing.assert_array_equal(ds.frames[c], read_video(root / f"cam{c:02d}.mp4")[2:5])
    half = load_dataset(root, downsample=2, frame_range=(1, None))
    np.testing.assert_array_equal(half.frames[1], read_video(root / "cam01.mp4", downsample=2)[1:])


def test_frame_time_spans_pm_08():
    np.testing.assert_allclose(frame_time(np.array([0, 2, 4]), 5), [-0.8, 0.0, 0.8])
    assert frame_time(0, 1) == 0.0


def test_n3dv_rays_hit_the_generator_geometry(tmp_path, rng):
    """Pixels of the generator's cameras map to rays through the same (LLFF-transformed) points."""
    root = tiny(tmp_path, "n3dv")
    ds = load_dataset(root, build_cache=False)
    cams = scene_rig("n3dv", 3, 32, 24)
    pts = rng.uniform(-0.5, 0.5, (40, 3))
    moved = (ds.scene.world_from_source @ np.c_[pts, np.ones(40)].T).T[:, :3]
    for k, cam in enumerate(cams):
        uv, depth = cam.project(pts)
        assert np.all(depth > 0)
        o, d = ds.rays(k, uv[:, 0] - 0.5, uv[:, 1] - 0.5)
        q = ndc_point(ds.intrinsics[k], 1.0, moved)
        np.testing.assert_allclose(np.cross(q - o, d), 0.0, atol=1e-9)
        np.testing.assert_allclose(o[:, 2], -1.0)


def test_blender_video_metadata_and_rays(tmp_path, rng):
    root = tiny(tmp_path, "blender")
    ds = load_dataset(root, build_cache=False)
    meta = json.loads((root / "transforms.json").read_text())
    assert ds.layout == "blender" and not ds.ndc and (ds.near, ds.far) == (2.0, 6.0)
    assert ds.scene.cameras[0].kind == "video"
    np.testing.assert_allclose(ds.bbox, [[-1.3] * 3, [1.3] * 3])
    assert ds.intrinsics[0].fx == pytest.approx(16.0 / np.tan(meta["camera_angle_x"] / 2))
    for k, fr in enumerate(meta["frames"]):
        np.testing.assert_allclose(ds.c2w[k], np.asarray(fr["transform_matrix"])[:3])
    cams = scene_rig("blender", 3, 32, 24)
    pts = rng.uniform(-0.5, 0.5, (30, 3))
    for k, cam in enumerate(cams):
        uv, _ = cam.project(pts)
        o, d = ds.rays(np.full(30, k), uv[:, 0] - 0.5, uv[:, 1] - 0.5)
        np.testing.assert_allclose(np.cross(pts - o, d), 0.0, atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)


def test_blender_png_preferred_and_close_to_video(tmp_path):
    root = tiny(tmp_path, "blender", png=True)
    png = load_dataset(root)
    vid = load_dataset(root, source="video")
    assert png.scene.cameras[0].kind == "png" and vid.scene.cameras[0].kind == "video"
    assert png.cache_path != vid.cache_path
    diff = np.abs(png.frames.astype(int) - vid.frames.astype(int))
    assert diff.mean() < 3.0  # same render composited on white; the video is lossy


def test_png_compositing_on_background(tmp_path):
    root, data = rgba_scene(tmp_path)
    for bg, name in (((1.0, 1.0, 1.0), "white"), ((0.0, 0.0, 0.0), "black")):
        ds = load_dataset(root, background=name)
        np.testing.assert_array_equal(ds.background, bg)
        np.testing.assert_array_equal(ds.frames, expected_composite(data, bg))
        np.testing.assert_array_equal(ds.frames[:, :, 0, 0], np.full((2, 3, 3), 255 * bg[0]))
        np.testing.assert_array_equal(ds.frames[:, :, 0, 1], data[:, :, 0, 1, :3])
    grey = load_dataset(root, background=(0.5, 0.25, 0.0), build_cache=False)
    assert grey.cache_path.name == "frames_ds1_f0-3_bg804000.json"


def test_blender_optional_keys(tmp_path):
    root, _ = rgba_scene(tmp_path)
    meta = json.loads((root / "transforms.json").read_text())
    meta.update({"near": 0.5, "far": 3.0, "scene_bbox": [[-2, -1, -1], [2, 1, 1]], "cx": 3.5,
                 "fl_x": 9.0, "fl_y": 8.0, "fps": 24})
    (root / "transforms.json").write_text(json.dumps(meta))
    ds = load_dataset(root, build_cache=False)
    k = ds.intrinsics[0]
    assert (ds.near, ds.far, ds.fps) == (0.5, 3.0, 24.0)
    assert (k.fx, k.fy, k.cx, k.cy) == (9.0, 8.0, 3.5, 3.0)
    np.testing.assert_allclose(ds.bbox, [[-2, -1, -1], [2, 1, 1]])


def test_rays_of_whole_camera(tmp_path):
    root, _ = rgba_scene(tmp_path)
    ds = load_dataset(root, build_cache=False)
    o, d = ds.camera_rays(1)
    assert o.shape == d.shape == (48, 3)
    np.testing.assert_allclose(o, np.broadcast_to(ds.c2w[1][:, 3], o.shape))
    assert np.argmax(d[:, 2] * -1) in (19, 20, 27, 28)  # the most forward ray is at the centre


def test_video_fixture_without_generator(tmp_path):
    """A hand-written n3dv folder (sorted names with a gap, as in real captures)."""
    rng = np.random.default_rng(0)
    names = ["cam00", "cam02", "cam05"]
    rows = []
    for i, n in enumerate(names):
        write_video(tmp_path / f"{n}.mp4", rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8), 25.0)
        pose = np.stack([[0, -1, 0], [1, 0, 0], [0, 0, 1], [0.2 * i, 0, 0], [16, 16, 20.0]], 1)
        rows.append(np.r_[pose.ravel(), 1.0, 5.0])
    np.save(tmp_path / "poses_bounds.npy", np.array(rows))
    ds = load_dataset(tmp_path, test_camera="cam05", build_cache=False)
    assert ds.camera_names == names and ds.fps == 25.0 and ds.test_index == 2
    np.testing.assert_allclose(ds.c2w[:, :, :3], np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-12)
