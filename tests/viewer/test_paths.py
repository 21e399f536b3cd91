"""Camera paths on a real run: the dataset's world, and ``render --camera-path`` against the dataset's cameras."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from taichi_syncnerf.camera_path import (CameraPath, Keyframe, make_path, read_path, to_dataset, to_model,
                                         world_from_source, write_path)
from taichi_syncnerf.cli.main import main

RT = ["--arch", "cpu", "--threads", "2", "--precision", "f64"]


def test_poses_bounds_rows_are_the_dataset_world(tiny_run, run_model):
    """camera_to_world of a forward-facing dataset is poses_bounds.npy's row turned to OpenGL."""
    from taichi_syncnerf.data.llff import llff_to_opengl

    src = run_model.source
    rows = np.load(tiny_run[1] / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)[:, :, :4]
    files = llff_to_opengl(rows)
    W = world_from_source(src)
    for k in range(src.n_cameras):
        np.testing.assert_allclose(to_model(files[k], W), src.ds.c2w[k], atol=1e-12)
        np.testing.assert_allclose(to_dataset(src.ds.c2w[k], W)[:3], files[k], atol=1e-12)


def _dataset_camera_path(src, offsets, cams_frames, fps=2.0) -> CameraPath:
    """One entry per (camera, frame): the camera's pose and field of view, the scene time of that frame."""
    from taichi_syncnerf.viewer.camera import camera_fov

    W = world_from_source(src)
    c2w = np.stack([to_dataset(src.ds.c2w[k], W) for k, _ in cams_frames])
    fov = np.array([np.degrees(camera_fov(src.ds.intrinsics[k])[0]) for k, _ in cams_frames])
    time = np.array([f + offsets[k] for k, f in cams_frames])
    return CameraPath(c2w, fov, time, src.width, src.height, fps)


def test_render_camera_path_equals_the_dataset_cameras(tiny_run, run_model, tmp_path):
    """A dataset camera written to camera_path.json and rendered gives that camera's own image."""
    import imageio.v3 as iio

    from taichi_syncnerf.evaluate import render_image

    run = tiny_run[0]
    src, model = run_model.source, run_model.model
    offsets = run_model.offsets_frames()
    shots = [(int(src.train_indices[1]), 4), (src.test_index, 9)]
    f = write_path(tmp_path / "camera_path.json", _dataset_camera_path(src, offsets, shots))
    r = CliRunner().invoke(main, ["render", str(run), "--camera-path", str(f), "--png", str(tmp_path / "png"),
                                  "--out", str(tmp_path / "path.mp4"), "--quiet"] + RT, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "path.mp4").stat().st_size > 0
    for i, (k, frame) in enumerate(shots):
        ref = render_image(model, src.image_rays(k, frame), src.height, src.width)
        ref_u8 = (np.clip(ref, 0, 1) * 255 + 0.5).astype(np.uint8)
        got = iio.imread(tmp_path / "png" / f"{i:05d}.png")
        assert got.shape == (src.height, src.width, 3)
        assert np.abs(got.astype(int) - ref_u8).max() <= 1, f"entry {i} (camera {k}, frame {frame})"


def test_render_camera_path_sizes_and_errors(tiny_run, run_model, tmp_path):
    run = tiny_run[0]
    src = run_model.source
    W = world_from_source(src)
    keys = [Keyframe(src.ds.c2w[0], 50.0, 2.0), Keyframe(src.ds.c2w[2], 60.0, 2.0)]
    f = write_path(tmp_path / "p.json", make_path(keys, W, width=20, height=14, fps=3.0, seconds=1.0))
    assert len(read_path(f)) == 3
    import imageio.v3 as iio

    from taichi_syncnerf.render_video import render_camera_path

    # in this process, with the run opened once (the command line is tested above)
    assert render_camera_path(run, f, png_dir=tmp_path / "png", progress=False, opened=run_model.opened) == \
        tmp_path / "png"

    shots = sorted((tmp_path / "png").iterdir())
    assert len(shots) == 3 and all(iio.imread(p).shape == (14, 20, 3) for p in shots)
    assert not (run / "renders" / "p.mp4").exists()                # --png alone writes no video
    r = CliRunner().invoke(main, ["render", str(run), "--camera-path", str(f), "--frames", "3"] + RT)
    assert r.exit_code == 2 and "--frames cannot be used with it" in r.output
    doc = json.loads(f.read_text())
    doc["camera_path"][2]["fov"] = -1
    f.write_text(json.dumps(doc))
    r = CliRunner().invoke(main, ["render", str(run), "--camera-path", str(f)] + RT)
    assert r.exit_code == 2 and r.output.strip() == f"error: {f}: camera_path[2].fov must be positive, got -1"


@pytest.mark.parametrize("smoothness", ["spline", "linear"])
def test_viewer_keyframes_round_trip_through_the_file(run_model, tmp_path, smoothness):
    """Keyframes saved by the viewer come back as they were (model world), and the entries start on
    the first keyframe and end on the last."""
    from taichi_syncnerf.camera_path import keyframes_in_model

    src = run_model.source
    W = world_from_source(src)
    keys = [Keyframe(src.ds.c2w[k], 40.0 + k, float(k)) for k in range(3)]
    cp = read_path(write_path(tmp_path / "k.json", make_path(keys, W, 32, 24, 4.0, 2.0, smoothness)))
    assert cp.smoothness == smoothness
    np.testing.assert_allclose(to_model(cp.c2w[0], W), keys[0].c2w, atol=1e-12)
    np.testing.assert_allclose(to_model(cp.c2w[-1], W), keys[-1].c2w, atol=1e-12)
    for a, b in zip(keyframes_in_model(cp, W), keys):
        np.testing.assert_allclose(a.c2w, b.c2w, atol=1e-12)
