"""prepare and sync-estimate refuse bad input with one line (exit status 2, no traceback)."""
import sys

import numpy as np
import pytest

from taichi_syncnerf.data.video import write_video
from tests.cli import assert_one_line_error, run


def _texture_video(path, seed, frames=4, size=(256, 192)):
    """A still, unique random texture (nothing in common with another seed's) with a moving dot."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.uniform(0, 255, (size[1] // 4, size[0] // 4, 3)).astype(np.uint8), size,
                      interpolation=cv2.INTER_CUBIC)
    out = []
    for f in range(frames):
        img = base.copy()
        img[20:30, 20 + 8 * f:30 + 8 * f] = 255
        out.append(img)
    write_video(path, np.stack(out), fps=10.0)


def test_empty_folder(tmp_path):
    (tmp_path / "in").mkdir()
    assert_one_line_error(run("prepare", tmp_path / "in", tmp_path / "out"), "empty folder")


def test_a_file_that_is_not_a_video(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        _texture_video(src / f"v{k}.mp4", k)
    (src / "notes.mov").write_text("not a video")
    assert_one_line_error(run("prepare", src, tmp_path / "out"), "notes.mov", "not a readable video")
    assert not (tmp_path / "out").exists()


def test_one_camera_only(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _texture_video(src / "only.mp4", 0)
    (src / "readme.txt").write_text("a note beside the video")
    res = run("prepare", src, tmp_path / "out")
    assert res.exit_code == 2 and "Traceback" not in res.output
    warning, error = res.stderr.strip().splitlines()
    assert warning.startswith("warning: ") and "readme.txt: not a video, skipped" in warning
    assert error.startswith("error: ") and "1 video found" in error and "three cameras" in error


def test_cameras_that_share_no_view(tmp_path):
    pytest.importorskip("pycolmap", reason="pycolmap (the capture extra) is not installed")
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        _texture_video(src / f"cam_{k}.mp4", 10 + k)
    res = run("prepare", src, tmp_path / "out", "--quiet")
    assert_one_line_error(res, "registered", "share a view")
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir())   # staging removed


def test_without_pycolmap_prepare_says_how_to_install_it(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        _texture_video(src / f"v{k}.mp4", k)
    monkeypatch.setitem(sys.modules, "pycolmap", None)        # import pycolmap -> ImportError
    assert_one_line_error(run("prepare", src, tmp_path / "out"), "pip install -e '.[capture]'")


def test_sync_audio_without_sound_tracks(tmp_path):
    from taichi_syncnerf.data.synthetic import make_scene

    data = tmp_path / "scene"
    make_scene(data, cameras=3, frames=12, size=(64, 48), progress=False)
    res = run("sync-estimate", data, "--sync", "audio", "--quiet")
    assert_one_line_error(res, "cam00.mp4", "no sound track", "--sync visual")


def test_sync_estimate_needs_a_dataset(tmp_path):
    assert_one_line_error(run("sync-estimate", tmp_path / "missing"), "folder not found")


def test_prepare_sync_audio_without_sound_tracks_stops_before_decoding(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        _texture_video(src / f"v{k}.mp4", k)
    assert_one_line_error(run("prepare", src, tmp_path / "out", "--sync", "audio"),
                          "v0.mp4", "no sound track", "--sync visual")
