"""Synchronisation from the pictures alone: moving things must lie on each other's epipolar lines.

The cameras are fixed and their poses are known (structure from motion, or the dataset's
poses). In each camera, what moves is found against the camera's temporal median (a foreground
mask per frame, at about 160 pixels wide). For a pair of cameras (a, b), a foreground pixel of
frame f of camera a has an epipolar line in camera b; when frame g of camera b shows the same
scene time, the line passes through b's foreground. The score of a lag is the mean distance
(pixels, clipped) from those lines to b's foreground (a distance transform), over sampled
pixels and all frames, in both directions; its minimum over integer lags, refined by a parabola,
gives the lag. Unlike a per-camera curve of "how much moves", this does not depend on how each
view sees the motion.

Convention: "frame f of camera k shows scene time f + offset_k". Frame f of camera a and frame
g = f + d of camera b show the same time when d = offset_a - offset_b.

Example::

    small = [SmallFrames() for _ in videos]      # .add(frame) for every frame of every camera
    masks = [foreground_masks(s.stack()) for s in small]
    d, prominence = pair_lag(masks[0], masks[1], fundamental(K0, c2w0, K1, c2w1), max_lag=20)
"""
from __future__ import annotations

import numpy as np

SMALL_WIDTH = 160
CLIP_PX = 12.0
MIN_FOREGROUND = 6


class SmallFrames:
    """One camera's frames in grey at about ``SMALL_WIDTH`` pixels wide; ``scale`` = small / full."""

    def __init__(self):
        self._frames: list[np.ndarray] = []
        self.scale = 1.0

    def add(self, frame: np.ndarray) -> None:
        import cv2

        h, w = frame.shape[:2]
        self.scale = min(1.0, SMALL_WIDTH / w)
        size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        self._frames.append(cv2.resize(grey, size, interpolation=cv2.INTER_AREA))

    def stack(self) -> np.ndarray:
        """(F, h, w) float32."""
        return np.stack(self._frames).astype(np.float32)


def foreground_masks(stack: np.ndarray) -> np.ndarray:
    """(F, h, w) bool: pixels that differ from the camera's temporal median (robust threshold,
    specks removed)."""
    import cv2

    diff = np.abs(stack - np.median(stack, axis=0))
    thr = max(10.0, 6.0 * 1.4826 * float(np.median(diff)))
    kernel = np.ones((3, 3), np.uint8)
    return np.stack([cv2.morphologyEx((d > thr).astype(np.uint8), cv2.MORPH_OPEN, kernel) > 0
                     for d in diff])


def intrinsic_matrix(focal: float, width: int, height: int) -> np.ndarray:
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def fundamental(k_a: np.ndarray, c2w_a: np.ndarray, k_b: np.ndarray, c2w_b: np.ndarray) -> np.ndarray:
    """F with ``x_b^T F x_a = 0`` for OpenCV camera-to-world (3, 4) poses and (3, 3) intrinsics."""
    r_a, r_b = c2w_a[:, :3].T, c2w_b[:, :3].T
    t_a, t_b = -r_a @ c2w_a[:, 3], -r_b @ c2w_b[:, 3]
    r = r_b @ r_a.T
    t = t_b - r @ t_a
    tx = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    return np.linalg.inv(k_b).T @ tx @ r @ np.linalg.inv(k_a)


def _line_samples(fmat, ys, xs, h, w, n_samples):
    """Pixel coordinates (P, S) along the epipolar lines of pixels (ys, xs); -1 outside."""
    pts = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=np.float64)], axis=1)
    a, b, c = (pts @ fmat.T).T
    steep = np.abs(b) < np.abs(a)
    s = np.linspace(0.0, 1.0, n_samples)[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        x_flat = s * w
        y_flat = -(a[:, None] * x_flat + c[:, None]) / b[:, None]
        y_steep = s * h
        x_steep = -(b[:, None] * y_steep + c[:, None]) / a[:, None]
    x = np.where(steep[:, None], x_steep, np.broadcast_to(x_flat, y_flat.shape))
    y = np.where(steep[:, None], np.broadcast_to(y_steep, x_steep.shape), y_flat)
    xi, yi = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    inside = np.isfinite(x) & np.isfinite(y) & (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    return np.where(inside, yi * w + xi, -1)


def _scores(masks_a, masks_b, fmat, lags, n_points, n_samples, rng):
    """Mean clipped line-to-foreground distance for each lag (NaN where nothing overlapped)."""
    import cv2

    n_a, h, w = masks_a.shape
    dist = np.stack([cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, 3).ravel()
                     if m.sum() >= MIN_FOREGROUND else np.full(h * w, np.nan, np.float32)
                     for m in masks_b])
    dist = np.minimum(dist, CLIP_PX)
    per_frame = []
    for f in range(n_a):
        ys, xs = np.nonzero(masks_a[f])
        if len(ys) < MIN_FOREGROUND:
            continue
        pick = rng.choice(len(ys), size=min(n_points, len(ys)), replace=False)
        idx = _line_samples(fmat, ys[pick].astype(np.float64), xs[pick].astype(np.float64), h, w,
                            n_samples)
        idx = idx[(idx >= 0).any(axis=1)]
        if len(idx):
            per_frame.append((f, idx))
    total = np.zeros(len(lags))
    count = np.zeros(len(lags))
    for i, d in enumerate(lags):
        for f, idx in per_frame:
            g = f + d
            if not 0 <= g < len(dist) or np.isnan(dist[g, 0]):
                continue
            vals = np.where(idx >= 0, dist[g][np.maximum(idx, 0)], np.inf).min(axis=1)
            total[i] += vals.sum()
            count[i] += len(vals)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def pair_lag(masks_a, masks_b, fmat, max_lag: int, n_points: int = 150, n_samples: int = 200,
             seed: int = 0) -> tuple[float, float]:
    """``d`` (frames) with frame f of camera a and frame f + d of camera b showing the same time,
    and the prominence of the minimum (median score / best score; > 1.5 is a clear minimum)."""
    rng = np.random.default_rng(seed)
    lags = np.arange(-int(max_lag), int(max_lag) + 1)
    s = _scores(masks_a, masks_b, fmat, lags, n_points, n_samples, rng)
    s_back = _scores(masks_b, masks_a, fmat.T, -lags, n_points, n_samples, rng)
    s = np.nanmean(np.stack([s, s_back]), axis=0)
    if not np.any(np.isfinite(s)):
        return 0.0, 0.0
    s = np.where(np.isfinite(s), s, np.nanmax(s))
    i = int(np.argmin(s))
    sub = 0.0
    if 0 < i < len(s) - 1:
        den = s[i - 1] - 2 * s[i] + s[i + 1]
        sub = float(np.clip(0.5 * (s[i - 1] - s[i + 1]) / den, -0.5, 0.5)) if den > 0 else 0.0
    prominence = float(np.median(s) / max(s[i], 1e-6))
    return float(lags[i]) + sub, prominence
