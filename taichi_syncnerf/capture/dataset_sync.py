"""Coarse offsets for a dataset folder that already exists (``taichi-syncnerf sync-estimate DATA``).

For a Plenoptic or Blender folder (``make-scene`` output, a ``desync`` copy, or a capture laid out
by hand), of videos or of RGBA PNG frames (Blender ``frames_1/camXX/``, composited on white as
``train`` does): offsets from the sound tracks when every video has one, else from the frames'
motion made consistent by the dataset's poses (epipolar lines), written to
``DATA/offsets_init.json`` relative to the first camera, listing the cameras by name. PNG frames
have no sound: they are always synchronised from their motion.
The frames are not changed (their poses stay paired with them), so offsets are not trimmed away
here: ``train`` starts the offsets from the file (``offsets.init_from_dataset``). A camera far
shorter than the others is left out as ``train`` leaves it out (one warning).

Example::

    doc = estimate_dataset_offsets("data/synthetic")   # also writes data/synthetic/offsets_init.json
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from taichi_syncnerf.capture import layout, media, sync
from taichi_syncnerf.capture.audio import AUDIO_RATE, extract_audio
from taichi_syncnerf.capture.visual_sync import SmallFrames
from taichi_syncnerf.errors import UserError


def estimate_dataset_offsets(data_dir, method: str = "auto", max_offset_s: float | None = None,
                             progress: bool = True) -> dict:
    """Estimate, write and return ``offsets_init.json`` of the dataset in ``data_dir``."""
    from taichi_syncnerf.data.loaders import scan_scene

    if method not in ("auto", "audio", "visual"):
        raise UserError(f"--sync must be auto, audio or visual, got {method!r}")
    root = Path(data_dir)
    scene = scan_scene(root)
    names = [c.name for c in scene.cameras]
    fps = scene.fps
    png = scene.cameras[0].kind == "png"
    if png:
        if method == "audio":
            raise UserError(f"--sync audio: {root} holds PNG frames ({scene.cameras[0].path.parent}), which have "
                            "no sound; use --sync visual")
        vids = None
        durations = [c.n_frames / fps for c in scene.cameras]
    else:
        vids = [media.probe(c.path) for c in scene.cameras]
        durations = [v.duration for v in vids]
    max_s = max_offset_s if max_offset_s is not None else sync.default_max_offset_s(durations, fps)
    if not png and method != "visual" and all(v.has_audio for v in vids):
        tracks = [extract_audio(v.path, AUDIO_RATE) for v in vids]
        est = sync.offsets_from_audio(tracks, AUDIO_RATE, fps, max_s, names)
    elif method == "audio":
        bad = next(v.path.name for v in vids if not v.has_audio)
        raise UserError(f"--sync audio: {root / bad} has no sound track; use --sync visual")
    else:
        small = _small_frames(scene, vids, progress)
        c2w_cv = [np.concatenate([m[:, :3] * np.array([1.0, -1.0, -1.0]), m[:, 3:]], axis=1)
                  for m in scene.c2w]
        est = sync.offsets_from_motion(small, c2w_cv, [k.fx for k in scene.intrinsics],
                                       scene.width, int(round(max_s * fps)), names)
    return layout.write_offsets_init(root / layout.OFFSETS_INIT, names, est.offsets, fps,
                                     est.method, {"source": "taichi-syncnerf sync-estimate",
                                                  "prominence": est.to_dict()["prominence"]})


def _small_frames(scene, vids, progress: bool) -> list[SmallFrames]:
    """Every camera's frames, small and grey (:class:`SmallFrames`), from its video or its PNGs."""
    from tqdm import tqdm

    from taichi_syncnerf.data.sources import iter_frames

    small = []
    with tqdm(total=sum(c.n_frames for c in scene.cameras), desc="frames", unit="frame",
              disable=not progress) as bar:
        for k, cam in enumerate(scene.cameras):
            grey = SmallFrames()
            if vids is None:
                frames = iter_frames(cam, 0, cam.n_frames)           # RGBA composited on white
            else:
                v = vids[k]
                frames = media.decode(v, v.width, v.height, v.fps)
            for frame in frames:
                grey.add(frame)
                bar.update(1)
            small.append(grey)
    return small
