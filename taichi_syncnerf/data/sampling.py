"""Random pixel selection for training batches: uniform, or proportional to ISG/IST weights.

Pixel indices are cache-local: camera ``c`` (index into the dataset's camera list), frame ``f``
(0 .. F-1 of the selected frame range), column ``x`` and row ``y`` at training resolution.
"""
from __future__ import annotations

import numpy as np


def uniform_pixels(rng: np.random.Generator, n: int, cameras: np.ndarray, n_frames: int,
                   height: int, width: int) -> tuple[np.ndarray, ...]:
    """``n`` pixels drawn uniformly from every frame of the given cameras.

    Returns:
        cam, frame, x, y: (n,) int64 arrays.
    """
    cameras = np.asarray(cameras, np.int64)
    cam = cameras[rng.integers(0, len(cameras), n)]
    return (cam, rng.integers(0, n_frames, n), rng.integers(0, width, n),
            rng.integers(0, height, n))


class ImportanceSampler:
    """Exact sampling of full-resolution pixels with probability proportional to coarse weights.

    A weight ``w[c, f, j, i]`` covers the block of pixels ``x in [i*s, (i+1)*s)``,
    ``y in [j*s, (j+1)*s)``; the last block of a row/column also takes the remainder pixels when
    ``W`` or ``H`` is not a multiple of ``s``. Every full-resolution pixel gets probability
    ``w(block) / sum over all pixels``: nearest-neighbour upsampled weights, normalised.

    Sampling is hierarchical: a block row from a global CDF over (camera, frame, row), then one of
    at most 16 column groups from a precomputed table of group masses, then a block column inside
    the group (reading only that group's weights), then a uniform pixel inside the block. Memory:
    ``C * F * Hc * 17`` floats in RAM; one batch reads ``n * Wc / 16`` weights from the memmap.

    Args:
        weights: (C, F, Hc, Wc) non-negative array (typically a float16 memmap).
        height, width: full training resolution (``Hc == height // factor``).
        factor: block size ``s``.
    """

    N_GROUPS = 16

    def __init__(self, weights: np.ndarray, height: int, width: int, factor: int):
        self.weights = weights
        c, nf, hc, wc = weights.shape
        self.height, self.width, self.factor = height, width, factor
        if hc != height // factor or wc != width // factor:
            raise ValueError(f"weights {hc}x{wc} do not match {height}x{width} / {factor}")
        self.row_h = np.full(hc, factor, np.int64)
        self.row_h[-1] = height - (hc - 1) * factor
        self.col_w = np.full(wc, factor, np.int64)
        self.col_w[-1] = width - (wc - 1) * factor
        self.group = -(-wc // self.N_GROUPS)  # columns per group
        n_groups = -(-wc // self.group)
        self.group_mass = np.empty((c, nf, hc, n_groups), np.float32)
        self.row_mass = np.empty((c, nf, hc), np.float64)
        for k in range(c):
            padded = np.zeros((nf, hc, n_groups * self.group))
            padded[:, :, :wc] = np.asarray(weights[k], np.float64) * self.col_w
            groups = padded.reshape(nf, hc, n_groups, self.group).sum(axis=3) * self.row_h[:, None]
            self.group_mass[k] = groups
            self.row_mass[k] = groups.sum(axis=2)
        self._cdfs: dict[tuple, np.ndarray] = {}
        self._flat = weights.reshape(-1)

    def _cdf(self, cameras: np.ndarray) -> np.ndarray:
        key = tuple(int(c) for c in cameras)
        if key not in self._cdfs:
            self._cdfs[key] = np.cumsum(self.row_mass[list(key)].ravel())
        return self._cdfs[key]

    def probability(self, cameras: np.ndarray) -> np.ndarray:
        """Dense per-pixel probabilities (len(cameras), F, H, W) float64; for tests and plots."""
        cameras = np.asarray(cameras, np.int64)
        total = self._cdf(cameras)[-1]
        ys = np.minimum(np.arange(self.height) // self.factor, len(self.row_h) - 1)
        xs = np.minimum(np.arange(self.width) // self.factor, len(self.col_w) - 1)
        w = np.asarray(self.weights, np.float64)[cameras][:, :, ys][:, :, :, xs]
        return w / total

    def sample(self, rng: np.random.Generator, n: int, cameras: np.ndarray
               ) -> tuple[np.ndarray, ...] | None:
        """``n`` pixels of the given cameras; None when their weights are all zero.

        Returns:
            cam, frame, x, y: (n,) int64 arrays.
        """
        cameras = np.asarray(cameras, np.int64)
        cdf = self._cdf(cameras)
        total = cdf[-1]
        if not total > 0:
            return None
        _, nf, hc, wc = self.weights.shape
        # Sorted targets: the batch comes out ordered by (camera, frame, row), which makes the
        # searches and memmap reads local; the order of rays within a batch carries no meaning.
        idx = np.searchsorted(cdf, np.sort(rng.random(n)) * total, side="right")
        idx = np.minimum(idx, len(cdf) - 1)
        ci, rest = np.divmod(idx, nf * hc)
        frame, yc = np.divmod(rest, hc)
        cam = cameras[ci]
        gi = _choose(rng, self.group_mass[cam, frame, yc].astype(np.float64))
        cols = gi[:, None] * self.group + np.arange(self.group)  # (n, group)
        inside = cols < wc
        cols = np.minimum(cols, wc - 1)
        row_start = ((cam * nf + frame) * hc + yc) * wc
        w = self._flat[row_start[:, None] + cols].astype(np.float64)
        xc = cols[np.arange(n), _choose(rng, w * self.col_w[cols] * inside)]
        y = yc * self.factor + (rng.random(n) * self.row_h[yc]).astype(np.int64)
        x = xc * self.factor + (rng.random(n) * self.col_w[xc]).astype(np.int64)
        return cam, frame, x, y


def _choose(rng: np.random.Generator, mass: np.ndarray) -> np.ndarray:
    """One column per row of ``mass`` (n, k), with probability proportional to the row's entries.

    Every row must have a positive sum. One 1-D cumulative sum over all rows and one searchsorted:
    row r's target lies between the running totals before and after row r.
    """
    n, k = mass.shape
    cum = np.cumsum(mass.ravel())
    ends = cum[k - 1::k]
    starts = np.concatenate([[0.0], ends[:-1]])
    pos = np.searchsorted(cum, starts + rng.random(n) * (ends - starts), side="right")
    return np.clip(pos - np.arange(n) * k, 0, k - 1)
