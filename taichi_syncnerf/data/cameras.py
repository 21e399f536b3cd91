"""Pinhole cameras in the OpenGL convention: intrinsics, ray generation, NDC, render paths.

Conventions (used by every loader and by the renderer):

- Camera-to-world matrices ``c2w`` are ``(3, 4)`` float64 arrays ``[R | t]`` whose columns are the
  camera's right, up and back axes and its centre, in world units (OpenGL / NeRF convention: the
  camera looks along ``-z``).
- Pixel ``(x, y)`` is column ``x`` and row ``y`` (row 0 at the top). Its centre sits at
  ``(x + 0.5, y + 0.5)`` in image coordinates, so a ray goes through the middle of the pixel.
- :func:`generate_rays` returns unit-norm directions by default (``normalize=True``), as K-Planes
  does; the sample distances ``t`` along a ray are then metric. :func:`ndc_rays` takes the
  UN-normalised directions (``normalize=False``), and normalises its NDC output the same way.

Example:
    >>> K = Intrinsics.from_fov(0.69, width=64, height=48)
    >>> o, d = generate_rays(K, np.eye(4)[:3], np.array([32]), np.array([24]))
    >>> np.allclose(d, [[0.0, 0.0, -1.0]], atol=0.02)
    True
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, camera_angle_x: float, width: int, height: int,
                 cx: float | None = None, cy: float | None = None,
                 camera_angle_y: float | None = None) -> "Intrinsics":
        """Blender-style intrinsics from the horizontal field of view (radians)."""
        fx = 0.5 * width / np.tan(0.5 * camera_angle_x)
        fy = fx if camera_angle_y is None else 0.5 * height / np.tan(0.5 * camera_angle_y)
        return cls(float(fx), float(fy),
                   float(width / 2.0 if cx is None else cx),
                   float(height / 2.0 if cy is None else cy), int(width), int(height))

    def resized(self, width: int, height: int) -> "Intrinsics":
        """The same camera seen in an image resized to ``width`` x ``height``.

        A resize maps the pixel edges ``[0, W]`` onto ``[0, W']``, so focal lengths and principal
        point scale by ``W'/W`` (and ``H'/H`` vertically): exact for any resampling filter.
        """
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                       width=int(width), height=int(height))

    def downsampled(self, factor: int) -> "Intrinsics":
        """Intrinsics after integer downsampling: the image becomes ``W // factor`` x ``H // factor``."""
        if int(factor) != factor or factor < 1:
            raise ValueError(f"downsampling factor must be a positive integer, got {factor}")
        return self.resized(self.width // int(factor), self.height // int(factor))

    def matrix(self) -> np.ndarray:
        """The 3x3 calibration matrix K (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "width": self.width, "height": self.height}


def camera_directions(intr: Intrinsics, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Camera-space directions through pixel centres, OpenGL axes, ``z = -1``.

    Args:
        intr: the camera's intrinsics.
        x, y: (N,) integer pixel columns and rows (any numeric dtype; +0.5 is added here).
    Returns:
        (N, 3) float64 directions ``((x+0.5-cx)/fx, -(y+0.5-cy)/fy, -1)`` (not normalised).
    """
    x = np.asarray(x, dtype=np.float64) + 0.5
    y = np.asarray(y, dtype=np.float64) + 0.5
    return np.stack([(x - intr.cx) / intr.fx, -(y - intr.cy) / intr.fy,
                     -np.ones_like(x)], axis=-1)


def pixels_of(intr: Intrinsics, c2w: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where world ``points`` (..., 3) project in one camera: the inverse of :func:`camera_directions`.

    Args:
        intr: the camera's intrinsics.
        c2w: (3, 4) its OpenGL camera-to-world.
        points: (..., 3) world points.
    Returns:
        ``(u, v, z)``, each of ``points.shape[:-1]``: continuous pixel coordinates (pixel ``x`` spans
        ``[x, x + 1)``, so ``floor(u)`` is the column whose centre :func:`camera_directions` shoots
        through) and the depth in front of the camera (``z > 0`` visible; u, v are inf/nan at z = 0).
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    q = (np.asarray(points, dtype=np.float64) - c2w[:3, 3]) @ c2w[:3, :3]
    z = -q[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intr.fx * q[..., 0] / z + intr.cx
        v = -intr.fy * q[..., 1] / z + intr.cy
    return u, v, z


def generate_rays(intr: Intrinsics, c2w: np.ndarray, x: np.ndarray, y: np.ndarray,
                  normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through the centres of pixels ``(x, y)``.

    Args:
        intr: intrinsics of the image the pixel indices refer to.
        c2w: (3, 4) one camera for all rays, or (N, 3, 4) one camera per ray.
        x, y: (N,) pixel columns and rows.
        normalize: return unit-norm directions (default) or the raw ``R @ d_cam`` whose camera-space
            z component is -1 (what :func:`ndc_rays` expects).
    Returns:
        origins (N, 3) and directions (N, 3), float64.
    """
    d_cam = camera_directions(intr, x, y)
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim == 2:
        dirs = d_cam @ c2w[:3, :3].T
        origins = np.broadcast_to(c2w[:3, 3], dirs.shape).copy()
    else:
        dirs = np.einsum("nij,nj->ni", c2w[:, :3, :3], d_cam)
        origins = c2w[:, :3, 3].copy()
    if normalize:
        dirs = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    return origins, dirs


def ndc_rays(intr: Intrinsics, near: float, origins: np.ndarray, directions: np.ndarray,
             normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Map world rays of a forward-facing scene to normalised device coordinates (NeRF's ``ndc_rays``).

    The scene must be recentred so that cameras look down ``-z`` (see :mod:`.llff`). Origins are
    first moved onto the plane ``z = -near``; NDC maps that plane to ``z' = -1`` and infinity to
    ``z' = 1``. K-Planes uses ``near = 1.0`` for Plenoptic video.

    Args:
        intr: intrinsics (focal lengths and image size define the NDC frustum).
        near: the near plane depth in world units.
        origins, directions: (N, 3) world rays; directions NOT normalised (see :func:`generate_rays`).
        normalize: return unit-norm NDC directions (K-Planes does) or the raw NDC ones (``t = 1``
            then reaches ``z' = 1``).
    Returns:
        NDC origins (N, 3) and directions (N, 3), float64.
    """
    o = np.asarray(origins, dtype=np.float64)
    d = np.asarray(directions, dtype=np.float64)
    t = -(near + o[:, 2]) / d[:, 2]
    o = o + t[:, None] * d
    ax = -2.0 * intr.fx / intr.width
    ay = -2.0 * intr.fy / intr.height
    o_ndc = np.stack([ax * o[:, 0] / o[:, 2], ay * o[:, 1] / o[:, 2], 1.0 + 2.0 * near / o[:, 2]], -1)
    d_ndc = np.stack([ax * (d[:, 0] / d[:, 2] - o[:, 0] / o[:, 2]),
                      ay * (d[:, 1] / d[:, 2] - o[:, 1] / o[:, 2]),
                      -2.0 * near / o[:, 2]], -1)
    if normalize:
        d_ndc = d_ndc / np.linalg.norm(d_ndc, axis=-1, keepdims=True)
    return o_ndc, d_ndc


def pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """All pixels of an image in row-major order: (H*W,) int32 columns ``x`` and rows ``y``."""
    y, x = np.divmod(np.arange(width * height, dtype=np.int64), width)
    return x.astype(np.int32), y.astype(np.int32)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(3, 4) right-handed OpenGL camera-to-world at ``position`` looking at ``target``."""
    back = _normalize(np.asarray(position, float) - np.asarray(target, float))
    right = _normalize(np.cross(up, back))
    cam_up = np.cross(back, right)
    return np.stack([right, cam_up, back, np.asarray(position, float)], axis=1)


def orbit_path(c2w: np.ndarray, n_frames: int = 120, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A circular orbit around the world z axis through the cameras' mean radius and height.

    For inward-facing (Blender) rigs whose up axis is +z.

    Args:
        c2w: (N, 3, 4) training cameras.
        n_frames: number of poses.
        target: the point every pose looks at.
    Returns:
        (n_frames, 3, 4) camera-to-world matrices.
    """
    centres = np.asarray(c2w, float)[:, :3, 3] - np.asarray(target, float)
    radius = float(np.mean(np.linalg.norm(centres[:, :2], axis=1)))
    height = float(np.mean(centres[:, 2]))
    out = []
    for theta in np.linspace(0.0, 2.0 * np.pi, n_frames, endpoint=False):
        pos = np.array([radius * np.cos(theta), radius * np.sin(theta), height]) + target
        out.append(look_at(pos, np.asarray(target, float), np.array([0.0, 0.0, 1.0])))
    return np.stack(out)
