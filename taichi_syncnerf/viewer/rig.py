"""The dataset's rig in the browser: one frustum per camera, labelled with its name and learned offset.

Frusta are coloured by the learned offset (a diverging colour map, symmetric about 0, blue for
negative, red for positive); the held-out test camera is drawn with thicker lines and its label says
``test``.
When the dataset has ground-truth offsets, each label also gives the truth, moved by the one global
shift offsets cannot determine (as ``offsets.png`` and the offset error do).

Each browser has its own drawing (:class:`RigDrawing` in its ``client.scene``): the frustum of the
camera the view is snapped to is hidden there, and labels that would overlap another or leave the
canvas are hidden for that view (:func:`declutter`); the panel's camera table has every figure.
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
    def short_label(self) -> str:
        """What the rig shows beside the frustum: the name and the learned offset."""
        return f"{self.name}{'*' if self.is_test else ''} {self.offset + 0.0:+.2f}"

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


def overview_pose(c2w, fov_y: float, aspect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(position, look_at, up)`` of a view that sees every camera of the rig: behind the rig along
    its mean viewing direction and a little above (forward-facing rigs), or above the rig at 55
    degrees, on the side of its first camera, when the cameras look inwards (their viewing
    directions cancel out); far enough that the cameras' spread fits the smaller of the two fields
    of view, with a margin. ``up`` is the rig's up (:func:`scene_up`)."""
    c2w = np.asarray(c2w, np.float64)
    centres = c2w[:, :3, 3]
    centre = centres.mean(axis=0)
    up = scene_up(c2w)
    forward = -c2w[:, :3, 2].mean(axis=0)
    spread = max(float(np.linalg.norm(centres - centre, axis=1).max()), rig_scale(c2w) * 3.0)
    half = 0.5 * min(fov_y, 2.0 * np.arctan(aspect * np.tan(0.5 * fov_y)))
    dist = 1.6 * spread / np.tan(half) + spread
    if np.linalg.norm(forward) > 0.5:           # forward-facing: from behind and a little above
        f = forward / np.linalg.norm(forward)
        return centre - f * dist + up * 0.35 * dist, centre + f * spread, up
    side = centres[0] - centre - np.dot(centres[0] - centre, up) * up
    if np.linalg.norm(side) < 1e-9:
        side = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    a = np.radians(55.0)
    return centre + (up * np.sin(a) + side * np.cos(a)) * dist, centre, up


def project(points, c2w, fov_y: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (N, 2) of world points seen by an OpenGL camera ``c2w`` (3, 4) of vertical field
    ``fov_y`` over a ``width`` x ``height`` canvas, and whether each is in front of the camera."""
    c2w = np.asarray(c2w, np.float64)
    p = (np.asarray(points, np.float64) - c2w[:3, 3]) @ c2w[:3, :3]        # camera coordinates
    z = -p[:, 2]
    f = 0.5 * height / np.tan(0.5 * fov_y)
    zs = np.where(z > 1e-9, z, 1e-9)
    return np.stack([width / 2.0 + f * p[:, 0] / zs, height / 2.0 - f * p[:, 1] / zs], axis=1), z > 1e-9


def frustum_extent(fov: float, aspect: float, scale: float) -> tuple[float, float]:
    """Half height of a viser frustum's picture and its distance from the camera centre (viser
    draws a frustum of ``scale`` with its volume normalised: y = tan(fov / 2), x = y * aspect, z = 1,
    all divided by the cube root of x * y * z / 3)."""
    y = np.tan(0.5 * fov)
    v = np.cbrt(y * y * aspect / 3.0)
    return float(y / v * scale), float(scale / v)


LABEL_EM_PX = 12.0 * 0.8      # viser draws a screen-space label 12 CSS px high per unit of font_screen_scale


def label_box(text: str) -> tuple[float, float]:
    """Width and height in pixels of a label as viser draws it (font 0.8 of 12 px, some padding)."""
    return 0.55 * LABEL_EM_PX * len(text) + 6.0, 1.5 * LABEL_EM_PX + 2.0


def declutter(anchors_px, in_front, texts, width: int, height: int, order=None) -> np.ndarray:
    """Which labels to show so that none overlaps another or leaves the canvas.

    ``anchors_px`` (N, 2): each label's anchor (its bottom centre) in pixels; ``order``: the labels in
    the order they are placed (default: as given); a label that would overlap one placed before it,
    lies behind the camera or sticks out of the canvas is hidden."""
    shown = np.zeros(len(texts), bool)
    boxes = []
    for i in (range(len(texts)) if order is None else order):
        if not in_front[i]:
            continue
        w, h = label_box(texts[i])
        x, y = anchors_px[i]
        box = (x - w / 2, y - h, x + w / 2, y)
        if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
            continue
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes):
            continue
        boxes.append(box)
        shown[i] = True
    return shown


class RigDrawing:
    """The frusta and labels in one browser's scene (a viser ``client.scene``): :meth:`update` recolours
    and relabels them, :meth:`hide_camera` hides the frustum and label of the camera the view is
    snapped to (it would frame the picture), :meth:`place_labels` hides labels that would pile up."""

    def __init__(self, scene, cameras: list[RigCamera]):
        self.scene = scene
        self.cameras = cameras
        self.scale = rig_scale([c.c2w for c in cameras])
        self.frusta, self.labels = [], []
        self.visible, self.hidden_camera = True, None
        self.label_mask = np.ones(len(cameras), bool)
        for c in cameras:
            wxyz, pos = viser_pose(c.c2w)
            self.frusta.append(scene.add_camera_frustum(
                f"/rig/{c.name}", fov=c.fov, aspect=c.aspect, scale=self.scale, color=c.color, wxyz=wxyz,
                position=pos, thickness=self.scale * (0.08 if c.is_test else 0.03)))
            # anchored at the top edge of the frustum's picture (OpenCV axes: -y is up), above it
            half, depth = frustum_extent(c.fov, c.aspect, self.scale)
            top = (0.0, -half, depth)
            self.labels.append(scene.add_label(f"/rig/{c.name}/label", c.short_label, position=top,
                                               font_screen_scale=0.8, anchor="bottom-center"))

    def label_anchors(self) -> np.ndarray:
        """World positions of the labels' anchors (N, 3)."""
        out = []
        for c in self.cameras:
            half, depth = frustum_extent(c.fov, c.aspect, self.scale)
            out.append(c.c2w[:, 3] + c.c2w[:, 1] * half - c.c2w[:, 2] * depth)
        return np.asarray(out)

    def update(self, cameras: list[RigCamera]) -> None:
        self.cameras = cameras
        for c, frustum, label in zip(cameras, self.frusta, self.labels):
            frustum.color = c.color
            label.text = c.short_label

    def _apply(self) -> None:
        for k, (f, label) in enumerate(zip(self.frusta, self.labels)):
            on = self.visible and k != self.hidden_camera
            if f.visible != on:
                f.visible = on
            want = on and bool(self.label_mask[k])
            if label.visible != want:
                label.visible = want

    def set_visible(self, visible: bool) -> None:
        self.visible = bool(visible)
        self._apply()

    def hide_camera(self, k: int | None) -> None:
        self.hidden_camera = k
        self._apply()

    def place_labels(self, view_c2w, fov_y: float, width: int, height: int) -> np.ndarray:
        """Show the labels that fit the view (nearest cameras placed first), hide the others."""
        px, front = project(self.label_anchors(), view_c2w, fov_y, width, height)
        depth = (self.label_anchors() - np.asarray(view_c2w)[:3, 3]) @ -np.asarray(view_c2w)[:3, 2]
        order = [k for k in np.argsort(depth) if k != self.hidden_camera]
        self.label_mask = declutter(px, front, [c.short_label for c in self.cameras], width, height, order)
        self._apply()
        return self.label_mask
