"""Camera paths: keyframes of pose, field of view and scene time, and the ``camera_path.json`` file.

A path is a list of :class:`Keyframe` (an OpenGL camera-to-world in the MODEL's world, a vertical
field of view in degrees and a scene time in frames), spread evenly over ``seconds`` of output
video. :func:`interpolate` makes one camera per output frame: positions on a Catmull-Rom spline
through the keyframes (or straight lines), rotations by slerp between neighbouring keyframes,
field of view and scene time linearly. Scene time is free of the camera: equal times at two
keyframes freeze the scene while the camera moves (bullet time), a time span shorter than the
path's frames plays it slowly, decreasing times play it backwards.

The file is nerfstudio's layout::

    {"camera_type": "perspective", "render_height": H, "render_width": W, "fps": F, "seconds": S,
     "camera_path": [{"camera_to_world": [16 numbers, row-major 4x4], "fov": degrees (vertical),
                      "aspect": W / H, "time": scene frame}, ...],
     "keyframes_syncnerf": [...], "smoothness": "spline" | "linear", "loop": bool}

one ``camera_path`` entry per output frame, ``camera_to_world`` in the OpenGL convention (x right,
y up, z back) and in the DATASET's world as its files store it: ``poses_bounds.npy`` rows turned to
OpenGL (before LLFF's recentring and scaling), or ``transforms.json``'s matrices as they are. The
dataset loader maps that world to the model's with ``world_from_source`` (a similarity: for a
forward-facing capture the inverse of the average pose, then a scale);
:func:`to_model` / :func:`to_dataset` apply it and its inverse. The keyframes the viewer edited
travel along in ``keyframes_syncnerf`` (same fields, dataset world) so that a saved path can be
loaded back and edited; nerfstudio ignores that key.

Rendering an entry (``render --camera-path``) uses square pixels and a centred principal point,
as nerfstudio does: ``fx = fy = H / 2 / tan(fov / 2)``. A dataset camera written as an entry (its
pose, its vertical field of view, its size, the scene time of one of its frames) renders exactly
as that camera's own frame (tests/viewer/test_paths.py).

Everything here is numpy; nothing imports Taichi.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from taichi_syncnerf.errors import UserError

SMOOTHNESS = ("spline", "linear")


# ---------------------------------------------------------------- rotations
def quat_to_matrix(wxyz) -> np.ndarray:
    """(3, 3) rotation of a quaternion ``(w, x, y, z)`` (normalised here)."""
    w, x, y, z = np.asarray(wxyz, np.float64) / np.linalg.norm(wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(R) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a (3, 3) rotation (Shepperd's method)."""
    R = np.asarray(R, np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def slerp(q0, q1, u: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (the shorter arc), ``u`` in [0, 1]."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:                      # nearly the same rotation: lerp, renormalised
        q = q0 + u * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(1.0, dot))
    s = math.sin(theta)
    return (math.sin((1.0 - u) * theta) * q0 + math.sin(u * theta) * q1) / s


# ---------------------------------------------------------------- keyframes and interpolation
@dataclass(frozen=True)
class Keyframe:
    """One keyframe: ``c2w`` (3, 4) OpenGL camera-to-world (model world), ``fov`` vertical degrees,
    ``time`` scene frame."""

    c2w: np.ndarray
    fov: float
    time: float


def _catmull_rom(p0, p1, p2, p3, u: float) -> np.ndarray:
    """Uniform Catmull-Rom between p1 (u=0) and p2 (u=1)."""
    u2, u3 = u * u, u * u * u
    return 0.5 * ((2.0 * p1) + (-p0 + p2) * u + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * u2
                  + (-p0 + 3.0 * p1 - 3.0 * p2 + p3) * u3)


def _segment(n_keys: int, n_frames: int, loop: bool) -> tuple[np.ndarray, np.ndarray]:
    """For each output frame: the keyframe segment it lies in and the fraction ``u`` along it.

    Keyframes are evenly spaced: without a loop the first frame is the first keyframe and the last
    frame the last one; with a loop the path returns to the first keyframe after the last frame."""
    segments = n_keys if loop else n_keys - 1
    if n_frames == 1:
        pos = np.zeros(1)
    elif loop:
        pos = np.arange(n_frames) * segments / n_frames
    else:
        pos = np.linspace(0.0, segments, n_frames)
    seg = np.minimum(np.floor(pos).astype(int), segments - 1)
    return seg, pos - seg


def interpolate(keyframes: list[Keyframe], n_frames: int, smoothness: str = "spline",
                loop: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One camera per output frame along the keyframes.

    Returns ``(c2w (n, 3, 4), fov (n,) degrees, time (n,) scene frames)``. One keyframe gives
    ``n`` copies of it.
    """
    if smoothness not in SMOOTHNESS:
        raise ValueError(f"smoothness must be one of {SMOOTHNESS}, got {smoothness!r}")
    if not keyframes:
        raise ValueError("a camera path needs at least one keyframe")
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ValueError("a camera path needs at least one frame")
    K = len(keyframes)
    pos = np.stack([np.asarray(k.c2w, np.float64)[:3, 3] for k in keyframes])
    quats = [matrix_to_quat(np.asarray(k.c2w, np.float64)[:3, :3]) for k in keyframes]
    fovs = np.array([float(k.fov) for k in keyframes])
    times = np.array([float(k.time) for k in keyframes])
    if K == 1:
        c2w = np.repeat(np.asarray(keyframes[0].c2w, np.float64)[None, :3, :4], n_frames, axis=0)
        return c2w, np.full(n_frames, fovs[0]), np.full(n_frames, times[0])
    seg, u = _segment(K, n_frames, loop)

    def key(i):                                   # keyframe index i, wrapped or clamped
        return i % K if loop else min(max(i, 0), K - 1)

    def point(i):
        if loop or 0 <= i < K:
            return pos[key(i)]
        # phantom end points: the spline leaves the end keyframes along the end segments
        return 2.0 * pos[0] - pos[1] if i < 0 else 2.0 * pos[-1] - pos[-2]

    out_c2w = np.empty((n_frames, 3, 4))
    out_fov, out_time = np.empty(n_frames), np.empty(n_frames)
    for j, (s, f) in enumerate(zip(seg, u)):
        a, b = key(s), key(s + 1)
        if smoothness == "spline":
            p = _catmull_rom(point(s - 1), point(s), point(s + 1), point(s + 2), float(f))
        else:
            p = (1.0 - f) * pos[a] + f * pos[b]
        out_c2w[j, :3, :3] = quat_to_matrix(slerp(quats[a], quats[b], float(f)))
        out_c2w[j, :3, 3] = p
        out_fov[j] = (1.0 - f) * fovs[a] + f * fovs[b]
        out_time[j] = (1.0 - f) * times[a] + f * times[b]
    return out_c2w, out_fov, out_time


# ---------------------------------------------------------------- world coordinates
def _homogeneous(c2w) -> np.ndarray:
    c2w = np.asarray(c2w, np.float64)
    out = np.eye(4)
    out[:3, :4] = c2w[:3, :4]
    return out


def _apply(similarity: np.ndarray, c2w) -> np.ndarray:
    """(4, 4) pose moved by a similarity transform: rotation columns renormalised (a scale moves
    the centre, not the axes)."""
    m = np.asarray(similarity, np.float64) @ _homogeneous(c2w)
    m[:3, :3] /= np.linalg.norm(m[:3, :3], axis=0, keepdims=True)
    m[3] = (0.0, 0.0, 0.0, 1.0)
    return m


def to_model(c2w_dataset, world_from_source) -> np.ndarray:
    """(3, 4) model-world pose of a dataset-world (4, 4) or (3, 4) OpenGL pose."""
    return _apply(world_from_source, c2w_dataset)[:3]


def to_dataset(c2w_model, world_from_source) -> np.ndarray:
    """(4, 4) dataset-world pose of a model-world (3, 4) OpenGL pose (inverse of :func:`to_model`)."""
    return _apply(np.linalg.inv(np.asarray(world_from_source, np.float64)), c2w_model)


def world_from_source(source) -> np.ndarray:
    """The dataset's (4, 4) map from its files' world to the model's (a RaySource or a Dataset)."""
    ds = getattr(source, "ds", source)
    return np.asarray(ds.scene.world_from_source, np.float64)


# ---------------------------------------------------------------- intrinsics
def fov_degrees(fov_y_radians: float) -> float:
    return float(np.degrees(fov_y_radians))


def entry_intrinsics(fov_deg: float, width: int, height: int):
    """Intrinsics of an entry rendered at ``width`` x ``height``: square pixels, vertical field of
    view ``fov_deg``, principal point at the centre (nerfstudio's rendering of a camera path)."""
    from taichi_syncnerf.data.cameras import Intrinsics

    f = 0.5 * int(height) / math.tan(0.5 * math.radians(float(fov_deg)))
    return Intrinsics(f, f, int(width) / 2.0, int(height) / 2.0, int(width), int(height))


# ---------------------------------------------------------------- the file
@dataclass
class CameraPath:
    """A camera path as the file holds it: one camera per output frame (dataset world)."""

    c2w: np.ndarray                  # (N, 4, 4) OpenGL, dataset world
    fov: np.ndarray                  # (N,) vertical degrees
    time: np.ndarray                 # (N,) scene frames
    width: int
    height: int
    fps: float
    keyframes: list[Keyframe] = field(default_factory=list)    # dataset world; may be empty
    smoothness: str = "spline"
    loop: bool = False

    def __len__(self) -> int:
        return len(self.time)

    @property
    def seconds(self) -> float:
        return len(self) / self.fps

    def to_json(self) -> dict:
        aspect = self.width / self.height
        return {
            "camera_type": "perspective", "render_height": int(self.height), "render_width": int(self.width),
            "fps": float(self.fps), "seconds": float(self.seconds),
            "camera_path": [{"camera_to_world": [float(v) for v in np.asarray(m).reshape(16)],
                             "fov": float(f), "aspect": float(aspect), "time": float(t)}
                            for m, f, t in zip(self.c2w, self.fov, self.time)],
            "keyframes_syncnerf": [{"camera_to_world": [float(v) for v in _homogeneous(k.c2w).reshape(16)],
                                    "fov": float(k.fov), "time": float(k.time)} for k in self.keyframes],
            "smoothness": self.smoothness, "loop": bool(self.loop),
        }


def make_path(keyframes_model: list[Keyframe], world_from_src, width: int, height: int, fps: float,
              seconds: float, smoothness: str = "spline", loop: bool = False) -> CameraPath:
    """The file's content for keyframes in the model's world: ``round(fps * seconds)`` frames
    (at least one), interpolated, then moved to the dataset's world."""
    if fps <= 0 or seconds <= 0:
        raise UserError(f"a camera path needs fps > 0 and seconds > 0 (got fps {fps:g}, seconds {seconds:g})")
    n = max(1, int(round(fps * seconds)))
    c2w, fov, time = interpolate(keyframes_model, n, smoothness, loop)
    to_ds = [to_dataset(m, world_from_src) for m in c2w]
    keys = [Keyframe(to_dataset(k.c2w, world_from_src), float(k.fov), float(k.time)) for k in keyframes_model]
    return CameraPath(np.stack(to_ds), fov, time, int(width), int(height), float(fps), keys, smoothness, bool(loop))


def write_path(path, camera_path: CameraPath) -> Path:
    """Write ``camera_path.json`` atomically."""
    from taichi_syncnerf.io_utils import write_json_atomic

    path = Path(path)
    write_json_atomic(path, camera_path.to_json())
    return path


def _number(value, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise UserError(f"{where} must be positive, got {value!r}")
    return float(value)


def _pose(value, where: str) -> np.ndarray:
    try:
        m = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape != (16,) or not np.all(np.isfinite(m)):
        raise UserError(f"{where}.camera_to_world must be 16 numbers (a row-major 4x4 matrix)")
    m = m.reshape(4, 4)
    R = m[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise UserError(f"{where}.camera_to_world: its 3x3 part is not a rotation")
    return m


def read_path(path) -> CameraPath:
    """Read and check a ``camera_path.json`` (one-line UserError naming the file and entry)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: camera path not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object at the top level")
    kind = doc.get("camera_type", "perspective")
    if kind != "perspective":
        raise UserError(f"{path}: camera_type {kind!r} is not supported (only 'perspective')")
    for key in ("render_height", "render_width", "camera_path"):
        if key not in doc:
            raise UserError(f"{path}: missing {key!r}")
    h = _number(doc["render_height"], f"{path}: render_height", positive=True)
    w = _number(doc["render_width"], f"{path}: render_width", positive=True)
    if h != int(h) or w != int(w):
        raise UserError(f"{path}: render_width and render_height must be whole numbers")
    entries = doc["camera_path"]
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: 'camera_path' must be a non-empty list (one entry per frame)")
    fps = _number(doc.get("fps", 30.0), f"{path}: fps", positive=True)
    c2w, fov, time = [], [], []
    for i, e in enumerate(entries):
        where = f"{path}: camera_path[{i}]"
        if not isinstance(e, dict):
            raise UserError(f"{where} must be an object")
        for key in ("camera_to_world", "fov"):
            if key not in e:
                raise UserError(f"{where}: missing {key!r}")
        c2w.append(_pose(e["camera_to_world"], where))
        f = _number(e["fov"], f"{where}.fov", positive=True)
        if f >= 180.0:
            raise UserError(f"{where}.fov must be below 180 degrees, got {f:g}")
        fov.append(f)
        time.append(_number(e.get("time", 0.0), f"{where}.time"))
    keys = []
    for i, k in enumerate(doc.get("keyframes_syncnerf") or []):
        where = f"{path}: keyframes_syncnerf[{i}]"
        if not isinstance(k, dict):
            raise UserError(f"{where} must be an object")
        keys.append(Keyframe(_pose(k.get("camera_to_world"), where), _number(k.get("fov"), f"{where}.fov", True),
                             _number(k.get("time", 0.0), f"{where}.time")))
    smooth = doc.get("smoothness", "spline")
    return CameraPath(np.stack(c2w), np.asarray(fov), np.asarray(time), int(w), int(h), fps, keys,
                      smooth if smooth in SMOOTHNESS else "spline", bool(doc.get("loop", False)))


def keyframes_in_model(camera_path: CameraPath, world_from_src, most: int = 12) -> list[Keyframe]:
    """The path's keyframes in the model's world: those it stores, else ``most`` of its entries
    evenly spaced (a file written elsewhere)."""
    keys = camera_path.keyframes
    if not keys:
        idx = np.unique(np.linspace(0, len(camera_path) - 1, min(most, len(camera_path))).round().astype(int))
        keys = [Keyframe(camera_path.c2w[i], float(camera_path.fov[i]), float(camera_path.time[i])) for i in idx]
    return [Keyframe(to_model(k.c2w, world_from_src), k.fov, k.time) for k in keys]
