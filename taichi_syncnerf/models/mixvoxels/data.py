"""Training batches of Sync-MixVoxels: rays x all frames.

A batch is a set of pixels ``(camera, x, y)`` drawn uniformly from the given cameras, sorted by
camera (the all-frames head's table gradient is a reduction over each camera's samples). Each
ray carries its pixel's temporal mean colour (target of the static branch), its blurred temporal
standard deviation (the variation field's label, from the dataset's std maps) and, fetched only
for the rays the model routes to its dynamic branch, the pixel's colour in every frame.
"""
from __future__ import annotations

import numpy as np


class AllFramesData:
    """Per-dataset statistics used by the batches (computed once, lazily)."""

    def __init__(self, source):
        self.source = source
        self.ds = source.ds
        self._mean = None

    @property
    def mean_colour(self) -> np.ndarray:
        """(C, H, W, 3) float32 temporal mean colour in [0, 1]."""
        if self._mean is None:
            frames = self.ds.frames
            self._mean = np.stack([np.asarray(frames[c], np.float32).mean(axis=0) / 255.0
                                   for c in range(frames.shape[0])])
        return self._mean

    def sample(self, rng: np.random.Generator, n: int, cameras=None) -> dict:
        cams = self.source.train_indices if cameras is None else np.asarray(cameras, np.int64).ravel()
        cam = np.sort(cams[rng.integers(0, len(cams), n)])
        x = rng.integers(0, self.source.width, n)
        y = rng.integers(0, self.source.height, n)
        origins, dirs = self.ds.rays(cam, x, y)
        std = np.asarray(self.ds.std_maps())[cam, y, x]
        frames = self.ds.frames

        def all_frames(idx):
            idx = np.asarray(idx, np.int64)
            return np.asarray(frames[cam[idx], :, y[idx], x[idx]], np.float32) / 255.0  # (k, F, 3)

        return {"origins": origins, "dirs": dirs, "cams": cam.astype(np.int32), "x": x, "y": y,
                "mean_rgb": self.mean_colour[cam, y, x], "std": std, "all_frames": all_frames}
