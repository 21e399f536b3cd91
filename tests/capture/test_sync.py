"""Coarse offsets: the common overlap, audio offsets of several cameras, unclear peaks."""
import warnings

import numpy as np
import pytest

from taichi_syncnerf.capture.media import CaptureWarning
from taichi_syncnerf.capture.soundtrack import scene_sound
from taichi_syncnerf.capture.sync import default_max_offset_s, offsets_from_audio, overlap
from taichi_syncnerf.errors import DataError


def test_overlap_aligns_the_videos_on_one_scene_time():
    offsets = np.array([0.0, 2.3, -4.6, 0.4])
    start, length, residual = overlap(offsets, [30, 28, 40, 30])
    # frame f of camera k shows scene time f + start[k] + offsets[k]: nearly equal for all k
    shown = start + offsets
    assert np.all(start >= 0) and np.ptp(shown) <= 1.0
    assert length == min(n - s for n, s in zip([30, 28, 40, 30], start))
    np.testing.assert_allclose(residual, shown - shown[0])
    assert np.all(np.abs(residual) <= 1.0)
    _, capped, _ = overlap(offsets, [30, 28, 40, 30], max_frames=5)
    assert capped == 5


def test_overlap_refuses_videos_that_share_no_time():
    with pytest.raises(DataError, match="share only"):
        overlap([0.0, 40.0], [30, 30])


def test_default_search_leaves_a_minimum_overlap():
    assert default_max_offset_s([2.0, 3.0], 30.0) == pytest.approx(2.0 - 0.4)
    assert default_max_offset_s([0.5], 30.0) == pytest.approx(0.5 - 8 / 30)


def test_audio_offsets_of_several_cameras(rng):
    rate, fps = 16000, 25.0
    events, freqs = np.sort(rng.uniform(-0.5, 2.5, 10)), rng.uniform(400, 3000, 10)
    truth = np.array([0.0, 1.7, -3.2, 6.6])
    tracks = [scene_sound(np.arange(int(1.6 * rate)) / rate + o / fps, events, freqs)
              + 0.01 * rng.normal(size=int(1.6 * rate)) for o in truth]
    est = offsets_from_audio(tracks, rate, fps, max_lag_s=1.0)
    assert est.method == "audio"
    np.testing.assert_allclose(est.offsets, truth, atol=0.05)


def test_audio_without_a_clear_peak_warns(rng):
    rate = 8000
    tracks = [rng.normal(size=rate), rng.normal(size=rate)]     # unrelated noise
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        offsets_from_audio(tracks, rate, 30.0, 0.3, names=["a.mov", "b.mov"])
    assert any(issubclass(w.category, CaptureWarning) and "b.mov" in str(w.message)
               for w in caught)
