"""The on-disk frame cache: built once, reused, rebuilt when stale, atomic; batch gathering."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from taichi_syncnerf.data import cache as cache_mod
from taichi_syncnerf.data import sources
from taichi_syncnerf.data.dataset import load_dataset
from taichi_syncnerf.data.video import read_video, write_video
from taichi_syncnerf.errors import DataError


def video_scene(root, cameras=3, frames=5, h=12, w=16, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in range(cameras):
        write_video(root / f"cam{c:02d}.mp4", rng.integers(0, 255, (frames, h, w, 3), np.uint8), 30.0)
        pose = np.stack([[0, -1, 0], [1, 0, 0], [0, 0, 1], [0.1 * c, 0, 0], [h, w, 20.0]], 1)
        rows.append(np.r_[pose.ravel(), 1.0, 6.0])
    np.save(root / "poses_bounds.npy", np.array(rows))
    return root


@pytest.fixture
def scene(tmp_path):
    return video_scene(tmp_path / "scene")


def test_cache_contents_layout_and_manifest(scene):
    ds = load_dataset(scene)
    assert ds.cache_path.parent == scene / ".cache"
    assert ds.frames.shape == (3, 5, 12, 16, 3) and ds.frames.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(ds.frames[c], read_video(scene / f"cam{c:02d}.mp4"))
    raw = np.fromfile(ds.cache.data_path, np.uint8)
    assert raw.size == 3 * 5 * 12 * 16 * 3
    np.testing.assert_array_equal(raw.reshape(3, 5, 12, 16, 3), ds.frames)
    man = json.loads(ds.cache_path.read_text())
    assert man["shape"] == [3, 5, 12, 16, 3] and man["cameras"] == ["cam00", "cam01", "cam02"]
    assert len(man["fingerprint"]) == 4  # poses_bounds.npy + 3 videos
    assert not [p for p in ds.cache_path.parent.iterdir() if ".tmp" in p.name]


def test_reused_without_decoding_or_probing(scene, monkeypatch):
    first = load_dataset(scene)
    mtime = first.cache.data_path.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("decoded or probed again")

    monkeypatch.setattr(cache_mod, "iter_frames", boom)
    monkeypatch.setattr(sources, "default_probe", boom)
    again = load_dataset(scene)
    assert again.cache.build_id == first.cache.build_id
    assert again.cache.data_path.stat().st_mtime_ns == mtime


def test_changed_video_rebuilds(scene):
    first = load_dataset(scene)
    new = np.full((5, 12, 16, 3), 200, np.uint8)
    write_video(scene / "cam01.mp4", new, 30.0)
    again = load_dataset(scene)
    assert again.cache.build_id != first.cache.build_id
    assert abs(int(again.frames[1].mean()) - 200) <= 2
    np.testing.assert_array_equal(again.frames[0], first.frames[0])


def test_damaged_cache_file_rebuilds(scene):
    first = load_dataset(scene)
    with open(first.cache.data_path, "r+b") as f:
        f.truncate(100)
    again = load_dataset(scene)
    assert again.cache.build_id != first.cache.build_id
    assert again.cache.data_path.stat().st_size == again.cache.nbytes


def test_interrupted_build_leaves_nothing(scene, monkeypatch):
    real = cache_mod.iter_frames

    def dies_at_second_camera(cam, *a, **k):
        if cam.name == "cam01":
            raise KeyboardInterrupt
        yield from real(cam, *a, **k)

    monkeypatch.setattr(cache_mod, "iter_frames", dies_at_second_camera)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(scene)
    names = sorted(p.name for p in (scene / ".cache").iterdir())
    assert names == ["probes.json"]


def test_short_decode_is_a_data_error(scene, monkeypatch):
    real = cache_mod.iter_frames

    def short(cam, start, stop, *a, **k):
        yield from real(cam, start, stop - (cam.name == "cam02"), *a, **k)

    monkeypatch.setattr(cache_mod, "iter_frames", short)
    with pytest.raises(DataError, match=r"cam02\.mp4: truncated: only 4 of the 5 frames"):
        load_dataset(scene)


def test_not_enough_disk_space(scene, monkeypatch):
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: SimpleNamespace(free=1000))
    with pytest.raises(DataError, match="not enough disk space"):
        load_dataset(scene)


def test_cache_dir_choices(scene, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    ds = load_dataset(scene, cache_dir=other, build_cache=False)
    assert ds.cache_path.parent == other
    monkeypatch.setenv(cache_mod.ENV_CACHE_DIR, str(tmp_path / "env"))
    d = cache_mod.cache_dir_for(scene)
    assert d.parent == tmp_path / "env" and d.name.startswith("scene-")
    monkeypatch.delenv(cache_mod.ENV_CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cache_mod.os, "access", lambda p, mode: False)  # read-only dataset
    assert cache_mod.cache_dir_for(scene).parent == tmp_path / "xdg" / "taichi-syncnerf" / "frames"


def test_gather_and_uniform_batches(scene):
    ds = load_dataset(scene)
    rng = np.random.default_rng(0)
    c, f = rng.integers(0, 3, 500), rng.integers(0, 5, 500)
    x, y = rng.integers(0, 16, 500), rng.integers(0, 12, 500)
    np.testing.assert_array_equal(ds.cache.gather(c, f, x, y), ds.frames[c, f, y, x])
    b = ds.sample_batch(rng, 4000)
    assert set(np.unique(b.cam)) == {1, 2}  # the test camera is held out
    assert b.rgb.dtype == np.float32 and b.rgb.shape == (4000, 3)
    np.testing.assert_allclose(b.rgb, ds.frames[b.cam, b.frame, b.y, b.x] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(b.t, 0.8 * (2 * b.frame / 4 - 1), rtol=1e-6)
    assert set(np.unique(b.frame)) == set(range(5))
    assert b.x.min() == 0 and b.x.max() == 15 and b.y.max() == 11
    only0 = ds.sample_batch(rng, 100, cameras=[0], dtype=np.float64)
    assert np.all(only0.cam == 0) and only0.rgb.dtype == np.float64
    np.testing.assert_allclose(ds.image(2, 3), ds.frames[2, 3] / 255.0)


def test_background_does_not_split_video_caches(scene):
    white = load_dataset(scene, background="white")
    black = load_dataset(scene, background="black")
    assert black.cache.build_id == white.cache.build_id
    np.testing.assert_array_equal(black.background, [0.0, 0.0, 0.0])


def test_unwritable_cache_folder(scene, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot create the cache folder"):
        load_dataset(scene, cache_dir=blocker / "sub")


@pytest.mark.parametrize("edit", [
    lambda m: m.update(data_file=""), lambda m: m.pop("shape"), lambda m: m.update(format=99),
    lambda m: m.update(downsample=2), lambda m: m["fingerprint"][1].__setitem__(1, 0)])
def test_bad_manifest_rebuilds(scene, edit):
    first = load_dataset(scene)
    man = json.loads(first.cache_path.read_text())
    edit(man)
    first.cache_path.write_text(json.dumps(man))
    assert load_dataset(scene).cache.build_id != first.cache.build_id


def test_median_image_in_row_bands_matches_numpy(scene):
    from taichi_syncnerf.rays import RaySource

    src = RaySource(load_dataset(scene))
    expected = np.median(np.asarray(src.ds.frames[1], np.float64), axis=0) / 255.0
    np.testing.assert_allclose(src.median_image(1, rows_per_chunk=5), expected, atol=1e-12)
    np.testing.assert_allclose(src.median_image(1), expected, atol=1e-12)
    rays = src.pixel_rays(2, 3, np.array([0, 15, 4]), np.array([0, 11, 7]))
    np.testing.assert_allclose(rays["rgb"], src.ds.frames[2, 3, [0, 11, 7], [0, 15, 4]] / 255.0)
    o, d = src.ds.rays(2, np.array([0, 15, 4]), np.array([0, 11, 7]))
    np.testing.assert_allclose(rays["origins"], o)
    assert np.all(rays["cams"] == 2) and np.allclose(rays["times"], src.ds.time_of_frame(3))
