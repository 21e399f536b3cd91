"""Input videos of different rates and sizes are resampled to one, with a warning line each."""
import warnings

import numpy as np
import pytest

from taichi_syncnerf.capture.media import CaptureWarning, decode, list_inputs, plan_inputs
from taichi_syncnerf.data.video import write_video
from taichi_syncnerf.errors import UserError


def _video(path, frames, w, h, fps):
    """Frame f is a flat grey of level 10 f (so a resampled frame tells its source frame)."""
    write_video(path, np.stack([np.full((h, w, 3), 10 * f, np.uint8) for f in range(frames)]), fps)


def test_plan_resamples_rate_and_size_with_one_warning_per_video(tmp_path):
    _video(tmp_path / "a.mp4", 10, 64, 48, 10.0)
    _video(tmp_path / "b.mov", 10, 64, 48, 10.0)
    _video(tmp_path / "c.mp4", 20, 128, 96, 20.0)      # twice the rate and size
    _video(tmp_path / "d.mp4", 10, 80, 48, 10.0)       # another aspect ratio
    videos = list_inputs(tmp_path)
    assert [v.path.name for v in videos] == ["a.mp4", "b.mov", "c.mp4", "d.mp4"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = plan_inputs(videos)
    lines = [str(w.message) for w in caught if issubclass(w.category, CaptureWarning)]
    assert (plan.width, plan.height, plan.fps) == (64, 48, 10.0)
    assert len(lines) == 2
    assert "c.mp4" in lines[0] and "128x96 -> 64x48" in lines[0] and "20 -> 10 fps" in lines[0]
    assert "d.mp4" in lines[1] and "centre crop" in lines[1]
    frames = np.stack(list(decode(videos[2], plan.width, plan.height, plan.fps)))
    assert frames.shape == (10, 48, 64, 3)
    # 20 fps -> 10 fps keeps every other frame: levels 0, 20, 40, ...
    np.testing.assert_allclose(frames[:, 24, 32, 0], 20 * np.arange(10), atol=3)


def test_a_smaller_dataset_keeps_full_frames_for_structure_from_motion(tmp_path):
    _video(tmp_path / "a.mp4", 4, 128, 96, 10.0)
    _video(tmp_path / "b.mp4", 4, 128, 96, 10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_inputs(list_inputs(tmp_path), size="64x48")
    assert (plan.width, plan.height, plan.sfm_width, plan.sfm_height) == (64, 48, 128, 96)


def test_bad_size_is_a_user_error(tmp_path):
    _video(tmp_path / "a.mp4", 4, 64, 48, 10.0)
    with pytest.raises(UserError, match="WIDTHxHEIGHT"):
        plan_inputs(list_inputs(tmp_path), size="big")
