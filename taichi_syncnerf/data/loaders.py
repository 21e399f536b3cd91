"""Read a dataset folder's metadata: detect the layout, pair cameras with poses, probe the frames.

Two layouts are recognised (:func:`detect_layout`):

- ``n3dv`` (Plenoptic Video / DyNeRF): ``poses_bounds.npy`` plus ``*.mp4`` videos; sorted video
  ``i`` is pose row ``i``. Poses get the LLFF processing of :mod:`.llff`; rays use NDC.
- ``blender`` (Unsynchronized Dynamic Blender): ``transforms.json`` with ``camera_angle_x`` (or
  ``fl_x``), optional ``width``/``height`` (or ``w``/``h``), ``cx``, ``cy``, and ``frames[i]
  .transform_matrix`` for sorted camera ``i``; frames come from ``camXX.mp4`` or RGBA PNGs under
  ``frames_1/camXX/``. Optional extension keys ``near``, ``far`` and ``scene_bbox`` (2x3) override
  the defaults (2, 6, +-1.3).

Nothing here decodes frames: :func:`scan_scene` returns a :class:`SceneSource` description; the
frame cache (:mod:`.cache`) streams the frames with :func:`.sources.iter_frames`. Recoverable
problems (videos of different lengths, an image size that disagrees with the stored intrinsics)
are reported with :class:`DataWarning` and fixed; everything else raises :class:`DataError`.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from taichi_syncnerf.data import llff
from taichi_syncnerf.data.cameras import Intrinsics
from taichi_syncnerf.data.sources import CameraSource, list_png_sources, video_files, video_sources
from taichi_syncnerf.errors import DataError

N3DV_BBOX = ((-3.0, -1.8, -1.2), (3.0, 1.8, 1.2))  # Sync-NeRF / K-Planes Plenoptic config
N3DV_NDC_NEAR_FAR = (0.0, 2.6)
BLENDER_BBOX = ((-1.3, -1.3, -1.3), (1.3, 1.3, 1.3))
BLENDER_NEAR_FAR = (2.0, 6.0)


class DataWarning(UserWarning):
    """A dataset problem that was worked around (the message names the file and the fix)."""


@dataclass
class SceneSource:
    """What a dataset folder holds, at the videos' native resolution (no frames decoded).

    Attributes:
        root: the dataset folder. layout: "n3dv" or "blender".
        cameras: one :class:`CameraSource` per camera, sorted by name.
        intrinsics: per-camera intrinsics matching the frames' native size.
        c2w: (N, 3, 4) OpenGL camera-to-world. bounds: (N, 2) metric near/far (n3dv) or None.
        near, far: the ray interval the renderer uses (NDC units when ``ndc``).
        bbox: (2, 3) scene box. fps: frames per second. n_frames: frames common to every camera.
        meta_files: metadata files whose change invalidates the cache.
        world_from_source: (4, 4) map from the dataset files' world coordinates to ``c2w``'s
            (LLFF recentring and scaling for n3dv; identity for blender).
    """

    root: Path
    layout: str
    cameras: list[CameraSource]
    intrinsics: list[Intrinsics]
    c2w: np.ndarray
    near: float
    far: float
    ndc: bool
    bbox: np.ndarray
    fps: float
    n_frames: int
    bounds: np.ndarray | None = None
    meta_files: list[Path] = field(default_factory=list)
    world_from_source: np.ndarray = field(default_factory=lambda: np.eye(4))

    @property
    def width(self) -> int:
        return self.cameras[0].width

    @property
    def height(self) -> int:
        return self.cameras[0].height


def warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


def detect_layout(root: str | Path) -> str:
    """Return "n3dv" or "blender" for a dataset folder, or raise DataError saying what is missing."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if (root / "poses_bounds.npy").exists():
        return "n3dv"
    if (root / "transforms.json").exists():
        return "blender"
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise DataError(f"{root}: empty folder (expected poses_bounds.npy or transforms.json and videos)")
    videos = [p.name for p in video_files(root)]
    what = f"{len(videos)} videos ({videos[0]}...)" if videos else f"{len(entries)} entries"
    raise DataError(f"{root}: found {what} but neither poses_bounds.npy nor transforms.json")


def scan_scene(root: str | Path, source: str = "auto", probe=None,
               near_scaling: float = llff.DEFAULT_NEAR_SCALING) -> SceneSource:
    """Describe the dataset in ``root`` (layout, cameras, poses, frame counts).

    Args:
        root: dataset folder.
        source: blender only: "auto" (PNG frames under ``frames_1/`` when present, else videos),
            "video" or "png".
        probe: callable ``path -> (n_frames, height, width, fps)`` for videos (the frame cache passes
            a memoised one so an unchanged dataset is not probed again).
        near_scaling: LLFF scaling (see :mod:`.llff`).
    """
    root = Path(root)
    layout = detect_layout(root)
    if layout == "n3dv":
        scene = _scan_n3dv(root, probe, near_scaling)
    else:
        scene = _scan_blender(root, source, probe)
    _check_sizes(scene)
    scene.n_frames = _common_frames(scene.cameras)
    return scene


def _scan_n3dv(root: Path, probe, near_scaling: float) -> SceneSource:
    pb_path = root / "poses_bounds.npy"
    poses = llff.load_poses_bounds(pb_path, near_scaling)
    files = video_files(root)
    if not files:
        raise DataError(f"{root}: poses_bounds.npy is present but there are no .mp4 videos")
    if len(files) != len(poses.c2w):
        raise DataError(f"{pb_path}: {len(poses.c2w)} pose rows but {len(files)} videos in {root} "
                        "(one row per video, in sorted name order)")
    cams = video_sources(files, probe)
    intr = _match_sizes([poses.intrinsics] * len(cams), cams, pb_path)
    return SceneSource(root=root, layout="n3dv", cameras=cams, intrinsics=intr, c2w=poses.c2w,
                       near=N3DV_NDC_NEAR_FAR[0], far=N3DV_NDC_NEAR_FAR[1], ndc=True,
                       bbox=np.array(N3DV_BBOX), fps=_fps(cams), n_frames=0, bounds=poses.bounds,
                       meta_files=[pb_path],
                       world_from_source=np.diag([1 / poses.scale] * 3 + [1.0])
                       @ np.linalg.inv(poses.pose_avg))


def _read_transforms(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object at the top level")
    if not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise DataError(f"{path}: missing or empty 'frames' list (one entry per camera)")
    if "camera_angle_x" not in meta and "fl_x" not in meta:
        raise DataError(f"{path}: missing 'camera_angle_x' (horizontal field of view in radians)")
    for key in ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "near", "far",
                "width", "height", "w", "h"):
        if key in meta and (not isinstance(meta[key], (int, float)) or not np.isfinite(meta[key])
                            or isinstance(meta[key], bool)):
            raise DataError(f"{path}: '{key}' must be a finite number, got {meta[key]!r}")
    return meta


def _transform_matrices(path: Path, frames: list) -> np.ndarray:
    mats = []
    for i, fr in enumerate(frames):
        m = fr.get("transform_matrix") if isinstance(fr, dict) else None
        try:
            arr = np.asarray(m, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.zeros(0)
        if arr.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(arr)):
            raise DataError(f"{path}: frames[{i}].transform_matrix must be a 4x4 array of numbers")
        mats.append(arr[:3, :4])
    return np.stack(mats)


def _scan_blender(root: Path, source: str, probe) -> SceneSource:
    tf_path = root / "transforms.json"
    meta = _read_transforms(tf_path)
    c2w = _transform_matrices(tf_path, meta["frames"])
    png_root = root / "frames_1"
    if source not in ("auto", "video", "png"):
        raise ValueError(f"source must be 'auto', 'video' or 'png', got {source!r}")
    use_png = source == "png" or (source == "auto" and png_root.is_dir())
    found = list_png_sources(png_root) if use_png else video_files(root)
    if not found:
        where = png_root if use_png else root
        raise DataError(f"{where}: transforms.json is present but there are no "
                        f"{'PNG frame folders' if use_png else '.mp4 videos'}")
    if len(found) != len(c2w):
        raise DataError(f"{tf_path}: {len(c2w)} entries in 'frames' but {len(found)} cameras "
                        f"({'folders in ' + str(png_root) if use_png else 'videos in ' + str(root)})")
    cams = found if use_png else video_sources(found, probe)
    stored_w = meta.get("width", meta.get("w"))
    stored_h = meta.get("height", meta.get("h"))
    intr = []
    for cam in cams:
        w0 = int(stored_w) if stored_w is not None else cam.width
        h0 = int(stored_h) if stored_h is not None else cam.height
        if "fl_x" in meta:
            fx = float(meta["fl_x"])
            k = Intrinsics(fx, float(meta.get("fl_y", fx)), float(meta.get("cx", w0 / 2)),
                           float(meta.get("cy", h0 / 2)), w0, h0)
        else:
            k = Intrinsics.from_fov(float(meta["camera_angle_x"]), w0, h0, meta.get("cx"),
                                    meta.get("cy"), meta.get("camera_angle_y"))
        intr.append(k)
    intr = _match_sizes(intr, cams, tf_path)
    near = float(meta.get("near", BLENDER_NEAR_FAR[0]))
    far = float(meta.get("far", BLENDER_NEAR_FAR[1]))
    if not 0 <= near < far:
        raise DataError(f"{tf_path}: need 0 <= near < far, got near={near:g} far={far:g}")
    bbox = np.array(meta.get("scene_bbox", BLENDER_BBOX), dtype=np.float64)
    if bbox.shape != (2, 3) or not np.all(bbox[1] > bbox[0]):
        raise DataError(f"{tf_path}: 'scene_bbox' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]]")
    fps = float(meta["fps"]) if isinstance(meta.get("fps"), (int, float)) else _fps(cams)
    return SceneSource(root=root, layout="blender", cameras=cams, intrinsics=intr, c2w=c2w,
                       near=near, far=far, ndc=False, bbox=bbox, fps=fps, n_frames=0,
                       meta_files=[tf_path])


def _match_sizes(intrs: list[Intrinsics], cams: list[CameraSource], meta_path: Path
                 ) -> list[Intrinsics]:
    """Rescale intrinsics stored for another image size to the frames' size, with one warning."""
    bad = [i for i, (k, c) in enumerate(zip(intrs, cams)) if (k.width, k.height) != (c.width, c.height)]
    if bad:
        k, c = intrs[bad[0]], cams[bad[0]]
        others = f" and {len(bad) - 1} other camera(s)" if len(bad) > 1 else ""
        warn(f"{c.path}{others}: frames are {c.width}x{c.height} but {meta_path.name} states "
             f"{k.width}x{k.height}; rescaling the intrinsics to the frames")
    return [k.resized(c.width, c.height) for k, c in zip(intrs, cams)]


def _check_sizes(scene: SceneSource) -> None:
    first = scene.cameras[0]
    for cam in scene.cameras[1:]:
        if (cam.width, cam.height) != (first.width, first.height):
            raise DataError(f"{cam.path}: frames are {cam.width}x{cam.height} but {first.path.name} "
                            f"is {first.width}x{first.height}; every camera must have the same size")


def _common_frames(cams: list[CameraSource]) -> int:
    counts = [c.n_frames for c in cams]
    common = min(counts)
    if common < 1:
        bad = cams[int(np.argmin(counts))]
        raise DataError(f"{bad.path}: no frames")
    if max(counts) != common:
        longest = max(counts)
        short = ", ".join(f"{c.path.name} has {c.n_frames}" for c in cams if c.n_frames != longest)
        warn(f"{cams[0].path.parent}: cameras have different frame counts ({short}; the others "
             f"{longest}); using the first {common} frames of every camera")
    return common


def _fps(cams: list[CameraSource]) -> float:
    rates = [c.fps for c in cams if c.fps]
    return float(rates[0]) if rates else 30.0


def read_offsets_init(path: str | Path, n_cameras: int) -> np.ndarray | None:
    """Coarse offsets in frames from ``offsets_init.json`` (``prepare`` / ``sync-estimate``),
    (n_cameras,) float64 relative to the first camera; None if absent."""
    path = Path(path)
    if not path.exists():
        return None
    return read_offsets_gt(path, n_cameras)


def read_offsets_gt(path: str | Path, n_cameras: int) -> np.ndarray | None:
    """Ground-truth offsets in frames from ``offsets_gt.json`` ((n_cameras,) float64), None if absent."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        offs = np.asarray(meta["offsets_frames"], dtype=np.float64)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: expected an object with a list of numbers 'offsets_frames'") from None
    if offs.shape != (n_cameras,) or not np.all(np.isfinite(offs)):
        raise DataError(f"{path}: 'offsets_frames' has {offs.size} values but the dataset has "
                        f"{n_cameras} cameras")
    return offs
