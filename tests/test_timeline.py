import numpy as np
import pytest

from taichi_syncnerf import timeline


def test_frames_span_the_time_interval():
    assert timeline.frame_time(0, 60) == pytest.approx(timeline.T_LO)
    assert timeline.frame_time(59, 60) == pytest.approx(timeline.T_LO + timeline.T_SPAN)
    assert timeline.frame_unit(60) == pytest.approx(timeline.T_SPAN / 59)


def test_one_frame_video_sits_in_the_middle_and_round_trips():
    assert float(timeline.frame_time(0, 1)) == pytest.approx(timeline.T_LO + timeline.T_SPAN / 2)
    f = np.array([0.0, 3.25, 10.0])
    np.testing.assert_allclose(timeline.time_frame(timeline.frame_time(f, 11), 11), f, atol=1e-12)


def test_offsets_frames_normalised_round_trip():
    off = np.array([0.0, 1.5, -2.0])
    d = timeline.frames_to_normalised(off, 61)
    np.testing.assert_allclose(d, off * 1.6 / 60)
    np.testing.assert_allclose(timeline.normalised_to_frames(d, 61), off)
    # an offset of k frames moves a frame's time onto frame f + k's
    np.testing.assert_allclose(timeline.frame_time(10, 61) + d[1], timeline.frame_time(11.5, 61))
