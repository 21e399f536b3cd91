"""Camera rigs of the synthetic scenes and the pinhole model they share.

Cameras are OpenGL-style: the camera-to-world matrix has columns [right, up, back, position],
the camera looks along -back. Pixel (column j, row i) covers ``[j, j + 1] x [i, i + 1]`` on the
image plane and its centre is at ``(j + 0.5, i + 0.5)``; the principal point is ``(W / 2, H / 2)``.
A camera-space point (x, y, z) with depth ``-z > 0`` lands at
``u = cx + focal * x / -z``, ``v = cy - focal * y / -z``.

Example::

    cams = n3dv_rig(5, width=128, height=96)
    uv, depth = cams[0].project(np.zeros((1, 3)))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taichi_syncnerf.data.synthetic.scene import apply3

GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))

N3DV_FOV_X = np.deg2rad(55.0)           # horizontal field of view of the forward-facing rig
N3DV_DISTANCE = 3.0                     # rig plane to the scene centre
N3DV_SPREAD = (0.6, 0.35)               # half extent of the rig (horizontal, vertical)
N3DV_TARGET = (0.0, 12.0, -0.3)         # common look-at point: nearly parallel
BLENDER_CAMERA_ANGLE_X = 0.8            # radians
BLENDER_RADIUS = 4.0                    # cameras on a sphere of this radius (near 2, far 6)
BLENDER_CAP_CENTRE = (0.0, -1.0, 0.58)  # cap centred ~30 degrees above the horizon
BLENDER_CAP_ANGLE = np.deg2rad(40.0)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera. c2w: (4, 4) OpenGL camera-to-world; focal, cx, cy in pixels."""

    c2w: np.ndarray
    width: int
    height: int
    focal: float

    @property
    def cx(self) -> float:
        return self.width / 2.0

    @property
    def cy(self) -> float:
        return self.height / 2.0

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) as (u, v) and depths (N,) along the
        viewing axis (positive in front of the camera)."""
        rot, pos = self.c2w[:3, :3], self.c2w[:3, 3]
        pc = apply3(np.asarray(points, np.float64) - pos, rot)
        depth = -pc[:, 2]
        u = self.cx + self.focal * pc[:, 0] / depth
        v = self.cy - self.focal * pc[:, 1] / depth
        return np.stack([u, v], -1), depth

    def pixel_directions(self, supersample: int = 1, dtype=np.float32) -> np.ndarray:
        """World-space ray directions through the sub-pixel centres, scaled so that the
        camera-space z component is -1 (a ray parameter then equals the depth).

        Returns (H * s, W * s, 3) for s = supersample.
        """
        s = int(supersample)
        u = (np.arange(self.width * s, dtype=np.float64) + 0.5) / s
        v = (np.arange(self.height * s, dtype=np.float64) + 0.5) / s
        x = (u - self.cx) / self.focal
        y = -(v - self.cy) / self.focal
        d = np.empty((v.size, u.size, 3), np.float64)
        d[..., 0], d[..., 1], d[..., 2] = x[None, :], y[:, None], -1.0
        return apply3(d, self.c2w[:3, :3].T).astype(dtype)


def look_at(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenGL camera-to-world (4, 4) at ``position`` looking at ``target``."""
    pos = np.asarray(position, np.float64)
    back = pos - np.asarray(target, np.float64)
    back /= np.linalg.norm(back)
    right = np.cross(np.asarray(up, np.float64), back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, pos
    return c2w


def _sunflower(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n points on the unit disc (point 0 at the centre): radii (n,) and angles (n,)."""
    i = np.arange(n, dtype=np.float64)
    r = np.sqrt(i / max(n - 1, 1))
    return r, i * GOLDEN_ANGLE


def n3dv_rig(n: int, width: int, height: int) -> list[Camera]:
    """Forward-facing rig like the Plenoptic Video one: cameras on a small planar disc at
    y = -3.0 facing +y (converging slightly on a point far behind the scene); camera 0 is the
    centre camera."""
    r, a = _sunflower(n)
    focal = 0.5 * width / np.tan(N3DV_FOV_X / 2.0)
    cams = []
    for rk, ak in zip(r, a):
        pos = (N3DV_SPREAD[0] * rk * np.cos(ak), -N3DV_DISTANCE, N3DV_SPREAD[1] * rk * np.sin(ak))
        cams.append(Camera(look_at(pos, N3DV_TARGET), width, height, focal))
    return cams


def blender_rig(n: int, width: int, height: int) -> list[Camera]:
    """Cameras on a spherical cap of radius 4 around the origin, looking at the origin;
    camera 0 sits at the centre of the cap."""
    centre = np.asarray(BLENDER_CAP_CENTRE) / np.linalg.norm(BLENDER_CAP_CENTRE)
    e1 = np.cross((0.0, 0.0, 1.0), centre)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(centre, e1)
    r, a = _sunflower(n)
    theta = BLENDER_CAP_ANGLE * r
    focal = 0.5 * width / np.tan(BLENDER_CAMERA_ANGLE_X / 2.0)
    cams = []
    for th, ak in zip(theta, a):
        d = np.cos(th) * centre + np.sin(th) * (np.cos(ak) * e1 + np.sin(ak) * e2)
        cams.append(Camera(look_at(BLENDER_RADIUS * d, (0.0, 0.0, 0.0)), width, height, focal))
    return cams
