"""LLFF pose processing for forward-facing captures (``poses_bounds.npy``, Plenoptic Video / N3DV).

``poses_bounds.npy`` holds one row of 17 numbers per camera: a row-major 3x5 matrix whose columns are
the camera's down, right and back axes, its centre, and ``(H, W, focal)``; then the near and far scene
depths. :func:`load_poses_bounds` turns it into OpenGL camera-to-world matrices the way LLFF, NeRF and
K-Planes do:

1. axis swap ``[down, right, back] -> [right, up, back]``;
2. recentring: every pose is expressed in the frame of the average pose (:func:`average_pose`), so the
   rig looks down ``-z`` as NDC requires;
3. scaling: positions and bounds are divided by ``near_min * near_scaling`` so that the closest scene
   depth lands at ``1 / near_scaling`` (just beyond the NDC near plane at 1.0).

Choice: we follow K-Planes' ``load_llff_poses_helper`` (scale factor ``near_min * near_scaling``;
Sync-NeRF's Plenoptic config uses ``near_scaling = 0.95``). Original NeRF's ``bd_factor = 0.75`` is the
same formula with ``near_scaling = 0.75``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taichi_syncnerf.data.cameras import Intrinsics
from taichi_syncnerf.errors import DataError

DEFAULT_NEAR_SCALING = 0.95


@dataclass(frozen=True)
class LLFFPoses:
    """Processed poses of one forward-facing capture.

    Attributes:
        c2w: (N, 3, 4) OpenGL camera-to-world, recentred and scaled.
        bounds: (N, 2) per-camera near/far depths in the scaled world units.
        intrinsics: the shared intrinsics at the resolution ``poses_bounds.npy`` states (H, W, focal),
            principal point at the image centre.
        pose_avg: (4, 4) the average pose (in swapped axes, before scaling) the rig was recentred on.
        scale: the factor positions and bounds were divided by.
    """

    c2w: np.ndarray
    bounds: np.ndarray
    intrinsics: Intrinsics
    pose_avg: np.ndarray
    scale: float


def read_poses_bounds(path: str | Path) -> np.ndarray:
    """Read and validate ``poses_bounds.npy``: returns (N, 17) float64 or raises DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/OSError/EOFError/UnpicklingError here
        raise DataError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] < 1:
        shape = getattr(arr, "shape", None)
        raise DataError(f"{path}: expected an (N, 17) array of poses and bounds, got shape {shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: contains NaN or infinite values")
    near, far = arr[:, 15], arr[:, 16]
    if np.any(near <= 0) or np.any(far <= near):
        bad = int(np.flatnonzero((near <= 0) | (far <= near))[0])
        raise DataError(f"{path}: row {bad} has invalid bounds near={near[bad]:g} far={far[bad]:g} "
                        "(need 0 < near < far)")
    hwf = arr[0, :15].reshape(3, 5)[:, 4]
    if np.any(hwf <= 0):
        raise DataError(f"{path}: row 0 has invalid (H, W, focal) = ({', '.join(f'{v:g}' for v in hwf)}), "
                        "each must be positive")
    return arr


def llff_to_opengl(poses: np.ndarray) -> np.ndarray:
    """Reorder LLFF ``[down, right, back, centre]`` columns to OpenGL ``[right, up, back, centre]``.

    Args:
        poses: (N, 3, 4) float64.
    Returns:
        (N, 3, 4) float64.
    """
    return np.concatenate([poses[..., 1:2], -poses[..., 0:1], poses[..., 2:4]], axis=-1)


def _normalize(v):
    return v / np.linalg.norm(v)


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """The average pose (3, 4): mean centre, mean back axis, up from the mean up axis (LLFF's poses_avg).

    Args:
        c2w: (N, 3, 4) OpenGL camera-to-world.
    """
    centre = c2w[:, :, 3].mean(0)
    back = _normalize(c2w[:, :, 2].mean(0))
    up_ = c2w[:, :, 1].mean(0)
    right = _normalize(np.cross(up_, back))
    up = np.cross(back, right)
    return np.stack([right, up, back, centre], axis=1)


def recenter_poses(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Express every pose in the frame of the average pose.

    Args:
        c2w: (N, 3, 4).
    Returns:
        recentred (N, 3, 4) and the average pose as a (4, 4) matrix.
    """
    avg = np.eye(4)
    avg[:3] = average_pose(c2w)
    homo = np.concatenate([c2w, np.broadcast_to([[[0.0, 0.0, 0.0, 1.0]]], (len(c2w), 1, 4))], 1)
    return (np.linalg.inv(avg) @ homo)[:, :3], avg


def rescale_by_near(c2w: np.ndarray, bounds: np.ndarray, near_scaling: float = DEFAULT_NEAR_SCALING
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """Divide positions and bounds by ``min(near) * near_scaling`` (K-Planes' convention).

    Args:
        c2w: (N, 3, 4); bounds: (N, 2) near/far depths.
    Returns:
        scaled c2w (N, 3, 4), scaled bounds (N, 2) and the scale factor.
    """
    scale = float(np.min(bounds) * near_scaling)
    c2w = c2w.copy()
    c2w[:, :, 3] /= scale
    return c2w, bounds / scale, scale


def load_poses_bounds(path: str | Path, near_scaling: float = DEFAULT_NEAR_SCALING) -> LLFFPoses:
    """Read ``poses_bounds.npy`` and apply the full LLFF processing (axis swap, recentre, scale)."""
    arr = read_poses_bounds(path)
    mats = arr[:, :15].reshape(-1, 3, 5)
    h, w, focal = mats[0, :, 4]
    intr = Intrinsics(float(focal), float(focal), float(w) / 2.0, float(h) / 2.0,
                      int(round(w)), int(round(h)))
    c2w = llff_to_opengl(mats[:, :, :4])
    c2w, avg = recenter_poses(c2w)
    c2w, bounds, scale = rescale_by_near(c2w, arr[:, 15:17], near_scaling)
    return LLFFPoses(c2w=c2w, bounds=bounds, intrinsics=intr, pose_avg=avg, scale=scale)


def spiral_path(c2w: np.ndarray, bounds: np.ndarray, n_frames: int = 120, n_rots: float = 2.0,
                zrate: float = 0.5, dt: float = 0.75, percentile: float = 70.0) -> np.ndarray:
    """Forward-facing spiral render path (NeRF's ``render_path_spiral`` as K-Planes parameterises it).

    The focus depth is a disparity-space blend of the closest depth and 5x the farthest; the spiral's
    radii are the ``percentile``-th percentile of the absolute camera positions. Unlike
    K-Planes/TensoRF's ``viewmatrix`` (which negates the right axis and so mirrors the image) the
    poses here are proper right-handed rotations.

    Args:
        c2w: (N, 3, 4) recentred OpenGL poses; bounds: (N, 2) near/far in the same units.
        n_frames: number of poses; n_rots: turns; zrate: z oscillation per turn;
        dt: focus blend (K-Planes passes its ``near_scaling``); percentile: radius percentile.
    Returns:
        (n_frames, 3, 4) camera-to-world matrices.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    avg = average_pose(c2w)
    up = _normalize(c2w[:, :, 1].sum(0))
    close_depth, inf_depth = float(np.min(bounds)), float(np.max(bounds)) * 5.0
    focal = 1.0 / ((1.0 - dt) / close_depth + dt / inf_depth)
    radii = np.concatenate([np.percentile(np.abs(c2w[:, :, 3]), percentile, axis=0), [1.0]])
    lookat = avg @ np.array([0.0, 0.0, -focal, 1.0])
    out = []
    for theta in np.linspace(0.0, 2.0 * np.pi * n_rots, n_frames, endpoint=False):
        pos = avg @ (radii * np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate), 1.0]))
        back = _normalize(pos - lookat)
        right = _normalize(np.cross(up, back))
        out.append(np.stack([right, np.cross(back, right), back, pos], axis=1))
    return np.stack(out)
