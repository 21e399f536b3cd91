"""Coarse offsets for a dataset folder that already exists (``taichi-syncnerf sync-estimate DATA``).

For a Plenoptic or Blender folder of videos (``make-scene`` output, a ``desync`` copy, or a
capture laid out by hand): offsets from the sound tracks when every video has one, else from the
videos' motion made consistent by the dataset's poses (epipolar lines), written to
``DATA/offsets_init.json`` relative to the first camera.
The videos are not changed (their poses stay paired with them), so offsets are not trimmed away
here: ``train`` starts the offsets from the file (``offsets.init_from_dataset``).

Example::

    doc = estimate_dataset_offsets("data/synthetic")   # also writes data/synthetic/offsets_init.json
"""
from __future__ import annotations

from pathlib import Path

from taichi_syncnerf.capture import layout, media, sync
from taichi_syncnerf.capture.audio import AUDIO_RATE, extract_audio
import numpy as np

from taichi_syncnerf.capture.visual_sync import SmallFrames
from taichi_syncnerf.errors import DataError, UserError


def estimate_dataset_offsets(data_dir, method: str = "auto", max_offset_s: float | None = None,
                             progress: bool = True) -> dict:
    """Estimate, write and return ``offsets_init.json`` of the dataset in ``data_dir``."""
    from tqdm import tqdm

    from taichi_syncnerf.data.loaders import scan_scene

    if method not in ("auto", "audio", "visual"):
        raise UserError(f"--sync must be auto, audio or visual, got {method!r}")
    root = Path(data_dir)
    scene = scan_scene(root)
    if scene.cameras[0].kind != "video":
        raise DataError(f"{root}: sync-estimate needs the cameras' videos (found PNG frames)")
    vids = [media.probe(c.path) for c in scene.cameras]
    names = [c.name for c in scene.cameras]
    fps = scene.fps
    max_s = max_offset_s if max_offset_s is not None else sync.default_max_offset_s(
        [v.duration for v in vids], fps)
    if method != "visual" and all(v.has_audio for v in vids):
        tracks = [extract_audio(v.path, AUDIO_RATE) for v in vids]
        est = sync.offsets_from_audio(tracks, AUDIO_RATE, fps, max_s, names)
    elif method == "audio":
        bad = next(v.path.name for v in vids if not v.has_audio)
        raise UserError(f"--sync audio: {root / bad} has no sound track; use --sync visual")
    else:
        small = []
        with tqdm(total=sum(v.n_frames for v in vids), desc="frames", unit="frame",
                  disable=not progress) as bar:
            for v in vids:
                grey = SmallFrames()
                for frame in media.decode(v, v.width, v.height, v.fps):
                    grey.add(frame)
                    bar.update(1)
                small.append(grey)
        c2w_cv = [np.concatenate([m[:, :3] * np.array([1.0, -1.0, -1.0]), m[:, 3:]], axis=1)
                  for m in scene.c2w]
        est = sync.offsets_from_motion(small, c2w_cv, [k.fx for k in scene.intrinsics],
                                       scene.width, int(round(max_s * fps)), names)
    return layout.write_offsets_init(root / layout.OFFSETS_INIT, names, est.offsets, fps,
                                     est.method, {"source": "taichi-syncnerf sync-estimate",
                                                  "prominence": est.to_dict()["prominence"]})
