"""``taichi-syncnerf prepare VIDEOS OUT``: unsynchronised videos -> a dataset ``train`` reads.

1. Probe the inputs; choose one frame rate and size (warning per resampled video).
2. Decode every video once into a temporary frame store, keeping small grey frames for the
   visual synchronisation and ``sfm_frames`` evenly spaced frames for structure from motion.
3. Structure from motion (:mod:`.sfm`) and its checks (:mod:`.checks`); cameras that do not
   register are left out with a warning, fewer than three is an error.
4. Coarse offsets from the sound tracks (GCC-PHAT) when every video has one, else from what
   moves in the videos (epipolar consistency, :mod:`.visual_sync`); trim the videos to their
   common overlap.
5. Write ``camXX.mp4``, ``poses_bounds.npy``, ``offsets_init.json``, ``prepare.json`` into a
   staging folder renamed onto ``OUT`` at the end (OUT never holds a half-written dataset).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from taichi_syncnerf.capture import layout, media, sync
from taichi_syncnerf.capture.audio import AUDIO_RATE, extract_audio
from taichi_syncnerf.capture.media import warn
from taichi_syncnerf.capture.visual_sync import SmallFrames
from taichi_syncnerf.errors import DataError, UserError
from taichi_syncnerf.io_utils import remove_stale_temporaries, temporary_prefix

SYNC_METHODS = ("auto", "audio", "visual", "none")


def _staging(out: Path, overwrite: bool) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UserError(f"{out}: exists and is not empty (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)        # staging folders of a prepare that was killed
    return Path(tempfile.mkdtemp(prefix=temporary_prefix(out.name), suffix=".tmp", dir=out.parent))


def _frame(full: list, i: int, plan, video) -> np.ndarray:
    """Frame ``i`` at the SfM size (kept while decoding, or decoded again when the frame count
    differed from the estimate)."""
    if i < len(full) and full[i] is not None:
        return full[i]
    for j, frame in enumerate(media.decode(video, plan.sfm_width, plan.sfm_height, plan.fps)):
        if j == i:
            return frame
    raise DataError(f"{video.path}: frame {i} could not be decoded")


def _decode_all(plan, store: Path, sfm_frames: int, bar):
    """Decode every video into ``store/NNN.npy``; returns (frame counts, small grey frames for
    the visual synchronisation, frames for structure from motion)."""
    import cv2

    counts, small, picked = [], [], []
    shape = (plan.height, plan.width, 3)
    for k, v in enumerate(plan.videos):
        cap = plan.frames_of(v) + 4
        keep = set(np.linspace(0, plan.frames_of(v) - 1, max(1, sfm_frames)).round().astype(int))
        mm = np.lib.format.open_memmap(store / f"{k:03d}.npy", mode="w+", dtype=np.uint8,
                                       shape=(cap,) + shape)
        grey, n = SmallFrames(), 0
        full = []
        for frame in media.decode(v, plan.sfm_width, plan.sfm_height, plan.fps, max_frames=cap):
            full.append(frame if n in keep else None)
            if frame.shape[:2] != shape[:2]:
                frame = cv2.resize(frame, (plan.width, plan.height), interpolation=cv2.INTER_AREA)
            mm[n] = frame
            grey.add(frame)
            n += 1
            bar.update(1)
        mm.flush()
        del mm
        idx = np.unique(np.linspace(0, n - 1, max(1, sfm_frames)).round().astype(int))
        picked.append([_frame(full, i, plan, v) for i in idx])
        counts.append(n)
        small.append(grey)
    return counts, small, picked


def _estimate(method: str, plan, idx: list, small: list, rec, names: list,
              max_offset_s: float | None):
    """Coarse offsets (frames) of the cameras ``idx`` relative to the first of them."""
    vids = [plan.videos[i] for i in idx]
    durations = [plan.frames_of(v) / plan.fps for v in vids]
    max_s = max_offset_s if max_offset_s is not None else sync.default_max_offset_s(
        durations, plan.fps)
    if method == "none":
        return sync.SyncEstimate("none", np.zeros(len(idx)), np.full(len(idx), np.inf))
    if method in ("auto", "audio"):
        missing = [v.path.name for v in vids if not v.has_audio]
        if not missing:
            tracks = [extract_audio(v.path, AUDIO_RATE) for v in vids]
            empty = [v.path.name for v, t in zip(vids, tracks) if t is None or len(t) < AUDIO_RATE // 10]
            if not empty:
                return sync.offsets_from_audio(tracks, AUDIO_RATE, plan.fps, max_s, names)
            missing = empty
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        if method == "audio":
            raise UserError(f"--sync audio: {missing[0]} has no sound track{more}; "
                            "use --sync visual")
        if len(missing) < len(vids):
            warn(f"{missing[0]} has no sound track{more}: synchronising from the pictures")
    return sync.offsets_from_motion([small[i] for i in idx], [rec.cameras[i].c2w for i in idx],
                                    [rec.cameras[i].focal for i in idx], rec.width,
                                    int(round(max_s * plan.fps)), names)


def prepare(videos_dir, out, frames: int | None = None, size=None, fps: float | None = None,
            sync_method: str = "auto", sfm_frames: int = 3, intrinsics: str = "auto",
            fov: float | None = None, max_offset_s: float | None = None, threads: int = 2,
            seed: int = 0, overwrite: bool = False, progress: bool = True) -> dict:
    """Build a dataset in ``out`` from the videos in ``videos_dir``; returns ``prepare.json``."""
    from tqdm import tqdm

    from taichi_syncnerf.capture import checks, sfm

    if intrinsics not in ("auto", "shared", "per-camera"):
        raise UserError(f"--intrinsics must be auto, shared or per-camera, got {intrinsics!r}")
    if sync_method not in SYNC_METHODS:
        raise UserError(f"--sync must be one of {', '.join(SYNC_METHODS)}, got {sync_method!r}")
    if frames is not None and frames < 2:
        raise UserError(f"--frames must be at least 2, got {frames}")
    if sfm_frames < 1:
        raise UserError(f"--sfm-frames must be at least 1, got {sfm_frames}")
    out = Path(out)
    vids = media.list_inputs(videos_dir)
    if len(vids) < 3:
        raise UserError(f"{videos_dir}: {len(vids)} video{'s' if len(vids) != 1 else ''} found; "
                        "structure from motion needs at least three cameras")
    plan = media.plan_inputs(vids, size=size, fps=fps)
    silent = [v.path for v in vids if not v.has_audio]
    if sync_method == "audio" and silent:
        raise UserError(f"--sync audio: {silent[0]} has no sound track; use --sync visual")
    sfm.import_pycolmap()
    staging = _staging(out, overwrite)
    try:
        store = staging / ".frames"
        store.mkdir()
        total = sum(plan.frames_of(v) for v in plan.videos)
        with tqdm(total=total, desc="decode", unit="frame", disable=not progress) as bar:
            counts, small, picked = _decode_all(plan, store, sfm_frames, bar)
        prior = None if fov is None else (0.5 / np.tan(np.radians(fov) / 2) * plan.sfm_width
                                          / max(plan.sfm_width, plan.sfm_height))
        if intrinsics == "auto":      # videos of one size: most likely one camera model
            intrinsics = "shared" if len({(v.width, v.height) for v in vids}) == 1 else "per-camera"
        rec = sfm.reconstruct(picked, staging / ".sfm", intrinsics=intrinsics, focal_prior=prior,
                              threads=threads, seed=seed, progress=progress)
        in_names = [v.path.name for v in plan.videos]
        idx = rec.registered
        if len(idx) < 3:
            raise DataError(f"{videos_dir}: only {len(idx)} of {len(vids)} cameras registered in "
                            "structure from motion (need 3); the cameras must share a view of a "
                            "textured static background")
        for k, why in sorted(rec.reasons.items()):
            warn(f"{plan.videos[k].path}: left out, it did not register ({why})")
        checks.check_reconstruction(rec, in_names, fov=fov)
        est = _estimate(sync_method, plan, idx, small, rec, [in_names[i] for i in idx],
                        max_offset_s)
        start, length, residual = sync.overlap(est.offsets, [counts[i] for i in idx], frames)
        doc = _write(staging, plan, rec, idx, est, start, length, residual, in_names, store, progress)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(staging / ".sfm", ignore_errors=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return doc


def _write(staging, plan, rec, idx, est, start, length, residual, in_names, store, progress):
    from tqdm import tqdm

    from taichi_syncnerf.data.video import VideoWriter

    names = layout.camera_names(len(idx))
    zoom = plan.width / rec.width               # SfM ran on frames of the inputs' own size
    rows = [layout.llff_row(rec.cameras[i].c2w, plan.height, plan.width,
                            rec.cameras[i].focal * zoom, rec.cameras[i].depths) for i in idx]
    focals = np.array([r[14] for r in rows])
    if focals.max() / focals.min() > 1.02:
        warn(f"focal lengths differ by {100 * (focals.max() / focals.min() - 1):.1f} % between "
             f"cameras; the Plenoptic layout uses {names[0]}'s ({focals[0]:.1f} px) for all")
    with tqdm(total=len(idx) * length, desc="write", unit="frame", disable=not progress) as bar:
        for name, i, s in zip(names, idx, start):
            frames = np.load(store / f"{i:03d}.npy", mmap_mode="r")
            with VideoWriter(staging / f"{name}.mp4", plan.width, plan.height, plan.fps) as w:
                for f in range(int(s), int(s) + length):
                    w.write(np.asarray(frames[f]))
                    bar.update(1)
    layout.write_poses_bounds(staging / "poses_bounds.npy", rows)
    if len(rec.points):          # the sparse points, in the world of the poses (Sync-4DGS starts from them)
        np.save(staging / layout.POINTS3D, rec.points.astype(np.float32))
    layout.write_offsets_init(staging / layout.OFFSETS_INIT, names, residual, plan.fps, est.method,
                              {"source": "taichi-syncnerf prepare"})
    by_input = {i: n for n, i in zip(names, idx)}
    inputs = []
    for k, v in enumerate(plan.videos):
        c = rec.cameras[k]
        entry = {"file": in_names[k], "camera": by_input.get(k), "registered": c is not None,
                 "reason": rec.reasons.get(k), "frames": v.n_frames, "fps": v.fps,
                 "size": [v.width, v.height], "has_audio": v.has_audio}
        if c is not None:
            j = idx.index(k)
            entry.update({"start_frame": int(start[j]), "offset_estimate_frames": float(est.offsets[j]),
                          "sync_prominence": float(min(est.prominence[j], 1e6)),
                          "reprojection_error_px": round(c.reprojection_error, 4),
                          "points": int(len(c.depths)), "focal_px": round(c.focal * zoom, 3),
                          "frames_registered": c.frames_registered})
        inputs.append(entry)
    doc = {"format": 1, "fps": plan.fps, "width": plan.width, "height": plan.height,
           "frames": int(length), "cameras": names, "inputs": inputs, "sync": est.to_dict(),
           "sfm": {"points": rec.n_points, "mean_reprojection_error_px": rec.mean_reprojection_error,
                   "registered": len(idx), "of": len(plan.videos)}}
    layout.write_prepare_json(staging / layout.PREPARE_JSON, doc)
    return doc
