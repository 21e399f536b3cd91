"""Coarse synchronisation: each camera's offset to the reference camera, and the common overlap.

Offsets follow the project's convention, "frame f of camera k shows scene time f + offset_k", in
frames, relative to the reference camera (offset 0). From sound tracks (:func:`offsets_from_audio`,
GCC-PHAT, sub-frame precision) or from what moves in the videos (:func:`offsets_from_motion`,
epipolar consistency between the cameras, which needs their poses). A camera whose
correlation peak is not clear gets a warning line; its estimate is still used.

:func:`overlap` turns offsets into the frames to keep: camera k starts at ``start[k]`` so that
every kept video begins at (nearly) the same scene time, and all keep ``length`` frames. What
remains is the sub-frame residual ``residual[k]`` that ``train`` starts from.

Example::

    est = offsets_from_audio(tracks, rate=16000, fps=30.0, max_lag_s=3.0)
    start, length, residual = overlap(est.offsets, n_frames=[60, 58, 61])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taichi_syncnerf.capture import visual_sync
from taichi_syncnerf.capture.audio import best_lag, onset_envelope
from taichi_syncnerf.capture.media import warn
from taichi_syncnerf.errors import DataError

MIN_PROMINENCE = 1.15
VISUAL_MIN_PROMINENCE = 1.5


@dataclass
class SyncEstimate:
    """offsets: (C,) frames relative to camera ``reference``; prominence: (C,) peak clarity."""

    method: str
    offsets: np.ndarray
    prominence: np.ndarray
    reference: int = 0

    def to_dict(self) -> dict:
        return {"method": self.method, "reference": int(self.reference),
                "offsets_frames": [float(o) for o in self.offsets],
                "prominence": [float(min(p, 1e6)) for p in self.prominence]}


def default_max_offset_s(durations: list, fps: float) -> float:
    """Largest offset searched by default: the shortest video less a minimum overlap of
    max(8 frames, 20 %)."""
    shortest = min(durations)
    return max(shortest - max(8.0 / fps, 0.2 * shortest), 1.0 / fps)


def _check(names, prominence, method, reference, threshold=MIN_PROMINENCE):
    for k, p in enumerate(prominence):
        if k != reference and p < threshold:
            warn(f"{names[k]}: the {method} correlation with {names[reference]} has no clear "
                 f"peak (prominence {p:.2f}); its offset estimate may be wrong")


def offsets_from_audio(tracks: list, rate: int, fps: float, max_lag_s: float,
                       names: list | None = None, reference: int = 0) -> SyncEstimate:
    """Offsets (frames) from sound tracks ((n,) float arrays at ``rate`` Hz, one per camera).

    GCC-PHAT of the raw sound gives the delay to within a sample; when its peak is not clear the
    cross-correlation of onset envelopes (5 ms steps) is tried and the clearer of the two kept.
    """
    names = names or [f"camera {k}" for k in range(len(tracks))]
    ref = tracks[reference]
    offs, prom = np.zeros(len(tracks)), np.full(len(tracks), np.inf)
    hop = max(1, rate // 200)
    for k, x in enumerate(tracks):
        if k == reference:
            continue
        lag = int(min(max_lag_s * rate, len(x) + len(ref)))
        d, p = best_lag(x, ref, lag, phat=True)
        if p < MIN_PROMINENCE:
            d2, p2 = best_lag(onset_envelope(x, rate, hop), onset_envelope(ref, rate, hop),
                              max(1, lag // hop))
            if p2 > p:
                d, p = d2 * hop, p2
        offs[k], prom[k] = d / rate * fps, p
    _check(names, prom, "sound", reference)
    return SyncEstimate("audio", offs, prom, reference)


def offsets_from_motion(small: list, c2w: list, focals: list, width: int, max_lag: int,
                        names: list | None = None, reference: int = 0) -> SyncEstimate:
    """Offsets (frames) from what moves, made consistent across views by the cameras' epipolar
    geometry (:mod:`.visual_sync`).

    Args:
        small: one :class:`.visual_sync.SmallFrames` per camera (every frame, one frame rate).
        c2w: OpenCV camera-to-world (3, 4) per camera; focals: pixels at full width ``width``.
    """
    names = names or [f"camera {k}" for k in range(len(small))]
    masks = [visual_sync.foreground_masks(s.stack()) for s in small]
    h, w = masks[reference].shape[1:]
    ks = [visual_sync.intrinsic_matrix(f * w / width, w, h) for f in focals]
    offs, prom = np.zeros(len(small)), np.full(len(small), np.inf)
    for k in range(len(small)):
        if k == reference:
            continue
        fmat = visual_sync.fundamental(ks[reference], c2w[reference], ks[k], c2w[k])
        lag = int(min(max_lag, len(masks[k]) - 2, len(masks[reference]) - 2))
        d, prom[k] = visual_sync.pair_lag(masks[reference], masks[k], fmat, max(1, lag))
        offs[k] = -d
    _check(names, prom, "epipolar motion", reference, VISUAL_MIN_PROMINENCE)
    return SyncEstimate("visual", offs, prom, reference)


def overlap(offsets, n_frames, max_frames: int | None = None, min_frames: int = 2):
    """Frames to keep so that every camera covers the same scene times.

    Args:
        offsets: (C,) frames, "frame f of camera k shows scene time f + offsets[k]".
        n_frames: (C,) frames of every video. max_frames: keep at most this many.
    Returns:
        start (C,) int64 first kept frame of each camera, length (int), and the residual
        offsets (C,) of the kept videos relative to camera 0 (sub-frame for integer-exact input).
    """
    offs = np.asarray(offsets, np.float64)
    n = np.asarray(n_frames, np.int64)
    first = offs.max()                               # scene time every camera has reached
    start = np.maximum(np.round(first - offs), 0).astype(np.int64)
    length = int(np.min(n - start))
    if max_frames is not None:
        length = min(length, int(max_frames))
    if length < min_frames:
        raise DataError(f"the videos share only {max(length, 0)} frames of scene time after "
                        f"synchronisation (offsets {np.round(offs, 1).tolist()} frames, lengths "
                        f"{n.tolist()}); record longer, overlapping videos")
    shown = start + offs
    return start, length, shown - shown[0]
