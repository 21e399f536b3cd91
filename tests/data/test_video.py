"""mp4 round trips, probing, streaming options and damaged files (taichi_syncnerf.data.video)."""
import numpy as np
import pytest

from taichi_syncnerf.data.video import (VideoWriter, iter_video, probe_video, read_video,
                                        write_video)
from taichi_syncnerf.errors import DataError


def smooth_frames(n, h, w):
    """Smooth moving colour gradients, (n, h, w, 3) uint8."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for f in range(n):
        r = 0.5 + 0.4 * np.sin(x / 11.0 + 0.3 * f)
        g = 0.5 + 0.4 * np.cos(y / 9.0 - 0.2 * f)
        b = 0.5 + 0.4 * np.sin((x + y) / 15.0 + 0.1 * f)
        out.append(np.stack([r, g, b], -1))
    return np.round(np.stack(out) * 255).astype(np.uint8)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


@pytest.mark.parametrize("size", [(64, 48), (63, 47)])
def test_round_trip_quality_and_shape(tmp_path, size):
    w, h = size
    frames = smooth_frames(8, h, w)
    path = tmp_path / "v.mp4"
    assert write_video(path, frames, fps=24.0) == 8
    assert probe_video(path) == (8, h, w, 24.0)
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert psnr(back, frames) > 40.0
    # a frame-to-frame mix-up would show as a large error on this moving pattern
    assert psnr(back[3], frames[4]) < 30.0
    assert not [p.name for p in tmp_path.iterdir() if p.name != "v.mp4"]   # no temp files left


def test_iter_options_and_generator_input(tmp_path):
    frames = smooth_frames(6, 32, 48)
    path = tmp_path / "g.mp4"
    write_video(path, (f for f in frames), fps=30.0)
    full = read_video(path)
    first = read_video(path, max_frames=2)
    np.testing.assert_array_equal(first, full[:2])
    half = np.stack(list(iter_video(path, max_frames=3, downsample=2)))
    assert half.shape == (3, 16, 24, 3)
    box = full[:3].reshape(3, 16, 2, 24, 2, 3).astype(np.float64).mean(axis=(2, 4))
    assert np.abs(half - box).max() <= 1.0
    it = iter_video(path)
    next(it)
    it.close()                                            # stopping early is fine


def test_writer_discards_file_on_error(tmp_path):
    path = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 16, 16, 30.0) as w:
            w.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(path, 16, 16, 30.0) as w:
        w.write(np.zeros((16, 16, 3), np.uint8))
        with pytest.raises(ValueError, match="16, 16, 3"):
            w.write(np.zeros((16, 15, 3), np.uint8))
    assert probe_video(path)[0] == 1


def test_truncated_video_is_reported_with_its_name(tmp_path):
    path = tmp_path / "cam07.mp4"
    write_video(path, smooth_frames(30, 48, 64), fps=30.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cam07\.mp4.*truncated"):
        probe_video(path)
    with pytest.raises(DataError, match=r"cam07\.mp4"):
        read_video(path)


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 10])
def test_unreadable_and_missing_files(tmp_path, content):
    bad = tmp_path / "cam01.mp4"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=r"cam01\.mp4"):
        probe_video(bad)
    with pytest.raises(DataError, match=r"nope\.mp4.*not found"):
        read_video(tmp_path / "nope.mp4")


@pytest.mark.parametrize("banner,flag", [
    ("ffmpeg version 4.2.2-static https://johnvansickle.com/ffmpeg/", "-vsync"),
    ("ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright", "-fps_mode"),
    ("ffmpeg version 5.1.2 Copyright", "-fps_mode"),
    ("ffmpeg version N-110000-gabcdef Copyright", "-fps_mode"),
])
def test_passthrough_flag_follows_ffmpeg_version(tmp_path, banner, flag):
    from taichi_syncnerf.data.video import passthrough_flag

    exe = tmp_path / "ffmpeg"
    exe.write_text(f"#!/bin/sh\necho '{banner}'\n")
    exe.chmod(0o755)
    assert passthrough_flag(str(exe)) == [flag, "passthrough"]
