"""Input videos of ``prepare``: list them, probe them, decode them at one frame rate and size.

Any container ffmpeg reads is accepted (mp4, mov, mkv, ...). Videos may differ in length, frame
rate and size: :func:`plan_inputs` picks one rate and size (the most common ones unless given)
and says, one warning line per video, what changes. Frames are decoded by the ffmpeg that
imageio-ffmpeg ships, resampled in time by ffmpeg's ``fps`` filter and in space by a scale and a
centre crop to the target aspect ratio.

Example::

    videos = list_inputs("captures/")
    plan = plan_inputs(videos, size=None, fps=None)     # warnings for every resampled video
    for frame in decode(plan.videos[0], plan.width, plan.height, plan.fps):
        ...
"""
from __future__ import annotations

import re
import subprocess
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from taichi_syncnerf.data.video import ffmpeg_exe, passthrough_flag
from taichi_syncnerf.errors import DataError, UserError

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mts", ".mpg", ".mpeg"}


class CaptureWarning(UserWarning):
    """Something about the input that ``prepare`` changed or left out (one line, names the file)."""


def warn(message: str) -> None:
    warnings.warn(message, CaptureWarning, stacklevel=2)


@dataclass(frozen=True)
class InputVideo:
    """One input file: ``n_frames`` at ``fps``, ``width`` x ``height``, ``has_audio``."""

    path: Path
    n_frames: int
    width: int
    height: int
    fps: float
    has_audio: bool

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps


@dataclass(frozen=True)
class InputPlan:
    """The videos (sorted by file name), the rate and size of the dataset, and the size frames
    are decoded at for structure from motion (the inputs' own size when its aspect ratio is the
    dataset's: a dataset smaller than its videos still gets poses from the full frames)."""

    videos: list
    width: int
    height: int
    fps: float
    sfm_width: int = 0
    sfm_height: int = 0

    def frames_of(self, video: InputVideo) -> int:
        """Frames of ``video`` after resampling to ``fps``."""
        return max(1, int(np.floor(video.duration * self.fps + 1e-6)))


def probe(path: Path) -> InputVideo:
    """Probe one file; DataError (naming it) when it holds no readable video stream."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
           "-c", "copy", "-f", "null", "-"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.decode(errors="replace")
    stream = re.search(r"Stream #\S+.*?Video: .*", err)
    if proc.returncode != 0 or stream is None:
        raise DataError(f"{path}: not a readable video (ffmpeg found no video stream)")
    size = re.search(r", (\d+)x(\d+)\b", stream.group(0))
    rate = re.search(r"([\d.]+)(k?) fps", stream.group(0)) or re.search(
        r"([\d.]+)(k?) tbr", stream.group(0))
    counts = re.findall(r"frame=\s*(\d+)", err)
    if size is None or rate is None or not counts or int(counts[-1]) < 1:
        raise DataError(f"{path}: could not read the video's size, frame rate or frame count")
    fps = float(rate.group(1)) * (1000.0 if rate.group(2) else 1.0)
    has_audio = re.search(r"Stream #\S+.*?Audio:", err) is not None
    return InputVideo(path, int(counts[-1]), int(size.group(1)), int(size.group(2)), fps, has_audio)


def list_inputs(folder: str | Path) -> list[InputVideo]:
    """Probe every non-hidden file of ``folder`` (sorted by name). A file that is not a video is an
    error when its suffix says video, and is skipped with a warning otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of videos")
    for meta in ("poses_bounds.npy", "transforms.json"):
        if (folder / meta).is_file():
            frames = " with PNG frames" if (folder / "frames_1").is_dir() else ""
            raise UserError(f"{folder}: already a dataset ({meta}{frames}); prepare takes a folder of videos: "
                            f"train reads this one with --data, and `sync-estimate {folder}` estimates its offsets")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"{folder}: empty folder (expected one video per camera)")
    videos = []
    for p in files:
        try:
            videos.append(probe(p))
        except DataError:
            if p.suffix.lower() in VIDEO_SUFFIXES:
                raise
            warn(f"{p}: not a video, skipped")
    if not videos:
        raise UserError(f"{folder}: no videos among its {len(files)} files")
    return videos


def _parse_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", size)
        if not m:
            raise UserError(f"--size must look like WIDTHxHEIGHT (e.g. 512x384), got {size!r}")
        size = (int(m.group(1)), int(m.group(2)))
    w, h = int(size[0]), int(size[1])
    if w < 16 or h < 16:
        raise UserError(f"--size {w}x{h} is too small (at least 16x16)")
    return w, h


def plan_inputs(videos: list[InputVideo], size=None, fps: float | None = None) -> InputPlan:
    """Choose the common size (``size`` or the most common one) and rate (``fps`` or the most
    common one) and warn once per video that is resampled."""
    common = Counter((v.width, v.height) for v in videos).most_common(1)[0][0]
    wh = _parse_size(size) or common
    same_aspect = abs(common[0] * wh[1] - common[1] * wh[0]) <= max(common[0], wh[0]) // 100
    sfm = common if same_aspect and common[0] > wh[0] else wh
    rate = float(fps) if fps else Counter(round(v.fps, 3) for v in videos).most_common(1)[0][0]
    if not rate > 0:
        raise UserError(f"--fps must be positive, got {fps}")
    for v in videos:
        changes = []
        if (v.width, v.height) != wh:
            crop = abs(v.width / v.height - wh[0] / wh[1]) > 1e-3
            changes.append(f"{v.width}x{v.height} -> {wh[0]}x{wh[1]}"
                           + (" (centre crop to the aspect ratio)" if crop else ""))
        if abs(v.fps - rate) > 1e-3:
            changes.append(f"{v.fps:g} -> {rate:g} fps")
        if changes:
            warn(f"{v.path}: resampled {', '.join(changes)}")
    return InputPlan(list(videos), int(wh[0]), int(wh[1]), rate, int(sfm[0]), int(sfm[1]))


def _filters(video: InputVideo, width: int, height: int, fps: float) -> str:
    chain = []
    if abs(video.fps - fps) > 1e-3:
        chain.append(f"fps={fps:.6f}")
    if (video.width, video.height) != (width, height):
        scale = max(width / video.width, height / video.height)
        sw, sh = max(width, round(video.width * scale)), max(height, round(video.height * scale))
        chain.append(f"scale={sw}:{sh}:flags=area")
        if (sw, sh) != (width, height):
            chain.append(f"crop={width}:{height}")
    return ",".join(chain) or "null"


def decode(video: InputVideo, width: int, height: int, fps: float,
           max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield ``(height, width, 3)`` uint8 RGB frames of ``video`` resampled to ``fps``."""
    exe = ffmpeg_exe()
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(video.path), "-map", "0:v:0",
           "-vf", _filters(video, width, height, fps), *passthrough_flag(exe),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    if max_frames is not None:
        cmd[cmd.index("-f"):cmd.index("-f")] = ["-frames:v", str(int(max_frames))]
    nbytes = width * height * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    got = 0
    try:
        while True:
            buf = proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                break
            got += 1
            yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
    finally:
        proc.stdout.close()
        proc.kill()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        proc.wait()
    if got == 0:
        raise DataError(f"{video.path}: no frames could be decoded ({err.strip()[:200]})")
