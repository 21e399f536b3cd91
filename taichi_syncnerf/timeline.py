"""The one time convention: how frame indices, scene time and offsets relate.

Every video of a dataset has ``F`` frames (the selected range). Its frames span the normalised
time interval ``[T_LO, T_LO + T_SPAN]`` = [-0.8, 0.8]:

    t(f) = T_LO + T_SPAN * f / (F - 1)          (t = T_LO + T_SPAN / 2 = 0 when F == 1)

so one frame is ``frame_unit(F) = T_SPAN / (F - 1)`` normalised units. Camera ``k``'s offset
``d_k`` (normalised units) is added to the time of its frames: a ray of camera ``k`` at frame ``f``
queries the dynamic field at ``t(f) + d_k``. Offsets are reported in frames: "frame f of camera k
shows scene time f + offset_frames[k]", ``offset_frames = d_k / frame_unit(F)``.

The kernels do not know this convention: they receive ``T_LO`` and ``T_SPAN`` as arguments
(kernels/timefn.py) or the times themselves.

Example:
    >>> float(frame_time(0, 61)), float(frame_time(60, 61)), float(frame_time(0, 1))
    (-0.8, 0.8, 0.0)
    >>> round(frame_unit(61) * 30, 6)
    0.8
"""
from __future__ import annotations

import numpy as np

T_LO = -0.8
T_SPAN = 1.6


def frame_unit(n_frames: int) -> float:
    """Normalised time units per frame for a video of ``n_frames`` frames (T_SPAN if F == 1)."""
    return T_SPAN / max(1, int(n_frames) - 1)


def frame_time(frame, n_frames: int):
    """Normalised time of (possibly fractional) frame indices ``frame`` (scalar or array)."""
    f = np.asarray(frame, np.float64)
    if n_frames <= 1:
        return np.full_like(f, T_LO + 0.5 * T_SPAN)
    return T_LO + T_SPAN * f / (n_frames - 1)


def time_frame(t, n_frames: int):
    """Inverse of :func:`frame_time`: the (fractional) frame index of normalised time ``t``."""
    t = np.asarray(t, np.float64)
    if n_frames <= 1:
        return np.zeros_like(t)
    return (t - T_LO) / T_SPAN * (n_frames - 1)


def frames_to_normalised(offsets_frames, n_frames: int) -> np.ndarray:
    """Offsets in frames -> normalised time units."""
    return np.asarray(offsets_frames, np.float64) * frame_unit(n_frames)


def normalised_to_frames(offsets, n_frames: int) -> np.ndarray:
    """Offsets in normalised time units -> frames."""
    return np.asarray(offsets, np.float64) / frame_unit(n_frames)
