"""Write datasets in the real on-disk layouts, and create output folders safely.

* n3dv (Plenoptic Video): ``poses_bounds.npy``, N x 17 float64 in the LLFF convention: a row-major
  3 x 5 matrix whose columns are [down, right, back, translation, (H, W, focal)], then the near
  and far depth bounds; row k belongs to the k-th video in sorted name order.
* blender: ``transforms.json`` with ``camera_angle_x``, ``width``, ``height`` and one ``frames``
  entry per camera (sorted video order) holding the 4 x 4 OpenGL camera-to-world
  ``transform_matrix`` and ``file_path`` (the video's stem).
* ``offsets_gt.json``: ground-truth time offsets (written last: its presence marks a complete
  dataset).

Output folders are built as ``OUT.partial`` and renamed onto ``OUT`` at the end, so an
interrupted run never leaves a folder that looks complete.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from taichi_syncnerf.errors import UserError
from taichi_syncnerf.io_utils import atomic_path, write_json_atomic

SCENE_TIME_CONVENTION = "frame f of camera k shows scene time (f + offsets_frames[k]) / fps seconds"
_DATASET_MARKERS = ("offsets_gt.json", "poses_bounds.npy", "transforms.json")


def camera_names(n: int) -> list[str]:
    """Video stems ``cam00 .. cam{n-1}``, zero-padded so that name order is camera order."""
    width = max(2, len(str(n - 1)))
    return [f"cam{k:0{width}d}" for k in range(n)]


def llff_rows(c2w: np.ndarray, hwf: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """LLFF ``poses_bounds`` rows.

    Args:
        c2w: (N, 4, 4) or (N, 3, 4) OpenGL camera-to-world (columns right, up, back, position).
        hwf: (N, 3) height, width, focal in pixels.
        bounds: (N, 2) near and far depth of the scene content seen by each camera.

    Returns:
        (N, 17) float64: the 3 x 5 matrix [down, right, back, translation, hwf] (row-major),
        near, far.
    """
    c2w = np.asarray(c2w, np.float64)[:, :3, :4]
    mat = np.concatenate([-c2w[:, :, 1:2], c2w[:, :, 0:1], c2w[:, :, 2:3], c2w[:, :, 3:4],
                          np.asarray(hwf, np.float64)[:, :, None]], axis=2)
    return np.concatenate([mat.reshape(-1, 15), np.asarray(bounds, np.float64)], axis=1)


def write_poses_bounds(path: str | os.PathLike, rows: np.ndarray) -> None:
    """Save (N, 17) rows as ``poses_bounds.npy`` (atomically)."""
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(rows, np.float64))


def write_transforms(path: str | os.PathLike, c2w: np.ndarray, width: int, height: int,
                     focal: float, names: list[str]) -> None:
    """Write a Blender-style ``transforms.json``. c2w: (N, 4, 4) OpenGL; names: N video stems."""
    doc = {
        "camera_angle_x": float(2.0 * np.arctan(0.5 * width / focal)),
        "width": int(width),
        "height": int(height),
        "frames": [{"file_path": name, "transform_matrix": np.asarray(m, float).tolist()}
                   for name, m in zip(names, c2w)],
    }
    write_json_atomic(path, doc)


def write_rgba_png(path: str | os.PathLike, rgba: np.ndarray) -> None:
    """Write an (H, W, 4) uint8 RGBA image (straight alpha) as PNG."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)):
        raise OSError(f"{path}: could not write PNG")


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded, clipped)."""
    return np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


def looks_like_dataset(folder: Path) -> bool:
    return any((folder / m).exists() for m in _DATASET_MARKERS) or any(folder.glob("*.mp4"))


def begin_output(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that ``out`` may be written and return the staging folder ``OUT.partial``.

    ``out`` must not exist, or be an empty folder, or (with ``overwrite``) be an existing dataset
    folder. Raises UserError otherwise. A stale staging folder from an interrupted run is removed.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out}: exists and is not a folder")
        if any(out.iterdir()):
            if not overwrite:
                raise UserError(f"{out}: folder exists and is not empty"
                                " (use --force to replace it)")
            if not looks_like_dataset(out):
                raise UserError(f"{out}: refusing to replace a non-empty folder that does not look"
                                " like a dataset")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def finish_output(staging: Path, out: str | os.PathLike) -> Path:
    """Move the completed staging folder onto ``out`` (replacing what ``begin_output`` allowed)."""
    out = Path(out)
    old = None
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old)
    return out


def abort_output(staging: Path) -> None:
    """Remove a staging folder after a failure."""
    shutil.rmtree(staging, ignore_errors=True)
