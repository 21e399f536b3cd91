"""Training batches: the samplers a model family draws its batches from.

Each model family names its sampler in :mod:`taichi_syncnerf.models.registry`; the training loop
and test-time optimisation ask it for one batch per step with :meth:`sample`:

* ``pixels`` (:class:`PixelRays`): rays of single pixels of single frames, drawn uniformly and,
  on the ISG/IST schedule of the config's ``sampling`` section, by importance weights with a
  uniform ``floor`` share (Sync-K-Planes);
* ``pixel-videos`` (:class:`PixelVideos`): pixels drawn uniformly, each with its colour in every
  frame, temporal mean and blurred temporal deviation (Sync-MixVoxels' rays x all frames);
* ``images`` (:class:`Images`): whole training images, or random crops of them (Sync-4DGS).

``sample(rng, n, step, cameras=None, uniform=False)`` returns a dict whose ``"sampling"`` names
how its rays were drawn (``uniform``, ``isg`` or ``ist``); ``cameras`` restricts the batch to some
cameras (default: the training cameras) and ``uniform`` turns importance sampling off (test-time
optimisation). The pixel selection itself lives in :mod:`taichi_syncnerf.data.sampling`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingSchedule:
    """Which ray-importance weights to sample with at a step: uniform, ISG, then IST."""

    isg_step: int | None
    ist_step: int | None

    def __call__(self, step: int) -> str:
        if self.ist_step is not None and step >= self.ist_step:
            return "ist"
        if self.isg_step is not None and step >= self.isg_step:
            return "isg"
        return "uniform"


class PixelRays:
    """Single-frame pixel rays on the ISG/IST schedule (config section ``sampling``)."""

    name = "pixels"
    description = "rays of single pixels of single frames (ISG/IST importance sampling)"

    def __init__(self, source, cfg: dict):
        s = cfg["sampling"]
        self.source = source
        self.schedule = SamplingSchedule(s["isg_step"], s["ist_step"])
        self.floor = float(s["floor"])

    def sample(self, rng: np.random.Generator, n: int, step: int, cameras=None, uniform: bool = False) -> dict:
        mode = "uniform" if uniform else self.schedule(step)
        extra = {} if uniform else {"floor": self.floor}
        b = self.source.sample_batch(rng, n, mode, cameras=cameras, **extra)
        b["sampling"] = mode
        return b


class PixelVideos:
    """Rays x all frames: pixels ``(camera, x, y)`` drawn uniformly from the given cameras, sorted by
    camera (the all-frames head's table gradient is a reduction over each camera's samples). Each
    ray carries its pixel's temporal mean colour (``mean_rgb``), its blurred temporal standard
    deviation (``std``, from the dataset's std maps) and ``all_frames(idx)``, which fetches the
    colours of rays ``idx`` in every frame (only the rays a model routes to its dynamic branch)."""

    name = "pixel-videos"
    description = "pixels with their colour in every frame (uniform)"

    def __init__(self, source, cfg: dict):
        self.source = source
        self.ds = source.ds
        self._mean = None

    @property
    def mean_colour(self) -> np.ndarray:
        """(C, H, W, 3) float32 temporal mean colour in [0, 1]: a read-only memmap of the statistic
        cached beside the frame cache (:func:`taichi_syncnerf.data.preprocess.mean_colour`, computed
        one frame at a time on first use), so neither the frames nor the means take process memory."""
        if self._mean is None:
            from taichi_syncnerf.data import preprocess

            self._mean = preprocess.load_or_compute(self.ds.ensure_cache(), "mean", self.ds.downsample)
        return self._mean

    def sample(self, rng: np.random.Generator, n: int, step: int, cameras=None, uniform: bool = True) -> dict:
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
                "mean_rgb": self.mean_colour[cam, y, x], "std": std, "all_frames": all_frames,
                "sampling": "uniform"}


class Images:
    """Whole training images: ``gaussians.batch_images`` (camera, frame) pairs drawn uniformly, each
    optionally cut to a random ``gaussians.crop`` window (a crop is another camera: the principal
    point moves, the size shrinks). ``n`` is not used: an image family's batch is counted in images.
    A view is a dict: ``cam``, ``frame``, ``time`` (normalised, :mod:`taichi_syncnerf.timeline`),
    ``intrinsics``, ``c2w`` (3, 4) OpenGL in the dataset's world (never NDC), ``rgb`` (h, w, 3)
    float32 in [0, 1]."""

    name = "images"
    description = "whole images (camera and frame), optionally a random crop"

    def __init__(self, source, cfg: dict):
        self.source = source
        self.ds = source.ds
        g = cfg["gaussians"]
        self.count = int(g["batch_images"])
        self.crop = None if g["crop"] is None else (int(g["crop"][0]), int(g["crop"][1]))

    def sample(self, rng: np.random.Generator, n: int, step: int, cameras=None, uniform: bool = True) -> dict:
        from dataclasses import replace

        cams = self.source.train_indices if cameras is None else np.asarray(cameras, np.int64).ravel()
        W, H = self.source.width, self.source.height
        views = []
        for _ in range(self.count):
            cam, frame = int(cams[rng.integers(0, len(cams))]), int(rng.integers(0, self.source.n_frames))
            intr, x0, y0, w, h = self.ds.intrinsics[cam], 0, 0, W, H
            if self.crop is not None and (self.crop[0] < W or self.crop[1] < H):
                w, h = min(self.crop[0], W), min(self.crop[1], H)
                x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
                intr = replace(intr, cx=intr.cx - x0, cy=intr.cy - y0, width=w, height=h)
            rgb = np.asarray(self.ds.frames[cam, frame, y0:y0 + h, x0:x0 + w], np.float32) / 255.0
            views.append({"cam": cam, "frame": frame, "time": float(self.ds.time_of_frame(frame)),
                          "intrinsics": intr, "c2w": np.asarray(self.ds.c2w[cam], np.float64), "rgb": rgb})
        return {"views": views, "sampling": "uniform"}


SAMPLERS = {cls.name: cls for cls in (PixelRays, PixelVideos, Images)}


def make_sampler(name: str, source, cfg: dict):
    """The sampler ``name`` (a key of :data:`SAMPLERS`) over the dataset ``source``."""
    return SAMPLERS[name](source, cfg)
