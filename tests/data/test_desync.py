"""The desynchronisation protocol: shifts, overlap, offsets_gt.json sign and composition."""
import json
import shutil

import numpy as np
import pytest

from taichi_syncnerf.data.desync import desync, draw_integer_offsets
from taichi_syncnerf.data.video import probe_video, read_video, write_video
from taichi_syncnerf.errors import DataError, UserError

N, F, S = 5, 24, 16          # cameras, frames, frame size


def code_frame(value):
    """A flat frame whose grey level encodes an integer 0..24."""
    return np.full((S, S, 3), 20 + 9 * value, np.uint8)


def decode(video):
    """(F, S, S, 3) -> the integers the frames encode."""
    v = (video.reshape(len(video), -1).mean(1) - 20) / 9
    assert np.abs(v - np.round(v)).max() < 0.3           # codec error of a few grey levels
    return np.round(v).astype(int)


def synced_source(root, scene_offsets=None, frames=F, png=False):
    """n3dv (or blender + PNG) folder whose camera k frame f encodes scene time
    f + scene_offsets[k] (scene_offsets written to offsets_gt.json when given)."""
    root.mkdir()
    a = np.zeros(N, int) if scene_offsets is None else np.asarray(scene_offsets)
    base = 0 if scene_offsets is None else -a.min()
    for k in range(N):
        codes = [f + a[k] + base for f in range(frames)]
        write_video(root / f"cam{k:02d}.mp4", [code_frame(c) for c in codes], fps=25.0)
        if png:
            import cv2

            d = root / "frames_1" / f"cam{k:02d}"
            d.mkdir(parents=True)
            for f, c in enumerate(codes):
                rgba = np.concatenate([code_frame(c), np.full((S, S, 1), 255, np.uint8)], -1)
                cv2.imwrite(str(d / f"r_{f:03d}.png"), rgba)
    if png:
        frames_json = [{"file_path": f"cam{k:02d}", "transform_matrix": np.eye(4).tolist()}
                       for k in range(N)]
        (root / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.7,
                                                          "frames": frames_json}))
    else:
        np.save(root / "poses_bounds.npy", np.arange(N * 17, dtype=np.float64).reshape(N, 17))
    if scene_offsets is not None:
        (root / "offsets_gt.json").write_text(json.dumps(
            {"fps": 25.0, "frames": frames, "offsets_frames": [float(x) for x in a]}))
    return root, base


def test_offsets_gt_describes_the_shift(tmp_path):
    src, _ = synced_source(tmp_path / "src")
    gt = desync(src, tmp_path / "dst", sigma=3.0, seed=11, progress=False)
    dst = tmp_path / "dst"
    drawn = draw_integer_offsets(N, 3.0, 11)
    assert gt["drawn_offsets_frames"] == drawn.tolist() and len(set(drawn)) > 2
    assert gt["frames"] == F - (drawn.max() - drawn.min()) and gt["fps"] == 25.0
    assert json.loads((dst / "offsets_gt.json").read_text())["offsets_frames"] == \
        gt["offsets_frames"]
    for k in range(N):
        codes = decode(read_video(dst / f"cam{k:02d}.mp4"))
        # frame g of camera k shows (synchronised source) scene time g + offsets_frames[k]
        np.testing.assert_array_equal(codes, np.arange(gt["frames"]) + gt["offsets_frames"][k])
        assert gt["offsets_frames"][k] == drawn[k] - drawn.min()
    np.testing.assert_array_equal(np.load(dst / "poses_bounds.npy"),
                                  np.load(src / "poses_bounds.npy"))


def test_composes_with_source_offsets_and_keep(tmp_path):
    """A source that is already unsynchronised: the recorded offsets still say which scene
    time each output frame shows."""
    scene_offsets = [0, 2, -1, 3, 1]
    src, base = synced_source(tmp_path / "src", scene_offsets, frames=F)
    gt = desync(src, tmp_path / "dst", sigma=2.0, seed=3, keep=10, progress=False)
    assert gt["frames"] == 10 and gt["source_offsets_frames"] == [float(x) for x in scene_offsets]
    for k in range(N):
        codes = decode(read_video(tmp_path / "dst" / f"cam{k:02d}.mp4"))
        np.testing.assert_array_equal(codes - base, np.arange(10) + gt["offsets_frames"][k])
        assert gt["offsets_frames"][k] == scene_offsets[k] + gt["start_frames"][k]


def test_blender_pngs_are_shifted_losslessly(tmp_path):
    src, _ = synced_source(tmp_path / "src", png=True)
    gt = desync(src, tmp_path / "dst", sigma=2.0, seed=5, progress=False)
    for k in range(N):
        out = sorted((tmp_path / "dst" / "frames_1" / f"cam{k:02d}").glob("*.png"))
        assert [p.name for p in out] == [f"{g:04d}.png" for g in range(gt["frames"])]
        srcs = sorted((src / "frames_1" / f"cam{k:02d}").glob("*.png"))
        s = gt["start_frames"][k]
        assert all(o.read_bytes() == srcs[g + s].read_bytes() for g, o in enumerate(out))
        assert probe_video(tmp_path / "dst" / f"cam{k:02d}.mp4")[0] == gt["frames"]
    assert (tmp_path / "dst" / "transforms.json").read_text() == \
        (src / "transforms.json").read_text()


def test_zero_sigma_copies_and_uneven_lengths_warn(tmp_path):
    src, _ = synced_source(tmp_path / "src")
    write_video(src / "cam03.mp4", [code_frame(f) for f in range(F - 4)], fps=25.0)
    with pytest.warns(UserWarning, match="different frame counts"):
        gt = desync(src, tmp_path / "dst", sigma=0.0, progress=False)
    assert gt["offsets_frames"] == [0.0] * N and gt["frames"] == F - 4
    assert decode(read_video(tmp_path / "dst" / "cam00.mp4")).tolist() == list(range(F - 4))


def test_errors(tmp_path):
    src, _ = synced_source(tmp_path / "src")
    with pytest.raises(UserError, match="keep"):
        desync(src, tmp_path / "a", sigma=3.0, seed=11, keep=F, progress=False)
    with pytest.raises(UserError, match="too large"):
        desync(src, tmp_path / "b", sigma=50.0, progress=False)
    with pytest.raises(UserError, match="differ"):
        desync(src, src, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(UserError, match="--force"):
        desync(src, tmp_path / "full", progress=False)
    with pytest.raises(DataError, match="not found"):
        desync(tmp_path / "missing", tmp_path / "c", progress=False)
    np.save(src / "poses_bounds.npy", np.zeros((N + 1, 17)))
    with pytest.raises(DataError, match=f"{N + 1} camera poses but {N} cameras"):
        desync(src, tmp_path / "d", progress=False)
    (src / "poses_bounds.npy").unlink()
    with pytest.raises(DataError, match="poses_bounds.npy or transforms.json"):
        desync(src, tmp_path / "e", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "src"]
    shutil.rmtree(src)
