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

Frame counts (:func:`choose_cameras`): a camera whose video is far shorter than the others (under
``SHORT_CAMERA_RATIO`` of the median length) would cut every camera to its length, so it is left out
with a warning naming it (``short_cameras="drop"``, the default) or the dataset is refused
(``"refuse"``); the test camera is never left out (a short test camera is an error saying so). The
remaining cameras use their common first frames, and what that leaves unused is reported in the same
warning line.
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
from taichi_syncnerf.errors import DataError, UserError

N3DV_BBOX = ((-3.0, -1.8, -1.2), (3.0, 1.8, 1.2))  # Sync-NeRF / K-Planes Plenoptic config
N3DV_NDC_NEAR_FAR = (0.0, 2.6)
BLENDER_BBOX = ((-1.3, -1.3, -1.3), (1.3, 1.3, 1.3))
BLENDER_NEAR_FAR = (2.0, 6.0)
SHORT_CAMERA_RATIO = 0.5       # a camera with fewer frames than this share of the median is "short"
SHORT_CAMERAS = ("drop", "refuse")
FPS_TOLERANCE = 0.01           # relative difference of frame rates still taken as one rate


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
        all_names: every camera found, in order (before short cameras were left out).
        dropped: ``(name, n_frames)`` of the cameras left out as too short.
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
    all_names: list[str] = field(default_factory=list)
    dropped: list[tuple[str, int]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def width(self) -> int:
        return self.cameras[0].width

    @property
    def height(self) -> int:
        return self.cameras[0].height


def warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


_REPORTED: set[str] = set()


def warn_once(message: str) -> None:
    """:func:`warn`, but a message already given in this process is not repeated (a command that
    opens its dataset twice, as ``train`` then its evaluation do, reports it once)."""
    if message not in _REPORTED:
        _REPORTED.add(message)
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
               near_scaling: float = llff.DEFAULT_NEAR_SCALING, short_cameras: str = "drop",
               test_camera=None) -> SceneSource:
    """Describe the dataset in ``root`` (layout, cameras, poses, frame counts).

    Args:
        root: dataset folder.
        source: blender only: "auto" (PNG frames under ``frames_1/`` when present, else videos),
            "video" or "png".
        probe: callable ``path -> (n_frames, height, width, fps)`` for videos (the frame cache passes
            a memoised one so an unchanged dataset is not probed again).
        near_scaling: LLFF scaling (see :mod:`.llff`).
        short_cameras: "drop" or "refuse" a camera far shorter than the others (:func:`choose_cameras`).
        test_camera: the held-out camera (name or index among all cameras found, or None): it is
            never left out.
    """
    if short_cameras not in SHORT_CAMERAS:
        raise UserError(f"data.short_cameras must be one of {', '.join(SHORT_CAMERAS)}, got {short_cameras!r}")
    root = Path(root)
    layout = detect_layout(root)
    if layout == "n3dv":
        scene = _scan_n3dv(root, probe, near_scaling)
    else:
        scene = _scan_blender(root, source, probe)
    scene.all_names = scene.names
    _check_unique_names(scene)
    protect = None if test_camera is None else scene.names[resolve_camera(scene.names, test_camera, root)]
    choose_cameras(scene, short_cameras, protect)
    _check_sizes(scene)
    _check_rates(scene)
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
                "width", "height", "w", "h", "fps"):
        if key in meta and (not isinstance(meta[key], (int, float)) or not np.isfinite(meta[key])
                            or isinstance(meta[key], bool)):
            raise DataError(f"{path}: '{key}' must be a finite number, got {meta[key]!r}")
    for key in ("camera_angle_x", "camera_angle_y"):
        if key in meta and not 0 < meta[key] < np.pi:
            raise DataError(f"{path}: '{key}' must be a field of view between 0 and pi radians, got {meta[key]!r}")
    for key in ("fl_x", "fl_y", "width", "height", "w", "h", "fps"):
        if key in meta and isinstance(meta[key], (int, float)) and not isinstance(meta[key], bool) \
                and not meta[key] > 0:
            raise DataError(f"{path}: '{key}' must be positive, got {meta[key]!r}")
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


def resolve_camera(names: list[str], camera, root: Path) -> int:
    """Index of ``camera`` (a name, or an index as int or digits) in ``names``; UserError if absent."""
    if isinstance(camera, (int, np.integer)) and not isinstance(camera, bool) or str(camera).isdigit():
        i = int(camera)
        if 0 <= i < len(names):
            return i
    elif str(camera) in names:
        return names.index(str(camera))
    raise UserError(f"test camera {camera!r} is not in {root} "
                    f"(cameras: {', '.join(names[:6])}{'...' if len(names) > 6 else ''})")


def _frames(n: int) -> str:
    return f"{n} frame{'' if n == 1 else 's'}"


def _file(cam: CameraSource) -> str:
    return cam.path.name if cam.kind == "video" else f"{cam.path.parent.name}/{cam.path.name}"


def choose_cameras(scene: SceneSource, short_cameras: str = "drop", protect: str | None = None) -> None:
    """Decide which cameras and how many frames ``scene`` uses (sets ``cameras``, ``n_frames``...).

    A camera with fewer than ``SHORT_CAMERA_RATIO`` times the median frame count is short: with
    ``short_cameras="drop"`` it is left out (its pose and intrinsics with it), with ``"refuse"`` the
    dataset is an error. The camera named ``protect`` (the test camera) is never left out: when it
    is short, that is an error saying so. The others use their first ``min(frame counts)`` frames.
    What is left out or unused is reported in one warning line.
    """
    cams = scene.cameras
    counts = np.array([c.n_frames for c in cams])
    where = scene.root.resolve()          # one text whoever opens it: the warning shows once
    median = float(np.median(counts))
    if median < 1:
        bad = cams[int(np.argmin(counts))]
        raise DataError(f"{bad.path}: no frames")
    short = [i for i, n in enumerate(counts) if n < SHORT_CAMERA_RATIO * median]
    dropped_note = ""
    if short:
        listed = ", ".join(f"{_file(cams[i])} has {_frames(counts[i])}" for i in short)
        rule = f"under {SHORT_CAMERA_RATIO:.0%} of the cameras' median length, {median:g} frames"
        if protect is not None and protect in [cams[i].name for i in short]:
            t = next(i for i in short if cams[i].name == protect)
            other = next((c.name for i, c in enumerate(cams) if i not in short), None)
            raise DataError(f"{cams[t].path}: the test camera {protect} (data.test_camera) has only "
                            f"{_frames(counts[t])}, {rule}; hold out another camera"
                            + (f" (e.g. -o data.test_camera={other})" if other else "")
                            + " or give it its whole video")
        if short_cameras == "refuse":
            raise DataError(f"{where}: {listed}, {rule} (data.short_cameras: refuse; 'drop' leaves "
                            f"{'it' if len(short) == 1 else 'them'} out)")
        keep = [i for i in range(len(cams)) if i not in short]
        if len(keep) < 2:
            raise DataError(f"{where}: {listed}, {rule}; fewer than 2 cameras would remain")
        scene.dropped = [(cams[i].name, int(counts[i])) for i in short]
        scene.cameras = [cams[i] for i in keep]
        scene.intrinsics = [scene.intrinsics[i] for i in keep]
        scene.c2w = scene.c2w[keep]
        if scene.bounds is not None:
            scene.bounds = scene.bounds[keep]
        gone = ", ".join(f"{_file(cams[i])} ({_frames(counts[i])})" for i in short)
        dropped_note = f"left out {gone}: {rule} (data.short_cameras: drop)"
        cams, counts = scene.cameras, counts[keep]
    common = int(counts.min())
    unused_note = ""
    if counts.max() != common:
        longest = int(counts.max())
        shorter = ", ".join(f"{_file(c)} has {c.n_frames}" for c in cams if c.n_frames != longest)
        unused_note = (f"cameras have different frame counts ({shorter}; the others {longest}); using the "
                       f"first {common} frames of every camera ({longest - common} of {longest} unused "
                       f"in the longest)")
    if dropped_note or unused_note:
        warn_once(f"{where}: " + "; ".join(n for n in (dropped_note, unused_note) if n))
    scene.n_frames = common


def _check_unique_names(scene: SceneSource) -> None:
    seen = {}
    for cam in scene.cameras:
        if cam.name in seen:
            raise DataError(f"{cam.path}: camera name {cam.name!r} is also {seen[cam.name]}; every camera "
                            "needs its own name")
        seen[cam.name] = cam.path


def _check_rates(scene: SceneSource) -> None:
    """Every video must have one frame rate (within ``FPS_TOLERANCE``): frame f of every camera
    must span the same time."""
    rated = [c for c in scene.cameras if c.fps]
    if not rated:
        return
    ref = rated[0]
    for cam in rated[1:]:
        if abs(cam.fps - ref.fps) > FPS_TOLERANCE * ref.fps:
            raise DataError(f"{cam.path}: {cam.fps:g} fps but {ref.path.name} is {ref.fps:g} fps; every "
                            "camera must have one frame rate (`prepare` resamples videos of different rates)")


def _fps(cams: list[CameraSource]) -> float:
    rates = [c.fps for c in cams if c.fps]
    return float(rates[0]) if rates else 30.0


def read_offsets_init(path: str | Path, names: list[str], kept: list[str] | None = None,
                      max_spread: float | None = None) -> np.ndarray | None:
    """Coarse offsets in frames from ``offsets_init.json`` (``prepare`` / ``sync-estimate``): (len(kept),)
    float64, or None if absent (see :func:`read_offsets_gt` for ``names`` and ``kept``).

    ``max_spread``: the longest video's frame count; offsets spread wider than that leave no common
    scene time and are refused as absurd."""
    offs = read_offsets_gt(path, names, kept)
    if offs is not None and max_spread is not None and offs.size and np.ptp(offs) > max_spread:
        raise DataError(f"{path}: offsets span {np.ptp(offs):g} frames but the videos are at most "
                        f"{max_spread:g} frames long (no common scene time); delete it or run sync-estimate again")
    return offs


def _listed_names(doc: dict) -> list[str] | None:
    """The camera names an offsets file lists: ``cameras`` (names) or ``videos`` (file names)."""
    for key in ("cameras", "videos"):
        v = doc.get(key)
        if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            return [Path(x).stem if key == "videos" else x for x in v]
    return None


def read_offsets_gt(path: str | Path, names, kept: list[str] | None = None) -> np.ndarray | None:
    """Offsets in frames from ``offsets_gt.json`` (or any file with ``offsets_frames``); None if absent.

    Args:
        names: every camera of the dataset, in order (or their number, for a file without names).
        kept: the cameras used (default: all); the result has one value per kept camera. A file that
            lists its cameras (``cameras`` or ``videos``) is matched by name, else by position.
    """
    path = Path(path)
    if not path.exists():
        return None
    if isinstance(names, (int, np.integer)):
        names = [str(i) for i in range(int(names))]
    names = list(names)
    kept = names if kept is None else list(kept)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise TypeError
        raw = meta["offsets_frames"]
        if not isinstance(raw, list) or any(isinstance(v, (bool, str)) or v is None for v in raw):
            raise TypeError
        offs = np.asarray(raw, dtype=np.float64)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: expected an object with a list of numbers 'offsets_frames'") from None
    if offs.ndim != 1:
        raise DataError(f"{path}: 'offsets_frames' must be a flat list of numbers")
    if not np.all(np.isfinite(offs)):
        raise DataError(f"{path}: 'offsets_frames' holds NaN or infinite values")
    listed = _listed_names(meta)
    if listed is not None:
        if len(listed) != offs.size:
            raise DataError(f"{path}: {offs.size} values in 'offsets_frames' but {len(listed)} cameras listed")
        dup = sorted({n for n in listed if listed.count(n) > 1})
        if dup:
            raise DataError(f"{path}: camera {dup[0]} is listed more than once")
        missing = [n for n in kept if n not in listed]
        if missing:
            raise DataError(f"{path}: no offset for camera {missing[0]} (it lists {', '.join(listed[:6])}"
                            f"{'...' if len(listed) > 6 else ''}; the dataset has {', '.join(names[:6])}"
                            f"{'...' if len(names) > 6 else ''})")
        return offs[[listed.index(n) for n in kept]]
    if offs.shape != (len(names),):
        raise DataError(f"{path}: 'offsets_frames' has {offs.size} values but the dataset has "
                        f"{len(names)} cameras")
    return offs[[names.index(n) for n in kept]]
