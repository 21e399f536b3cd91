"""The dataset a training run reads: cameras, poses, times and frames (through the uint8 cache).

Example:
    >>> ds = load_dataset("scene/", downsample=2)            # doctest: +SKIP
    >>> batch = ds.sample_batch(np.random.default_rng(0), 4096, weights="isg")
    >>> origins, dirs = ds.rays(batch.cam, batch.x, batch.y)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taichi_syncnerf.data import cache as cache_mod
from taichi_syncnerf.data import llff, preprocess
from taichi_syncnerf.data.cameras import Intrinsics, generate_rays, ndc_rays, orbit_path, pixel_grid
from taichi_syncnerf.data.loaders import (SceneSource, read_offsets_gt, read_offsets_init, resolve_camera,
                                          scan_scene)
from taichi_syncnerf.data.sampling import ImportanceSampler, uniform_pixels
from taichi_syncnerf import timeline
from taichi_syncnerf.errors import DataError, UserError

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
NDC_NEAR_PLANE = 1.0


@dataclass
class RayBatch:
    """A training batch. cam, frame, x, y: (N,) int64; rgb: (N, 3) float in [0, 1]; t: (N,) float."""

    cam: np.ndarray
    frame: np.ndarray
    x: np.ndarray
    y: np.ndarray
    rgb: np.ndarray
    t: np.ndarray


class Dataset:
    """A loaded dataset at training resolution (built by :func:`load_dataset`).

    Attributes:
        root, layout ("n3dv" | "blender"), camera_names (list of C str), intrinsics (C Intrinsics at
        training resolution), c2w ((C, 3, 4) float64), n_frames, width, height, fps, near, far, ndc,
        bbox ((2, 3)), test_index, train_indices ((C-1,) int64), background ((3,) float64),
        downsample, frame_start (first source frame used), offsets_gt_frames ((C,) or None),
        offsets_init_frames ((C,) coarse estimate from offsets_init.json, or None),
        cache_path (manifest path), cache (FrameCache or None until built).
    """

    def __init__(self, scene: SceneSource, downsample: int, frame_start: int, n_frames: int,
                 test_index: int, background: np.ndarray, cache_dir: Path):
        self.scene = scene
        self.root, self.layout = scene.root, scene.layout
        self.camera_names = [c.name for c in scene.cameras]
        self.downsample, self.frame_start, self.n_frames = downsample, frame_start, n_frames
        self.width, self.height = scene.width // downsample, scene.height // downsample
        self.intrinsics: list[Intrinsics] = [k.resized(self.width, self.height)
                                             for k in scene.intrinsics]
        self.c2w, self.fps, self.ndc = scene.c2w, scene.fps, scene.ndc
        self.near, self.far, self.bbox = scene.near, scene.far, scene.bbox
        self.test_index = test_index
        self.train_indices = np.array([i for i in range(len(self.camera_names)) if i != test_index],
                                      np.int64)
        self.background = np.asarray(background, np.float64)
        names = scene.all_names or self.camera_names
        self.offsets_gt_frames = read_offsets_gt(scene.root / "offsets_gt.json", names, self.camera_names)
        self.offsets_init_frames = read_offsets_init(scene.root / "offsets_init.json", names, self.camera_names,
                                                     max_spread=max(c.n_frames for c in scene.cameras))
        png = scene.cameras[0].kind == "png"
        key = cache_mod.cache_key(downsample, frame_start, frame_start + n_frames, background, png)
        self.cache_path = Path(cache_dir) / f"frames_{key}.json"
        self._expect = {"layout": self.layout, "downsample": downsample, "frame_start": frame_start,
                        "frame_stop": frame_start + n_frames, "source": scene.cameras[0].kind}
        if png:  # video frames are already composited: the background does not change them
            self._expect["background"] = [float(c) for c in background]
        self._fingerprint = cache_mod.source_fingerprint(scene)
        self.cache = cache_mod.open_cache(self.cache_path, self._fingerprint, self._expect)
        self._samplers: dict[str, ImportanceSampler] = {}

    # ----- metadata
    @property
    def n_cameras(self) -> int:
        return len(self.camera_names)

    @property
    def test_camera(self) -> str:
        return self.camera_names[self.test_index]

    def time_of_frame(self, f):
        """Normalised time of (cache-local) frame ``f`` (:func:`taichi_syncnerf.timeline.frame_time`)."""
        return timeline.frame_time(f, self.n_frames)

    def offsets_gt_normalised(self) -> np.ndarray | None:
        """Ground-truth offsets in normalised time units (:mod:`taichi_syncnerf.timeline`)."""
        if self.offsets_gt_frames is None:
            return None
        return timeline.frames_to_normalised(self.offsets_gt_frames, self.n_frames)

    # ----- frames
    def ensure_cache(self, progress: bool = False) -> cache_mod.FrameCache:
        """Build the frame cache if it is missing or stale; return it."""
        if self.cache is None:
            self.cache = cache_mod.build_cache(
                self.scene, self.cache_path, self._fingerprint, self._expect, self.downsample,
                self.frame_start, self.frame_start + self.n_frames, self.background, progress)
        return self.cache

    @property
    def frames(self) -> np.ndarray:
        """All frames, a read-only memmap (C, F, H, W, 3) uint8 (builds the cache if needed)."""
        return self.ensure_cache().frames

    def image(self, cam: int, frame: int, dtype=np.float32) -> np.ndarray:
        """One full frame as (H, W, 3) floats in [0, 1]."""
        return np.asarray(self.frames[cam, frame], dtype) / 255.0

    def gather_rgb(self, cam, frame, x, y, dtype=np.float32) -> np.ndarray:
        """(N, 3) colours in [0, 1] of pixels ``(x, y)`` of ``frame`` of ``cam`` ((N,) arrays each)."""
        return self.ensure_cache().gather(cam, frame, x, y).astype(dtype) / dtype(255.0)

    # ----- rays
    def rays(self, cam, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Rays through pixels ``(x, y)`` of cameras ``cam`` ((N,) arrays; ``cam`` may be an int).

        Returns (N, 3) float64 origins and unit directions, in NDC when ``self.ndc`` (near plane 1.0,
        the ray interval is then ``[near, far] = [0, 2.6]``), otherwise in world units.
        """
        x, y = np.asarray(x), np.asarray(y)
        cam = np.broadcast_to(np.asarray(cam, np.int64), x.shape)
        origins = np.empty((x.size, 3))
        dirs = np.empty((x.size, 3))
        for c in np.unique(cam):
            sel = np.flatnonzero(cam == c)
            o, d = generate_rays(self.intrinsics[c], self.c2w[c], x[sel], y[sel], normalize=not self.ndc)
            if self.ndc:
                o, d = ndc_rays(self.intrinsics[c], NDC_NEAR_PLANE, o, d)
            origins[sel], dirs[sel] = o, d
        return origins, dirs

    def camera_rays(self, cam: int) -> tuple[np.ndarray, np.ndarray]:
        """All rays of one camera in row-major pixel order: (H*W, 3) origins and directions."""
        x, y = pixel_grid(self.width, self.height)
        return self.rays(cam, x, y)

    def render_path(self, n_frames: int = 120) -> np.ndarray:
        """(n_frames, 3, 4) poses for a novel-view video: LLFF spiral (n3dv) or orbit (blender)."""
        if self.layout == "n3dv":
            return llff.spiral_path(self.c2w, self.scene.bounds, n_frames=n_frames,
                                    dt=llff.DEFAULT_NEAR_SCALING, percentile=60)
        return orbit_path(self.c2w, n_frames)

    # ----- sampling
    def sampler(self, kind: str, progress: bool = False) -> ImportanceSampler:
        """The ISG ("isg") or IST ("ist") importance sampler (weights computed once and cached)."""
        if kind not in self._samplers:
            w = preprocess.load_or_compute(self.ensure_cache(), kind, self.downsample, progress=progress)
            self._samplers[kind] = ImportanceSampler(w, self.height, self.width,
                                                     preprocess.coarse_factor(self.downsample))
        return self._samplers[kind]

    def std_maps(self, progress: bool = False) -> np.ndarray:
        """MixVoxels per-pixel temporal std maps, (C, H, W) float32 memmap."""
        return preprocess.load_or_compute(self.ensure_cache(), "std", self.downsample, progress=progress)

    def sample_batch(self, rng: np.random.Generator, n_rays: int, cameras=None, weights=None,
                     dtype=np.float32, floor: float = 0.0) -> RayBatch:
        """Random pixels with their colours and times.

        Args:
            rng: numpy Generator. n_rays: batch size.
            cameras: camera indices to draw from (default: the training cameras).
            weights: None (uniform over all pixels of all frames), "isg", "ist", or an
                :class:`ImportanceSampler`. All-zero weights fall back to uniform.
            floor: uniform share of a weighted batch, in [0, 1]: each ray is drawn uniformly
                with probability ``floor``, else from the weights, so every pixel of every
                frame has probability at least ``floor / (pixels of the cameras' videos)``.
        """
        cams = self.train_indices if cameras is None else np.asarray(cameras, np.int64).ravel()
        if cams.size == 0:
            raise ValueError("no cameras to sample from")
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {floor}")
        picked = None
        if weights is not None:
            sampler = weights if isinstance(weights, ImportanceSampler) else self.sampler(weights)
            n_uniform = int(rng.binomial(n_rays, floor)) if floor > 0 else 0
            weighted = sampler.sample(rng, n_rays - n_uniform, cams) if n_uniform < n_rays else None
            if weighted is not None and n_uniform > 0:
                uni = uniform_pixels(rng, n_uniform, cams, self.n_frames, self.height, self.width)
                picked = tuple(np.concatenate([a, b]) for a, b in zip(weighted, uni))
            else:
                picked = weighted
        if picked is None:
            picked = uniform_pixels(rng, n_rays, cams, self.n_frames, self.height, self.width)
        cam, frame, x, y = picked
        rgb = self.gather_rgb(cam, frame, x, y, dtype)
        return RayBatch(cam, frame, x, y, rgb, self.time_of_frame(frame).astype(dtype))

    def summary(self) -> dict:
        """Plain-data description (what ``taichi-syncnerf inspect --json`` prints)."""
        built = self.cache is not None
        return {
            "root": str(self.root), "layout": self.layout, "cameras": list(self.camera_names),
            "frames": self.n_frames, "frame_start": self.frame_start, "width": self.width,
            "height": self.height, "fps": self.fps, "downsample": self.downsample,
            "near": self.near, "far": self.far, "ndc": self.ndc, "bbox": self.bbox.tolist(),
            "test_camera": self.test_camera, "background": self.background.tolist(),
            "left_out_cameras": [{"name": n, "frames": f} for n, f in self.scene.dropped],
            "source": self.scene.cameras[0].kind,
            "offsets_gt_frames": None if self.offsets_gt_frames is None
            else self.offsets_gt_frames.tolist(),
            "offsets_init_frames": None if self.offsets_init_frames is None
            else self.offsets_init_frames.tolist(),
            "cache_path": str(self.cache_path.with_suffix(".u8")), "cache_built": built,
            "cache_bytes": self.n_cameras * self.n_frames * self.height * self.width * 3,
            "intrinsics": self.intrinsics[self.test_index].to_dict(),
        }


def _resolve_test_camera(scene: SceneSource, test_camera, root: Path) -> int:
    """Index among the cameras used of the test camera (a name, or an index among all cameras found)."""
    if test_camera is None:
        return 0
    name = scene.all_names[resolve_camera(scene.all_names, test_camera, root)]
    return scene.names.index(name)


def load_dataset(root: str | Path, downsample: int = 1, frame_range=None, max_frames: int | None = None,
                 test_camera=None, background=None, source: str = "auto",
                 cache_dir: str | Path | None = None, build_cache: bool = True,
                 progress: bool = False, near_scaling: float = llff.DEFAULT_NEAR_SCALING,
                 short_cameras: str = "drop") -> Dataset:
    """Load the dataset in ``root`` (layout auto-detected) and open or build its frame cache.

    Args:
        root: dataset folder (n3dv: poses_bounds.npy + *.mp4; blender: transforms.json + videos/PNGs).
        downsample: integer factor applied to the frames (and intrinsics).
        frame_range: (start, stop) source frames, stop exclusive or None for the end.
        max_frames: keep at most this many frames (after ``frame_range``).
        test_camera: camera name ("cam00") or index; default the first camera (cam00).
        background: "white" (default) or "black" or an RGB triple in [0, 1]: what RGBA PNG frames are
            composited on and what the renderer should composite on.
        source: blender frames from "auto" (PNGs when ``frames_1/`` exists), "video" or "png".
        cache_dir: cache folder override (default: see :func:`.cache.cache_dir_for`).
        build_cache: decode the frames now if the cache is missing or stale (else lazily).
        progress: show progress bars while decoding / preprocessing.
        near_scaling: LLFF near-bound scaling (n3dv).
        short_cameras: "drop" (leave out, with a warning) or "refuse" a camera whose video is far
            shorter than the others' (:func:`.loaders.choose_cameras`); the test camera is never left out.
    Warnings:
        :class:`.loaders.DataWarning` for recoverable problems (different video lengths, a short camera
        left out, image size disagreeing with the stored intrinsics).
    """
    if int(downsample) != downsample or downsample < 1:
        raise UserError(f"downsample must be a positive integer, got {downsample}")
    downsample = int(downsample)
    root = Path(root)
    cdir = cache_mod.cache_dir_for(root, cache_dir)
    memo = cache_mod.ProbeMemo(cdir)
    scene = scan_scene(root, source=source, probe=memo, near_scaling=near_scaling, short_cameras=short_cameras,
                       test_camera=test_camera)
    memo.save()
    if scene.width // downsample < 1 or scene.height // downsample < 1:
        raise UserError(f"downsample {downsample} is too large for {scene.width}x{scene.height} frames")
    start, stop = (0, None) if frame_range is None else frame_range
    stop = scene.n_frames if stop is None else min(int(stop), scene.n_frames)
    start = int(start)
    if max_frames is not None:
        if max_frames < 1:
            raise UserError(f"max_frames must be at least 1, got {max_frames}")
        stop = min(stop, start + int(max_frames))
    if not 0 <= start < stop:
        raise DataError(f"{root}: frame range {start}..{stop} selects no frames "
                        f"(the videos have {scene.n_frames})")
    if isinstance(background, str) or background is None:
        key = background or "white"
        if key not in BACKGROUNDS:
            raise UserError(f"background must be 'white' or 'black', got {background!r}")
        bg = np.array(BACKGROUNDS[key])
    else:
        bg = np.asarray(background, np.float64).reshape(3)
    test_index = _resolve_test_camera(scene, test_camera, root)
    ds = Dataset(scene, downsample, start, stop - start, test_index, bg, cdir)
    if build_cache:
        ds.ensure_cache(progress=progress)
    return ds
