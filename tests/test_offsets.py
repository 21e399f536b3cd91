import numpy as np
import pytest

from taichi_syncnerf.offsets import TimeOffsets
from taichi_syncnerf.timeline import frame_time, frame_unit


def test_frame_time_spans_pm_08():
    assert frame_time(0, 60) == pytest.approx(-0.8)
    assert frame_time(59, 60) == pytest.approx(0.8)
    assert frame_time(29.5, 60) == pytest.approx(0.0)
    assert frame_unit(60) == pytest.approx(1.6 / 59)


def test_offsets_frames_round_trip_and_mask():
    off = TimeOffsets(4, 60, trainable=[False, True, True, True], init_mean=-0.001, init_std=0.001, seed=3)
    assert off.normalised()[0] == 0.0  # fixed camera starts at exactly 0
    off.set_frames([0.0, 1.5, -2.0, 0.25])
    np.testing.assert_allclose(off.frames(), [0.0, 1.5, -2.0, 0.25], atol=1e-12)
    off.params.grad.fill(1.0)
    off.apply_mask_to_grad()
    np.testing.assert_allclose(off.params.grad.to_numpy(), [0, 1, 1, 1])


def test_l1_value_and_gradient():
    off = TimeOffsets(3, 11, trainable=[True, True, False])
    off.params.from_numpy(np.array([0.3, -0.2, 0.5]))
    off.params.grad.fill(0.0)
    v = off.l1(0.1)
    assert v == pytest.approx(0.1 * (0.3 + 0.2))
    np.testing.assert_allclose(off.params.grad.to_numpy(), [0.1, -0.1, 0.0])
