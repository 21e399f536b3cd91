"""Cross-correlation and GCC-PHAT delays against a direct float64 sum, and on sound events."""
import numpy as np

from taichi_syncnerf.capture.audio import best_lag, correlation
from taichi_syncnerf.capture.soundtrack import scene_sound


def _direct(x, ref, max_lag):
    """c[d] = sum_t x[t] ref[t + d], summed term by term."""
    out = []
    for d in range(-max_lag, max_lag + 1):
        out.append(sum(x[t] * ref[t + d] for t in range(len(x)) if 0 <= t + d < len(ref)))
    return np.array(out)


def test_correlation_matches_the_direct_sum(rng):
    x, ref = rng.normal(size=37), rng.normal(size=53)
    lags, c = correlation(x, ref, 20)
    np.testing.assert_array_equal(lags, np.arange(-20, 21))
    np.testing.assert_allclose(c, _direct(x, ref, 20), atol=1e-10)
    _, c_norm = correlation(x, ref, 20, normalise_overlap=True)
    overlap = [sum(1 for t in range(37) if 0 <= t + d < 53) for d in range(-20, 21)]
    np.testing.assert_allclose(c_norm, _direct(x, ref, 20) / np.array(overlap), atol=1e-10)


def test_best_lag_sign_and_sub_sample_precision(rng):
    ref = rng.normal(size=400)
    x = ref[25:325]                      # x(t) = ref(t + 25)
    d, prominence = best_lag(x, ref, 60)
    assert abs(d - 25) < 0.5 and prominence > 1.5


def test_gcc_phat_recovers_a_fractional_delay_of_sound_events(rng):
    rate, fps = 16000, 30.0
    events, freqs = np.sort(rng.uniform(0, 2.0, 8)), rng.uniform(400, 3000, 8)
    tau = np.arange(int(1.5 * rate)) / rate
    offsets = [0.0, 3.4, -7.25]          # frames
    tracks = [scene_sound(tau + o / fps, events, freqs) + 0.01 * rng.normal(size=len(tau))
              for o in offsets]
    for k in (1, 2):
        d, prominence = best_lag(tracks[k], tracks[0], rate, phat=True)
        assert abs(d / rate * fps - offsets[k]) < 0.05, (k, d / rate * fps)
        assert prominence > 1.5
    # a lag outside the searched range cannot be found: the test can fail
    d, _ = best_lag(tracks[2], tracks[0], int(0.1 * rate), phat=True)
    assert abs(d / rate * fps - offsets[2]) > 1.0
