"""Refuse a degenerate reconstruction, with one line saying what failed and what to try.

Structure from motion on a small forward-facing rig can "succeed" with a wrong focal length and
cameras collapsed into clusters at a small reprojection error. What can be checked without
knowing the truth:

- the focal length gives a plausible horizontal field of view (``fov_range`` degrees, or within
  15 % of ``--fov`` when the user states it) and, per camera, agrees with the other cameras;
- the cameras are spread out: no two cameras closer than ``MIN_SPREAD`` of the typical distance
  between neighbours, the median distance between cameras over sqrt(cameras) (a collapse puts
  several cameras on one spot);
- every camera sees enough points (``min_points``) and its frames agree on its pose (the camera
  is fixed: its frames must give the same centre and rotation);
- the mean reprojection error is small.

:func:`similarity_align` (Umeyama) compares camera centres with a reference rig.
"""
from __future__ import annotations

import numpy as np

from taichi_syncnerf.errors import DataError

DEFAULT_FOV_RANGE = (25.0, 110.0)
MIN_SPREAD = 0.25
MAX_FRAME_ROTATION_DEG = 1.0
MAX_FRAME_CENTRE = 0.05        # of the typical neighbour distance
MAX_REPROJECTION_PX = 2.0
FOV_TOLERANCE = 0.15


def fov_deg(focal: float, width: int) -> float:
    return float(np.degrees(2.0 * np.arctan(0.5 * width / focal)))


def _refuse(what: str, hint: str):
    raise DataError(f"structure from motion gave a degenerate rig: {what}; {hint}")


def check_reconstruction(rec, names: list, fov: float | None = None,
                         fov_range=DEFAULT_FOV_RANGE, min_points: int = 50) -> None:
    """Raise DataError (one line) when the registered cameras of ``rec`` look degenerate."""
    regs = rec.registered
    cams = [rec.cameras[k] for k in regs]
    for k, c in zip(regs, cams):
        f = fov_deg(c.focal, rec.width)
        if fov is not None and abs(c.focal / (0.5 * rec.width / np.tan(np.radians(fov) / 2)) - 1) \
                > FOV_TOLERANCE:
            _refuse(f"{names[k]}: focal length {c.focal:.0f} px is a {f:.0f} degree field of view, "
                    f"not the {fov:g} degrees given with --fov",
                    "check --fov, or give more frames per camera (--sfm-frames)")
        if fov is None and not fov_range[0] <= f <= fov_range[1]:
            _refuse(f"{names[k]}: focal length {c.focal:.0f} px is a {f:.0f} degree field of view "
                    f"(plausible: {fov_range[0]:g}..{fov_range[1]:g})",
                    "give the lens's field of view with --fov, or --intrinsics shared")
        if len(c.depths) < min_points:
            _refuse(f"{names[k]} sees only {len(c.depths)} points (need {min_points})",
                    "film a more textured static background, or give more frames (--sfm-frames)")
    focals = np.array([c.focal for c in cams])
    if focals.max() / focals.min() > 1.0 + 2 * FOV_TOLERANCE:
        i, j = regs[int(np.argmin(focals))], regs[int(np.argmax(focals))]
        _refuse(f"focal lengths disagree ({names[i]} {focals.min():.0f} px, {names[j]} "
                f"{focals.max():.0f} px)", "if the cameras are alike use --intrinsics shared")
    centres = np.stack([c.c2w[:, 3] for c in cams])
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    nearest = dist.min(axis=1)
    # neighbouring cameras of a rig spread over an area are about this far apart
    typical = float(np.median(dist[np.isfinite(dist)])) / np.sqrt(len(cams))
    if not typical > 0:
        _refuse("all cameras at one spot", "move the cameras apart, or film a static textured "
                "background")
    i = int(np.argmin(nearest))
    j = int(np.argmin(dist[i]))
    if nearest[i] < MIN_SPREAD * typical:
        _refuse(f"{names[regs[i]]} and {names[regs[j]]} collapsed onto one spot ("
                f"{nearest[i] / typical:.2f} of the typical distance between cameras)",
                "film a more textured, non-repetitive static background, or give --fov")
    for k, c in zip(regs, cams):
        if c.rotation_spread_deg > MAX_FRAME_ROTATION_DEG or c.centre_spread > MAX_FRAME_CENTRE * typical:
            _refuse(f"the frames of {names[k]} disagree on its pose ({c.rotation_spread_deg:.2f} "
                    f"degrees, {c.centre_spread / typical:.2f} of the distance between cameras)",
                    "the camera must not move while filming; trim the videos to the still part")
    if rec.mean_reprojection_error > MAX_REPROJECTION_PX:
        _refuse(f"mean reprojection error {rec.mean_reprojection_error:.2f} px (> "
                f"{MAX_REPROJECTION_PX:g})", "check for rolling shutter, zoom or moving cameras")


def similarity_align(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation R (3, 3) and translation t minimising ``|s R src_i + t - dst_i|``.

    Args:
        src, dst: (N, 3) corresponding points, N >= 3 not collinear.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.eye(3)
    d[2, 2] = np.sign(np.linalg.det(u @ vt))
    r = u @ d @ vt
    s = float(np.trace(np.diag(sig) @ d) / (a * a).sum(1).mean())
    return s, r, md - s * r @ ms


def align_rig(r_src: np.ndarray, c_src: np.ndarray, r_dst: np.ndarray, c_dst: np.ndarray):
    """Similarity (s, R, t) taking a rig onto another, using the cameras' orientations as well
    as their centres: R is the rotation closest to the mean of ``r_dst[k] r_src[k]^T`` (a planar
    rig's centres alone leave it poorly determined), then s and t fit the centres.

    Args:
        r_src, r_dst: (N, 3, 3) camera-to-world rotations; c_src, c_dst: (N, 3) centres.
    """
    m = np.einsum("kij,klj->il", np.asarray(r_dst, np.float64), np.asarray(r_src, np.float64))
    u, _, vt = np.linalg.svd(m)
    r = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    a = np.asarray(c_src, np.float64) @ r.T
    b = np.asarray(c_dst, np.float64)
    da, db = a - a.mean(0), b - b.mean(0)
    s = float((da * db).sum() / (da * da).sum())
    return s, r, b.mean(0) - s * a.mean(0)
