"""Sound tracks: extraction with ffmpeg and the delay between two tracks (GCC-PHAT).

Convention shared with :mod:`.visual_sync`: :func:`best_lag` returns ``d`` such that
``x(t) ~ ref(t + d)``. When every camera's track records the same sounds, camera ``k``'s offset
relative to the reference camera is ``d`` seconds: "frame f of camera k shows scene time
f + offset_k" gives ``track_k(tau) = sound(tau + offset_k / fps)``.

Example::

    a = extract_audio("cam_a.mov", rate=16000)       # (n,) float32 or None without audio
    b = extract_audio("cam_b.mov", rate=16000)
    d, peak = best_lag(b, a, max_lag=2 * 16000, phat=True)   # samples; b(t) ~ a(t + d)
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from taichi_syncnerf.data.video import ffmpeg_exe
from taichi_syncnerf.errors import DataError

AUDIO_RATE = 16000


def extract_audio(path: str | Path, rate: int = AUDIO_RATE) -> np.ndarray | None:
    """The first audio stream of ``path`` as mono float32 samples at ``rate`` Hz (None if the
    file has no audio stream)."""
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0?", "-vn",
           "-ac", "1", "-ar", str(int(rate)), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise DataError(f"{path}: cannot read the audio track ({msg[-1] if msg else 'ffmpeg failed'})")
    if not proc.stdout:
        return None
    return np.frombuffer(proc.stdout, np.float32).copy()


def _parabolic(c: np.ndarray, i: int) -> float:
    """Sub-sample position of the peak at ``i`` from a parabola through its neighbours."""
    if i <= 0 or i >= len(c) - 1:
        return 0.0
    a, b, d = c[i - 1], c[i], c[i + 1]
    den = a - 2.0 * b + d
    return 0.0 if den >= 0 else float(np.clip(0.5 * (a - d) / den, -0.5, 0.5))


def correlation(x: np.ndarray, ref: np.ndarray, max_lag: int, phat: bool = False,
                normalise_overlap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation ``c[d] = sum_t x[t] ref[t + d]`` for integer ``d`` in ``[-max_lag, max_lag]``.

    Args:
        x, ref: 1-D signals (any lengths). max_lag: largest |d| returned.
        phat: weight every frequency equally (GCC-PHAT): sharp peaks for sounds, robust to the
            spectra of the microphones and rooms.
        normalise_overlap: divide by the number of overlapping samples (for short curves).
    Returns:
        lags (2L+1,) int64 and correlation (2L+1,) float64.
    """
    x = np.asarray(x, np.float64)
    ref = np.asarray(ref, np.float64)
    n = 1 << int(np.ceil(np.log2(len(x) + len(ref) + 1)))
    spec = np.conj(np.fft.rfft(x, n)) * np.fft.rfft(ref, n)
    if phat:
        spec /= np.maximum(np.abs(spec), 1e-12 * (np.abs(spec).max() + 1e-30))
    full = np.fft.irfft(spec, n)
    lags = np.arange(-max_lag, max_lag + 1)
    c = full[lags % n]
    if normalise_overlap:
        overlap = np.minimum(len(x), len(ref) - lags) - np.maximum(0, -lags)
        c = np.where(overlap > 0, c / np.maximum(overlap, 1), -np.inf)
    return lags, c


def best_lag(x: np.ndarray, ref: np.ndarray, max_lag: int, phat: bool = False,
             normalise_overlap: bool = False) -> tuple[float, float]:
    """The (sub-sample) ``d`` maximising :func:`correlation`, and the peak's prominence: its
    height over the largest value further than 3 samples from it (> 1 means a clear peak)."""
    lags, c = correlation(x, ref, max_lag, phat, normalise_overlap)
    i = int(np.argmax(c))
    others = np.abs(lags - lags[i]) > 3
    rest = c[others & np.isfinite(c)]
    second = float(rest.max()) if rest.size else 0.0
    prominence = float(c[i] / second) if second > 0 else float("inf")
    return float(lags[i]) + _parabolic(c, i), prominence


def onset_envelope(samples: np.ndarray, rate: int, hop: int = 80) -> np.ndarray:
    """A positive-flux onset curve (one value per ``hop`` samples) of a sound track."""
    n = len(samples) // hop
    if n < 2:
        return np.zeros(max(n, 1))
    frames = samples[: n * hop].reshape(n, hop).astype(np.float64)
    energy = np.log1p(1e3 * np.sqrt(np.mean(frames * frames, axis=1)))
    return np.maximum(np.diff(energy, prepend=energy[0]), 0.0)
