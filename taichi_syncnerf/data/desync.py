"""The paper's protocol that turns a synchronised capture into an unsynchronised one.

Each camera k draws an integer offset ``o_k = round(N(0, sigma))`` frames; its output video
starts at source frame ``start_k = o_k - min(o)`` and all videos keep the same number of frames:
the whole overlapping interval ``F - max(start)`` or its first ``keep`` frames. Hence

    output frame g of camera k == source frame g + start_k of camera k,

and ``offsets_gt.json`` records ``offsets_frames[k] = start_k + source_offset_k`` (the source's
own ``offsets_frames`` when it has an ``offsets_gt.json``, else 0): frame g of camera k shows
scene time ``(g + offsets_frames[k]) / fps``, the same convention as :mod:`.synthetic`.

Works on an n3dv folder (``poses_bounds.npy`` + ``camXX.mp4``) or a blender folder
(``transforms.json`` + ``camXX.mp4`` and/or RGBA PNGs under ``frames_1/camXX/``); the pose file is
copied unchanged.

Example::

    gt = desync("data/synced", "data/unsynced", sigma=5.0, seed=0, keep=270)
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from taichi_syncnerf.data.synthetic import writer as sw
from taichi_syncnerf.data.video import DEFAULT_CRF, VideoWriter, iter_video, probe_video
from taichi_syncnerf.errors import DataError, UserError
from taichi_syncnerf.io_utils import write_json_atomic

_PNG_DIR = "frames_1"


def _source(src: Path) -> tuple[str, list[str], dict]:
    """Layout, camera names (sorted) and per-camera sources {name: {"video", "pngs"}}."""
    if not src.is_dir():
        raise DataError(f"{src}: dataset folder not found")
    if (src / "poses_bounds.npy").is_file():
        layout = "n3dv"
    elif (src / "transforms.json").is_file():
        layout = "blender"
    else:
        raise DataError(f"{src}: no poses_bounds.npy or transforms.json")
    videos = {p.stem: p for p in src.glob("cam*.mp4")}
    pngdirs = {p.name: p for p in (src / _PNG_DIR).glob("cam*") if p.is_dir()}
    if videos and pngdirs and set(videos) != set(pngdirs):
        raise DataError(f"{src}: the videos and {_PNG_DIR}/ name different cameras")
    names = sorted(videos or pngdirs)
    if not names:
        raise DataError(f"{src}: no camXX.mp4 videos (or {_PNG_DIR}/camXX/ frames)")
    if layout == "n3dv":
        try:
            rows = np.load(src / "poses_bounds.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{src / 'poses_bounds.npy'}: unreadable ({e})") from None
        if rows.ndim != 2 or rows.shape[1] != 17:
            raise DataError(f"{src / 'poses_bounds.npy'}: expected N x 17, got {rows.shape}")
        n_poses = rows.shape[0]
    else:
        try:
            n_poses = len(json.loads((src / "transforms.json").read_text())["frames"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{src / 'transforms.json'}: malformed ({e})") from None
    if n_poses != len(names):
        raise DataError(f"{src}: {n_poses} camera poses but {len(names)} cameras")
    per_cam = {}
    for n in names:
        pngs = sorted(pngdirs[n].glob("*.png")) if n in pngdirs else None
        per_cam[n] = {"video": videos.get(n), "pngs": pngs}
    return layout, names, per_cam


def _frame_count(cam: dict) -> tuple[int, float]:
    counts, fps = [], 0.0
    if cam["video"] is not None:
        n, _, _, fps = probe_video(cam["video"])
        counts.append(n)
    if cam["pngs"] is not None:
        counts.append(len(cam["pngs"]))
    return min(counts), fps


def _source_offsets(src: Path, n: int):
    path = src / "offsets_gt.json"
    if not path.is_file():
        return None, None
    try:
        doc = json.loads(path.read_text())
        offsets = [float(v) for v in doc["offsets_frames"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: malformed ({e})") from None
    if len(offsets) != n:
        raise DataError(f"{path}: {len(offsets)} offsets but {n} cameras")
    return np.asarray(offsets), doc.get("fps")


def draw_integer_offsets(cameras: int, sigma: float, seed: int) -> np.ndarray:
    """``round(N(0, sigma))`` per camera from ``default_rng(seed)`` -> (cameras,) int64."""
    rng = np.random.default_rng(seed)
    return np.rint(rng.normal(0.0, float(sigma), int(cameras))).astype(np.int64)


def desync(src: str | os.PathLike, dst: str | os.PathLike, sigma: float = 5.0, seed: int = 0,
           keep: int | None = None, progress: bool = True, overwrite: bool = False,
           crf: int = DEFAULT_CRF) -> dict:
    """Write an unsynchronised copy of the capture ``src`` into ``dst``.

    Args:
        src: n3dv or blender dataset folder.
        dst: output folder (must not exist or be empty; ``overwrite`` replaces a dataset).
        sigma: standard deviation of the offsets, in frames (>= 0).
        seed: seed of the offsets.
        keep: number of frames to keep from the start of the overlap (None: the whole overlap).
        progress: show a progress bar.
        overwrite: replace an existing dataset folder at ``dst``.
        crf: H.264 quality of the re-encoded videos.

    Returns:
        The ground truth written to ``dst/offsets_gt.json`` plus ``path``.
    """
    src, dst = Path(src), Path(dst)
    if not float(sigma) >= 0:
        raise UserError(f"sigma must be >= 0, got {sigma}")
    if src.resolve() == dst.resolve():
        raise UserError(f"{dst}: the output folder must differ from the source")
    layout, names, cams = _source(src)
    counts, rates = zip(*(_frame_count(cams[n]) for n in names))
    n_src = min(counts)
    if len(set(counts)) > 1:
        warnings.warn(f"{src}: cameras have different frame counts ({min(counts)} to "
                      f"{max(counts)}); using the first {n_src} frames of each", stacklevel=2)
    src_offsets, src_fps = _source_offsets(src, len(names))
    fps = float(src_fps or next((r for r in rates if r > 0), 30.0))
    drawn = draw_integer_offsets(len(names), sigma, seed)
    start = drawn - drawn.min()
    overlap = n_src - int(start.max())
    if overlap < 2:
        raise UserError(f"sigma {sigma} is too large for {n_src} frames: the shifted videos "
                        f"overlap on {max(overlap, 0)} frames")
    if keep is not None and not 1 <= int(keep) <= overlap:
        raise UserError(f"keep must be between 1 and the overlap of {overlap} frames, got {keep}")
    length = overlap if keep is None else int(keep)
    from tqdm import tqdm

    staging = sw.begin_output(dst, overwrite)
    try:
        pose = "poses_bounds.npy" if layout == "n3dv" else "transforms.json"
        shutil.copyfile(src / pose, staging / pose)
        with tqdm(total=len(names) * length, desc="desync", unit="frame",
                  disable=not progress) as bar:
            for name, s in zip(names, start):
                _shift_camera(cams[name], staging, name, int(s), length, fps, crf, bar)
        offsets = start.astype(np.float64) + (0.0 if src_offsets is None else src_offsets)
        gt = {
            "fps": fps,
            "frames": length,
            "offsets_frames": [float(v) for v in offsets],
            "layout": layout,
            "seed": int(seed),
            "sigma": float(sigma),
            "drawn_offsets_frames": [int(v) for v in drawn],
            "start_frames": [int(v) for v in start],
            "cameras": len(names),
            "test_camera": 0,
            "videos": [f"{n}.mp4" for n in names if cams[n]["video"] is not None],
            "source": str(src),
            "source_frames": int(n_src),
            "source_offsets_frames": None if src_offsets is None else list(map(float, src_offsets)),
            "scene_time_convention": sw.SCENE_TIME_CONVENTION,
            "shift_convention": "output frame g of camera k is source frame g + start_frames[k]",
            "generator": "taichi-syncnerf desync",
        }
        write_json_atomic(staging / "offsets_gt.json", gt)
        sw.finish_output(staging, dst)
    except BaseException:
        sw.abort_output(staging)
        raise
    return dict(gt, path=str(dst))


def _shift_camera(cam: dict, out: Path, name: str, start: int, length: int, fps: float,
                  crf: int, bar) -> None:
    """Copy frames [start, start + length) of one camera into ``out`` (re-encoding the video,
    copying PNGs losslessly under new consecutive numbers)."""
    if cam["video"] is not None:
        writer = None
        try:
            for i, frame in enumerate(iter_video(cam["video"], max_frames=start + length)):
                if i < start:
                    continue
                if writer is None:
                    writer = VideoWriter(out / f"{name}.mp4", frame.shape[1], frame.shape[0],
                                         fps, crf=crf)
                writer.write(frame)
                if cam["pngs"] is None:
                    bar.update(1)
            if writer is None or writer.n_frames != length:
                raise DataError(f"{cam['video']}: fewer frames than probed")
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        writer.close()
    if cam["pngs"] is not None:
        for g in range(length):
            png = cam["pngs"][start + g]
            target = out / _PNG_DIR / name / f"{g:04d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, target)
            bar.update(1)
