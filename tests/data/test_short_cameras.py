"""Frame counts decided from the cameras' lengths: a far shorter camera is left out (or refused), the
test camera is never left out, offsets files are matched by camera name, and a kept range too short
for the model is refused in one line naming the minimum."""
import json

import numpy as np
import pytest

from taichi_syncnerf.data.dataset import load_dataset
from taichi_syncnerf.data.loaders import DataWarning, read_offsets_init
from taichi_syncnerf.data.video import write_video
from taichi_syncnerf.errors import ConfigError, DataError
from tests.data.test_bad_input import assert_error, n3dv, run


def test_a_far_shorter_camera_is_left_out_with_one_warning(tmp_path):
    root = n3dv(tmp_path / "s", lengths=(8, 1, 8, 7))
    (root / "offsets_gt.json").write_text(json.dumps(
        {"offsets_frames": [0.0, 1.0, 2.0, 3.0], "videos": [f"cam{i:02d}.mp4" for i in range(4)]}))
    with pytest.warns(DataWarning) as caught:
        ds = load_dataset(root, build_cache=False, test_camera=3)
    lines = [str(w.message) for w in caught]
    assert len(lines) == 1, lines
    assert "left out cam01.mp4 (1 frame)" in lines[0] and "median length, 7.5 frames" in lines[0]
    assert "first 7 frames" in lines[0] and "1 of 8 unused" in lines[0]
    assert ds.camera_names == ["cam00", "cam02", "cam03"] and ds.n_frames == 7
    assert ds.test_camera == "cam03" and ds.test_index == 2       # index 3 among the cameras found
    assert ds.c2w.shape == (3, 3, 4) and ds.scene.bounds.shape == (3, 2) and len(ds.intrinsics) == 3
    np.testing.assert_allclose(ds.offsets_gt_frames, [0.0, 2.0, 3.0])
    assert ds.scene.dropped == [("cam01", 1)]


def test_refuse_and_a_short_test_camera_are_one_line_errors(tmp_path):
    root = n3dv(tmp_path / "s", lengths=(8, 1, 8))
    with pytest.raises(DataError, match=r"cam01\.mp4 has 1 frame, under 50% .*data\.short_cameras: refuse"):
        load_dataset(root, build_cache=False, short_cameras="refuse")
    with pytest.raises(DataError, match=r"the test camera cam01 \(data\.test_camera\) has only 1 frame.*"
                                        r"data\.test_camera=cam00"):
        load_dataset(root, build_cache=False, test_camera="cam01")
    assert_error(run(root, "--test-camera", "cam01"), "cam01.mp4", "test camera cam01")


def test_only_one_camera_would_remain(tmp_path):
    root = n3dv(tmp_path / "s", lengths=(1, 9))
    with pytest.raises(DataError, match="fewer than 2 cameras would remain"):
        load_dataset(root, build_cache=False, test_camera=1)


def test_different_frame_rates_are_refused(tmp_path):
    root = n3dv(tmp_path / "s", lengths=(4, 4, 4))
    write_video(root / "cam02.mp4", np.zeros((4, 12, 16, 3), np.uint8), 15.0)
    assert_error(run(root), "cam02.mp4", "15 fps", "30 fps", "one frame rate")


def test_offsets_init_is_matched_by_camera_name(tmp_path):
    root = n3dv(tmp_path / "s", lengths=(6, 6, 6))
    path = root / "offsets_init.json"
    names = ["cam00", "cam01", "cam02"]
    path.write_text(json.dumps({"offsets_frames": [0.0, 2.0, -1.0], "cameras": ["cam02", "cam00", "cam01"]}))
    np.testing.assert_allclose(read_offsets_init(path, names), [2.0, -1.0, 0.0])
    path.write_text(json.dumps({"offsets_frames": [0.0, 2.0, -1.0], "cameras": ["cam00", "cam01", "cam07"]}))
    with pytest.raises(DataError, match="no offset for camera cam02"):
        read_offsets_init(path, names)
    path.write_text(json.dumps({"offsets_frames": [0.0, 2.0, -1.0], "cameras": ["cam00", "cam00", "cam02"]}))
    with pytest.raises(DataError, match="cam00 is listed more than once"):
        read_offsets_init(path, names)
    path.write_text(json.dumps({"offsets_frames": [0.0, 2.0e9, -1.0], "cameras": names}))
    with pytest.raises(DataError, match="offsets span 2e\\+09 frames but the videos are at most 6"):
        read_offsets_init(path, names, max_spread=6)
    path.write_text(json.dumps({"offsets_frames": [0.0, True, -1.0]}))
    with pytest.raises(DataError, match="list of numbers"):
        read_offsets_init(path, names)


class _Source:
    def __init__(self, n_frames):
        self.n_frames = n_frames


def _cfg(*overrides, preset="synthetic/sync-kplanes"):
    from taichi_syncnerf.config import load_config

    return load_config(preset, list(overrides))


def test_a_kept_range_too_short_for_the_model_names_the_minimum():
    from taichi_syncnerf.models.registry import build_model, model_class

    cfg = _cfg()
    assert model_class("sync-kplanes").min_frames(cfg)[0] == 5
    with pytest.raises(DataError, match=r"4 frames per camera kept, sync-kplanes needs at least 5 "
                                        r"\(kplanes\.regularizers\.time_smoothness needs kplanes\.time_res >= 3"):
        build_model(cfg, _Source(4))
    assert model_class("sync-kplanes").min_frames(_cfg("kplanes.time_res=4", "kplanes.proposal.time_res=4"))[0] == 2
    assert model_class("sync-kplanes").min_frames(
        _cfg("kplanes.regularizers.time_smoothness=0", "kplanes.regularizers.time_smoothness_proposal=0"))[0] == 2
    with pytest.raises(ConfigError, match=r"time_smoothness needs kplanes\.time_res >= 3, got 2"):
        model_class("sync-kplanes").min_frames(_cfg("kplanes.time_res=2"))
    mv = _cfg(preset="synthetic/sync-mixvoxels")
    assert model_class("sync-mixvoxels").min_frames(mv)[0] == 2
    with pytest.raises(DataError, match="1 frame per camera kept, sync-mixvoxels needs at least 2"):
        build_model(mv, _Source(1))
