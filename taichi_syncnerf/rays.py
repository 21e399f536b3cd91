"""Rays for training and evaluation, drawn from a dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from taichi_syncnerf.data.dataset import Dataset, load_dataset
from taichi_syncnerf.errors import UserError


class RaySource:
    """A dataset seen as rays: batches for training, whole images for evaluation."""

    def __init__(self, dataset: Dataset):
        self.ds = dataset
        self.n_cameras = dataset.n_cameras
        self.n_frames = dataset.n_frames
        self.test_index = dataset.test_index
        self.train_indices = np.asarray(dataset.train_indices)
        self.ndc = dataset.ndc
        self.near, self.far = float(dataset.near), float(dataset.far)
        self.bbox = np.asarray(dataset.bbox, np.float64)
        self.background = np.asarray(dataset.background, np.float64)
        self.camera_names = list(dataset.camera_names)
        self.fps = float(dataset.fps)
        self.width, self.height = int(dataset.width), int(dataset.height)
        self.offsets_gt = dataset.offsets_gt_frames

    @classmethod
    def open(cls, data_dir, cfg: dict, progress: bool = True) -> "RaySource":
        d = cfg["data"]
        if data_dir is None:
            raise UserError("no dataset: give --data DIR or set data.path in the config")
        ds = load_dataset(Path(data_dir), downsample=int(d["downsample"]), max_frames=d["max_frames"],
                          test_camera=d["test_camera"], background=d["background"], progress=progress,
                          short_cameras=d.get("short_cameras", "drop"))
        ds.ensure_cache(progress=progress)
        return cls(ds)

    def sample_batch(self, rng: np.random.Generator, n: int, mode: str, cameras=None, floor: float = 0.0) -> dict:
        """``n`` training rays: ``mode`` "uniform", "isg" or "ist"; a weighted batch draws a
        ``floor`` share of its rays uniformly (see :meth:`Dataset.sample_batch`)."""
        weights = None if mode == "uniform" else mode
        b = self.ds.sample_batch(rng, n, cameras=cameras, weights=weights, dtype=np.float64, floor=floor)
        o, d = self.ds.rays(b.cam, b.x, b.y)
        return {"origins": o, "dirs": d, "view_dirs": d, "times": np.asarray(b.t, np.float64),
                "cams": np.asarray(b.cam, np.int32), "rgb": b.rgb, "frames": b.frame}

    def view(self, cam: int, frame: float, c2w=None):
        """The :class:`~taichi_syncnerf.models.base.View` of camera ``cam`` at (cache-local, possibly
        fractional) ``frame``, from its own pose or from ``c2w`` (3, 4) with its intrinsics; its rays
        are :meth:`image_rays` / :meth:`pixel_rays`' (the dataset's, NDC when the scene is)."""
        from taichi_syncnerf.models.base import View

        pose = self.ds.c2w[cam] if c2w is None else np.asarray(c2w, np.float64)[:3, :4]

        def make_rays(x=None, y=None):
            if x is None:
                rays = self.image_rays(cam, frame, c2w)
            elif c2w is None:
                rays = self._rays_of(cam, frame, *self.ds.rays(cam, x, y))
            else:
                keep = np.asarray(y, np.int64) * self.width + np.asarray(x, np.int64)
                rays = {k: v[keep] for k, v in self.image_rays(cam, frame, c2w).items()}
            return rays, np.ones(len(rays["times"]), bool)

        return View(self.ds.intrinsics[cam], np.array(pose), float(self.ds.time_of_frame(frame)), int(cam),
                    make_rays)

    def pose_view(self, c2w, intrinsics, scene_frame: float, ref_cam: int, offsets_frames):
        """The :class:`~taichi_syncnerf.models.base.View` of a free camera (``c2w`` (3, 4) in the
        dataset's world, ``intrinsics`` of any size) at scene time ``scene_frame`` (frames of the
        scene clock), carried on camera ``ref_cam``'s clock (its frame ``scene_frame -
        offsets_frames[ref_cam]``); its rays are :func:`taichi_syncnerf.viewer.camera.view_rays`'."""
        from taichi_syncnerf.models.base import View

        c2w = np.asarray(c2w, np.float64)[:3, :4]
        frame = float(scene_frame) - float(offsets_frames[ref_cam])

        def make_rays(x=None, y=None):
            from taichi_syncnerf.viewer.camera import view_rays

            rays, valid = view_rays(self, c2w, intrinsics, scene_frame, ref_cam, offsets_frames)
            if x is not None:
                keep = np.asarray(y, np.int64) * int(intrinsics.width) + np.asarray(x, np.int64)
                rays, valid = {k: v[keep] for k, v in rays.items()}, valid[keep]
            return rays, valid

        return View(intrinsics, c2w.copy(), float(self.ds.time_of_frame(frame)), int(ref_cam), make_rays)

    def _rays_of(self, cam: int, frame, o, d) -> dict:
        n = len(o)
        return {"origins": o, "dirs": d, "view_dirs": d, "times": np.full(n, float(self.ds.time_of_frame(frame))),
                "cams": np.full(n, cam, np.int32)}

    def image_rays(self, cam: int, frame: int, c2w=None) -> dict:
        """Every pixel of one frame of camera ``cam`` (row-major), optionally from another pose."""
        if c2w is None:
            o, d = self.ds.camera_rays(cam)
        else:
            o, d = self.pose_rays(cam, c2w)
        n = len(o)
        return {"origins": o, "dirs": d, "view_dirs": d,
                "times": np.full(n, float(self.ds.time_of_frame(frame))),
                "cams": np.full(n, cam, np.int32)}

    def pixel_rays(self, cam: int, frame: int, x, y) -> dict:
        """Rays and colours of pixels ``(x, y)`` ((N,) arrays) of one frame of camera ``cam``."""
        x, y = np.asarray(x, np.int64), np.asarray(y, np.int64)
        o, d = self.ds.rays(cam, x, y)
        n = len(o)
        return {"origins": o, "dirs": d, "view_dirs": d,
                "times": np.full(n, float(self.ds.time_of_frame(frame))),
                "cams": np.full(n, cam, np.int32),
                "rgb": self.pixel_colours(cam, frame, x, y)}

    def pixel_colours(self, cam: int, frame: int, x, y) -> np.ndarray:
        """(N, 3) recorded colours in [0, 1] of pixels ``(x, y)`` of one frame of camera ``cam``."""
        n = len(x)
        return self.ds.gather_rgb(np.full(n, cam), np.full(n, frame), np.asarray(x, np.int64),
                                  np.asarray(y, np.int64), dtype=np.float64)

    def median_image(self, cam: int, rows_per_chunk: int = 64) -> np.ndarray:
        """Per-pixel temporal median of camera ``cam``'s video over all its frames, (H, W, 3) in [0, 1].

        The trivial answer a model must beat: what the camera shows when motion is ignored.
        Read in bands of rows so a long, large video is never held in memory at once.
        """
        frames = self.ds.frames[cam]                           # (F, H, W, 3) uint8 memmap
        out = np.empty((self.height, self.width, 3))
        for a in range(0, self.height, rows_per_chunk):
            b = min(self.height, a + rows_per_chunk)
            out[a:b] = np.median(np.asarray(frames[:, a:b]), axis=0) / 255.0
        return out

    def pose_rays(self, cam: int, c2w) -> tuple[np.ndarray, np.ndarray]:
        """Every pixel's ray for camera ``cam``'s intrinsics placed at pose ``c2w`` (3, 4)."""
        from taichi_syncnerf.data.cameras import generate_rays, ndc_rays, pixel_grid
        from taichi_syncnerf.data.dataset import NDC_NEAR_PLANE

        intr = self.ds.intrinsics[cam]
        x, y = pixel_grid(self.width, self.height)
        o, d = generate_rays(intr, np.asarray(c2w, np.float64)[:3, :4], x, y, normalize=not self.ndc)
        if self.ndc:
            o, d = ndc_rays(intr, NDC_NEAR_PLANE, o, d)
        return o, d

    def image(self, cam: int, frame: int) -> np.ndarray:
        return self.ds.image(cam, frame, dtype=np.float64)
