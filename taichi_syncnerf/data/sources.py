"""Per-camera frame sources (a video file or a folder of PNG frames): listing, probing, streaming.

Frames are streamed one at a time (:func:`iter_frames`): a whole video is never held in memory.
Unreadable and truncated files raise :class:`DataError` naming the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from taichi_syncnerf.errors import DataError

Probe = Callable[[Path], tuple]


@dataclass(frozen=True)
class CameraSource:
    """One camera's frames: ``kind`` "video" (``path`` is the file) or "png" (``path`` the folder)."""

    name: str
    kind: str
    path: Path
    n_frames: int
    width: int
    height: int
    fps: float | None
    files: tuple[Path, ...] = ()

    def fingerprint(self) -> list:
        """Sizes and modification times of the source files (changes when a file is rewritten)."""
        if self.kind == "video":
            st = self.path.stat()
            return [self.path.name, st.st_size, st.st_mtime_ns]
        sizes, mtimes = 0, 0
        for f in self.files:
            st = f.stat()
            sizes += st.st_size
            mtimes = max(mtimes, st.st_mtime_ns)
        return [self.path.name, len(self.files), sizes, mtimes]


def default_probe(path: Path) -> tuple[int, int, int, float]:
    """``(n_frames, height, width, fps)`` of a video; DataError naming the file when unreadable."""
    from taichi_syncnerf.data.video import probe_video

    n, h, w, fps = probe_video(path)
    return int(n), int(h), int(w), float(fps)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines or [type(e).__name__])[0][:200]


def video_files(root: Path) -> list[Path]:
    """All ``*.mp4`` files directly in ``root`` (hidden ones excluded), sorted by name."""
    return sorted(p for p in root.glob("*.mp4") if not p.name.startswith("."))


def video_sources(paths: list[Path], probe: Probe | None = None) -> list[CameraSource]:
    """Probe each video (``probe``: ``path -> (n_frames, height, width, fps)``)."""
    probe = probe or default_probe
    out = []
    for p in paths:
        n, h, w, fps = probe(p)
        out.append(CameraSource(p.stem, "video", p, n, w, h, fps))
    return out


def list_png_sources(png_root: Path) -> list[CameraSource]:
    """One source per sub-folder of ``png_root`` (sorted), frames = its sorted ``*.png`` files."""
    from PIL import Image

    out = []
    if not png_root.is_dir():
        return out
    for d in sorted(p for p in png_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = tuple(sorted(d.glob("*.png")))
        if not files:
            raise DataError(f"{d}: no PNG frames in this camera folder")
        try:
            with Image.open(files[0]) as im:
                w, h = im.size
        except Exception as e:
            raise DataError(f"{files[0]}: unreadable image ({e})") from None
        out.append(CameraSource(d.name, "png", d, len(files), w, h, None, files))
    return out


def iter_frames(cam: CameraSource, start: int, stop: int, downsample: int = 1,
                background=(1.0, 1.0, 1.0)) -> Iterator[np.ndarray]:
    """Yield frames ``start .. stop-1`` of one camera as (H', W', 3) uint8, one at a time.

    Args:
        cam: the source. start, stop: frame range (``stop <= cam.n_frames``).
        downsample: integer factor; frames are area-averaged to ``W // d`` x ``H // d``.
        background: (3,) RGB in [0, 1] that RGBA PNG frames are composited on.
    """
    if cam.kind == "video":
        from taichi_syncnerf.data.video import iter_video

        for i, frame in enumerate(iter_video(cam.path, max_frames=stop, downsample=downsample)):
            if i >= start:
                yield frame
        return
    size = (cam.width // downsample, cam.height // downsample)
    for frame in _iter_png(cam, start, stop, background):
        if frame.shape[:2] != (cam.height, cam.width):
            raise DataError(f"{cam.path}: a frame is {frame.shape[1]}x{frame.shape[0]}, the first one "
                            f"{cam.width}x{cam.height}")
        yield frame if downsample == 1 else _resize(frame, size)


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _iter_png(cam: CameraSource, start: int, stop: int, background) -> Iterator[np.ndarray]:
    import imageio.v3 as iio

    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3) * 255.0
    for f in cam.files[start:stop]:
        try:
            img = iio.imread(f)
        except Exception as e:
            msg = _first_line(e)
            if str(f) in msg or "backend" in msg:
                msg = "not a valid image file"
            raise DataError(f"{f}: unreadable image ({msg})") from None
        yield composite(img, bg, f)


def composite(img: np.ndarray, bg255: np.ndarray, path: os.PathLike | str = "image") -> np.ndarray:
    """Any PNG pixel layout (gray, gray+alpha, RGB, RGBA; 8 or 16 bit) -> (H, W, 3) uint8 on ``bg``.

    Args:
        img: (H, W) or (H, W, C) with C in 1..4. bg255: (1, 1, 3) background in 0..255.
    """
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise DataError(f"{path}: unsupported image shape {img.shape}")
    scale = 255.0 / 65535.0 if img.dtype == np.uint16 else 1.0
    x = img.astype(np.float32) * scale
    c = x.shape[2]
    rgb = x[:, :, :1].repeat(3, axis=2) if c in (1, 2) else x[:, :, :3]
    if c in (2, 4):
        a = x[:, :, -1:] / 255.0
        rgb = rgb * a + bg255 * (1.0 - a)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
