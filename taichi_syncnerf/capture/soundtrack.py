"""Give the videos of a generated scene sound tracks that carry the same sound events, each
shifted by that camera's true offset (test data for ``prepare``'s audio synchronisation).

The scene's sound is a set of short decaying tone bursts at random scene times plus a little
noise independent per camera. Camera k hears scene time ``tau + offset_k / fps`` at its own time
``tau`` ("frame f of camera k shows scene time f + offset_k"). Tracks are muxed with the ffmpeg
that imageio-ffmpeg ships, without re-encoding the pictures, into files with new names.

Example::

    add_soundtracks("data/scene", "videos/", names=["IMG_0412.mov", "gopro.mp4", ...])
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from taichi_syncnerf.data.video import ffmpeg_exe, probe_video

SOUND_RATE = 48000


def scene_sound(times_s: np.ndarray, events_s: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """The scene's sound at scene times ``times_s``: a 60 ms decaying burst per event."""
    out = np.zeros_like(times_s)
    for t0, f in zip(events_s, freqs):
        dt = times_s - t0
        on = (dt >= 0) & (dt < 0.06)
        out[on] += 0.5 * np.exp(-dt[on] / 0.012) * np.sin(2 * np.pi * f * dt[on])
    return out


def add_soundtracks(scene_dir, out_dir, names: list | None = None, rate: int = SOUND_RATE,
                    n_events: int | None = None, noise: float = 0.01, seed: int = 0,
                    audio: list | None = None) -> list[Path]:
    """Write every ``camXX.mp4`` of ``scene_dir`` (with ``offsets_gt.json``) into ``out_dir``
    under ``names`` (default: the same names) with a sound track; ``audio[k] = False`` writes
    camera k without one. Returns the written paths, in camera order."""
    scene_dir, out_dir = Path(scene_dir), Path(out_dir)
    gt = json.loads((scene_dir / "offsets_gt.json").read_text())
    fps, offsets = float(gt["fps"]), np.asarray(gt["offsets_frames"], np.float64)
    videos = [scene_dir / v for v in gt["videos"]]
    names = names or [v.name for v in videos]
    rng = np.random.default_rng(seed)
    lengths = [probe_video(v)[0] / fps for v in videos]
    lo, hi = offsets.min() / fps, max(o / fps + d for o, d in zip(offsets, lengths))
    n_events = n_events or max(4, int(3 * (hi - lo)))
    events = np.sort(rng.uniform(lo, hi, n_events))
    freqs = rng.uniform(400.0, 3000.0, n_events)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, (video, name) in enumerate(zip(videos, names)):
        target = out_dir / name
        if audio is not None and not audio[k]:
            cmd = [ffmpeg_exe(), "-y", "-nostdin", "-v", "error", "-i", str(video), "-c", "copy",
                   str(target)]
            subprocess.run(cmd, check=True)
            written.append(target)
            continue
        tau = np.arange(int(lengths[k] * rate)) / rate
        track = scene_sound(tau + offsets[k] / fps, events, freqs)
        track += noise * rng.standard_normal(len(tau))
        with tempfile.NamedTemporaryFile(suffix=".f32") as raw:
            raw.write(track.astype("<f4").tobytes())
            raw.flush()
            cmd = [ffmpeg_exe(), "-y", "-nostdin", "-v", "error", "-i", str(video),
                   "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", raw.name,
                   "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
                   "-b:a", "128k", str(target)]
            subprocess.run(cmd, check=True)
        written.append(target)
    return written
