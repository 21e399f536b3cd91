"""Write what ``prepare`` found in the Plenoptic layout ``train`` reads.

- ``poses_bounds.npy``: one LLFF row per camera in camera order (columns down, right, back,
  centre, (H, W, focal); then near and far from the depths of the sparse points it sees);
- ``camXX.mp4``: the kept frames of each camera;
- ``offsets_init.json``: the coarse offsets of the kept videos (frames, relative to cam00), which
  ``train`` starts from (``offsets.init_from_dataset``);
- ``prepare.json``: which input file became which camera, registered or not and why,
  reprojection error, points per camera, the synchronisation and the frames kept;
- ``points3d.npy``: the reconstruction's sparse points, (N, 6) float32 (x, y, z in the world of the
  poses, then RGB in [0, 1]), where Sync-4DGS starts its Gaussians (``gaussians.init_from_dataset``).

Every file is written atomically.
"""
from __future__ import annotations

import numpy as np

from taichi_syncnerf.io_utils import atomic_path, write_json_atomic

OFFSETS_INIT = "offsets_init.json"
PREPARE_JSON = "prepare.json"
POINTS3D = "points3d.npy"           # taichi_syncnerf/models/gaussians/points.py reads it
NEAR_PERCENTILE, FAR_PERCENTILE = 0.1, 99.9
NEAR_MARGIN, FAR_MARGIN = 0.8, 1.2


def camera_names(n: int) -> list[str]:
    return [f"cam{k:02d}" for k in range(n)]


def llff_row(c2w_cv: np.ndarray, height: int, width: int, focal: float, depths: np.ndarray
             ) -> np.ndarray:
    """One ``poses_bounds.npy`` row from an OpenCV camera-to-world (3, 4) and point depths.

    Near/far are the 0.1 and 99.9 percentiles of the positive depths, widened by 20 % (moving
    objects may come closer than the static points that were reconstructed).
    """
    c2w_cv = np.asarray(c2w_cv, np.float64)
    mat = np.stack([c2w_cv[:, 1], c2w_cv[:, 0], -c2w_cv[:, 2], c2w_cv[:, 3],
                    [float(height), float(width), float(focal)]], axis=1)
    d = np.asarray(depths, np.float64)
    d = d[d > 0]
    near = float(np.percentile(d, NEAR_PERCENTILE)) * NEAR_MARGIN
    far = float(np.percentile(d, FAR_PERCENTILE)) * FAR_MARGIN
    return np.concatenate([mat.reshape(-1), [near, far]])


def write_poses_bounds(path, rows: list) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.stack(rows).astype(np.float64), allow_pickle=False)


def write_offsets_init(path, names: list, offsets_frames, fps: float, method: str,
                       extra: dict | None = None) -> dict:
    """``offsets_init.json``: ``{"offsets_frames": [...], "cameras": [...], "reference", ...}``."""
    offs = np.asarray(offsets_frames, np.float64)
    doc = {"offsets_frames": [round(float(o), 4) for o in offs], "cameras": list(names),
           "reference": names[0], "fps": float(fps), "method": method,
           "convention": "frame f of camera k shows scene time f + offsets_frames[k]"}
    doc.update(extra or {})
    write_json_atomic(path, doc)
    return doc


def write_prepare_json(path, doc: dict) -> None:
    write_json_atomic(path, doc)
