"""The dataset's rig in the browser: one frustum per camera, labelled with its name and learned offset.

Frusta are coloured by the learned offset (a diverging colour map, symmetric about 0, blue for
negative, red for positive); the held-out test camera is drawn with thicker lines and its label says
``test``.
When the dataset has ground-truth offsets, each label also gives the truth, moved by the one global
shift offsets cannot determine (as ``offsets.png`` and the offset error do).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taichi_syncnerf.viewer.camera import camera_fov, viser_pose


@dataclass(frozen=True)
class RigCamera:
    index: int
    name: str
    c2w: np.ndarray                 # (3, 4) OpenGL camera-to-world
    fov: float                      # vertical, radians
    aspect: float
    offset: float                   # learned, frames
    truth: float | None             # ground truth aligned to the learned offsets, frames
    is_test: bool
    color: tuple[int, int, int]

    @property
    def label(self) -> str:
        text = f"{self.name}{' (test)' if self.is_test else ''}  {self.offset + 0.0:+.2f} f"
        if self.truth is not None:
            text += f"  (truth {self.truth:+.2f})"
        return text


def offset_colors(offsets, limit: float | None = None) -> list[tuple[int, int, int]]:
    """RGB 0-255 of each offset on matplotlib's ``coolwarm`` over ``[-limit, limit]``
    (``limit``: the largest absolute offset, at least 0.5 frame)."""
    from matplotlib import colormaps

    off = np.asarray(offsets, np.float64)
    if limit is None:
        limit = max(0.5, float(np.abs(off).max()) if off.size else 0.5)
    rgba = colormaps["coolwarm"]((np.clip(off / limit, -1.0, 1.0) + 1.0) / 2.0)
    return [tuple(int(round(255 * c)) for c in row[:3]) for row in rgba]


def rig_cameras(source, offsets, truth=None) -> list[RigCamera]:
    """The dataset's cameras with their learned offsets (frames) and aligned truth (or None)."""
    colors = offset_colors(offsets)
    out = []
    for k in range(source.n_cameras):
        fov, aspect = camera_fov(source.ds.intrinsics[k])
        out.append(RigCamera(k, source.camera_names[k], np.asarray(source.ds.c2w[k], np.float64)[:3, :4], fov,
                             aspect, float(offsets[k]), None if truth is None else float(truth[k]),
                             k == source.test_index, colors[k]))
    return out


def rig_scale(c2w) -> float:
    """A frustum size that suits the rig: a third of the median distance between neighbouring cameras,
    or a tenth of the distance to the rig's centre for a single camera."""
    centres = np.asarray(c2w, np.float64)[:, :3, 3]
    if len(centres) < 2:
        return 0.1 * max(float(np.linalg.norm(centres[0])), 1e-3)
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return max(float(np.median(d.min(axis=1))) / 3.0, 1e-3)


def scene_up(c2w) -> np.ndarray:
    """The rig's mean up direction (unit), used as the browser's up axis."""
    up = np.asarray(c2w, np.float64)[:, :3, 1].mean(axis=0)
    n = np.linalg.norm(up)
    return up / n if n > 1e-9 else np.array([0.0, 1.0, 0.0])


class RigDrawing:
    """The frusta and labels in a viser scene; :meth:`update` recolours and relabels them."""

    def __init__(self, scene, cameras: list[RigCamera]):
        self.scene = scene
        self.scale = rig_scale([c.c2w for c in cameras])
        self.frusta, self.labels = [], []
        for c in cameras:
            wxyz, pos = viser_pose(c.c2w)
            self.frusta.append(scene.add_camera_frustum(
                f"/rig/{c.name}", fov=c.fov, aspect=c.aspect, scale=self.scale, color=c.color, wxyz=wxyz,
                position=pos, thickness=self.scale * (0.08 if c.is_test else 0.03)))
            self.labels.append(scene.add_label(f"/rig/{c.name}/label", c.label, position=(0.0, 0.0, 0.0),
                                               font_screen_scale=0.8))

    def update(self, cameras: list[RigCamera]) -> None:
        for c, frustum, label in zip(cameras, self.frusta, self.labels):
            frustum.color = c.color
            label.text = c.label

    def set_visible(self, visible: bool) -> None:
        for h in self.frusta + self.labels:
            h.visible = visible
