"""The browser's camera as the project's cameras: poses, intrinsics and rays (numpy only).

viser reports a camera as ``wxyz`` (the rotation ``R_world_camera``), ``position``, a vertical field
of view ``fov`` (radians) and the canvas ``aspect`` (width / height), in the OpenCV axes (+x right,
+y down, +z forward). The project's cameras are OpenGL ``c2w`` (3, 4) matrices whose columns are
right, up, back and the centre (see :mod:`taichi_syncnerf.data.cameras`). The two differ by the
sign of the y and z columns.

Rays for a view are made exactly as a dataset camera's: pixel centres through
:func:`~taichi_syncnerf.data.cameras.generate_rays` and, for forward-facing (NDC) datasets,
:func:`~taichi_syncnerf.data.cameras.ndc_rays` with the dataset camera's own intrinsics, which define
the NDC frustum of the scene whatever the view's resolution or field of view.

Example:
    >>> c2w = np.eye(4)[:3]
    >>> wxyz, pos = viser_pose(c2w)
    >>> np.allclose(c2w_from_viser(wxyz, pos), c2w)
    True
"""
from __future__ import annotations

import numpy as np

from taichi_syncnerf.camera_path import matrix_to_quat, quat_to_matrix  # noqa: F401 (re-exported)
from taichi_syncnerf.data.cameras import Intrinsics, generate_rays, ndc_rays, pixel_grid

_GL_FROM_CV = np.diag([1.0, -1.0, -1.0])


def c2w_from_viser(wxyz, position) -> np.ndarray:
    """The OpenGL (3, 4) camera-to-world of a viser camera (OpenCV rotation ``wxyz``, centre ``position``)."""
    R = quat_to_matrix(wxyz) @ _GL_FROM_CV
    return np.concatenate([R, np.asarray(position, np.float64).reshape(3, 1)], axis=1)


def viser_pose(c2w) -> tuple[np.ndarray, np.ndarray]:
    """``(wxyz, position)`` in viser's OpenCV axes of an OpenGL (3, 4) camera-to-world."""
    c2w = np.asarray(c2w, np.float64)
    return matrix_to_quat(c2w[:3, :3] @ _GL_FROM_CV), c2w[:3, 3].copy()


def camera_fov(intr: Intrinsics) -> tuple[float, float]:
    """A dataset camera's vertical field of view (radians) and aspect (width / height).

    Exact for a centred principal point and square pixels; viser's cameras have no other kind.
    """
    return float(2.0 * np.arctan(0.5 * intr.height / intr.fy)), intr.width / intr.height


def view_intrinsics(fov_y: float, aspect: float, height: int) -> Intrinsics:
    """Intrinsics of an image ``height`` pixels high that covers a view of vertical field ``fov_y``
    and aspect ``aspect`` exactly (the width is rounded, the horizontal focal length follows it)."""
    height = max(1, int(height))
    width = max(1, int(round(height * aspect)))
    angle_x = 2.0 * np.arctan(aspect * np.tan(0.5 * fov_y))
    return Intrinsics.from_fov(angle_x, width, height, camera_angle_y=fov_y)


def view_rays(source, c2w, intr: Intrinsics, scene_frame: float, ref_cam: int,
              offsets_frames, x=None, y=None) -> tuple[dict, np.ndarray]:
    """Every pixel's ray (row-major), or those of pixels ``(x, y)`` ((N,) arrays), for a view at pose
    ``c2w`` with intrinsics ``intr``, at scene time ``scene_frame`` (frames of the scene clock: frame
    f of camera k shows scene time f + offset_k).

    The rays carry camera ``ref_cam`` and that camera's frame ``scene_frame - offsets_frames[ref_cam]``,
    so the model, which adds the camera's learned offset, looks the scene up at ``scene_frame``.

    Returns:
        rays: dict as :meth:`taichi_syncnerf.rays.RaySource.image_rays` (origins, dirs, view_dirs,
            times, cams) for ``intr.height * intr.width`` pixels (or the N asked for).
        valid: (N,) bool; False for rays of an NDC scene that do not point into it (looking away from
            the scene's forward direction); those rays are replaced by a harmless one and their pixels
            should be shown black.
    """
    if x is None:
        x, y = pixel_grid(intr.width, intr.height)
    o, d = generate_rays(intr, np.asarray(c2w, np.float64)[:3, :4], x, y, normalize=not source.ndc)
    valid = np.ones(len(o), bool)
    if source.ndc:
        from taichi_syncnerf.data.dataset import NDC_NEAR_PLANE

        valid = d[:, 2] < -1e-6
        o = np.where(valid[:, None], o, [0.0, 0.0, 0.0])
        d = np.where(valid[:, None], d, [0.0, 0.0, -1.0])
        o, d = ndc_rays(source.ds.intrinsics[ref_cam], NDC_NEAR_PLANE, o, d)
    frame = float(scene_frame) - float(offsets_frames[ref_cam])
    n = len(o)
    rays = {"origins": o, "dirs": d, "view_dirs": d,
            "times": np.full(n, float(source.ds.time_of_frame(frame))),
            "cams": np.full(n, int(ref_cam), np.int32)}
    return rays, valid
