"""Every bad dataset gets one clear line naming the file and the problem, exit status 2, no traceback."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from taichi_syncnerf.cli.inspect_cmd import inspect
from taichi_syncnerf.data.dataset import load_dataset
from taichi_syncnerf.data.loaders import DataWarning
from taichi_syncnerf.data.video import write_video
from taichi_syncnerf.errors import DataError


def n3dv(root, lengths=(4, 4, 4), rows=None, size=(16, 12), hwf_size=None, seed=0):
    """Videos cam00.. with the given frame counts and a poses_bounds.npy with ``rows`` rows."""
    rng = np.random.default_rng(seed)
    w, h = size
    root.mkdir(parents=True, exist_ok=True)
    for c, n in enumerate(lengths):
        write_video(root / f"cam{c:02d}.mp4", rng.integers(0, 255, (n, h, w, 3), np.uint8), 30.0)
    hw, hh = hwf_size or size
    pose = np.stack([[0, -1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [hh, hw, 20.0]], 1)
    table = np.array([np.r_[pose.ravel(), 1.0, 6.0]] * (len(lengths) if rows is None else rows))
    table[:, 3] += np.arange(len(table)) * 0.1  # distinct centres
    np.save(root / "poses_bounds.npy", table)
    return root


def blender(root, n_cams=2, meta=None, size=(16, 12)):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for c in range(n_cams):
        write_video(root / f"cam{c:02d}.mp4", rng.integers(0, 255, (3, size[1], size[0], 3), np.uint8), 30.0)
    doc = {"camera_angle_x": 0.7, "frames": [{"transform_matrix": np.eye(4).tolist()}] * n_cams}
    doc.update(meta or {})
    (root / "transforms.json").write_text(json.dumps(doc))
    return root


def run(*args):
    return CliRunner().invoke(inspect, [str(a) for a in args])


def assert_error(res, *needles):
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_pose_rows_do_not_match_videos(tmp_path):
    root = n3dv(tmp_path / "s", rows=2)
    assert_error(run(root), "poses_bounds.npy", "2 pose rows", "3 videos")


def test_missing_metadata_file(tmp_path):
    root = n3dv(tmp_path / "s")
    (root / "poses_bounds.npy").unlink()
    assert_error(run(root), str(root), "3 videos", "neither poses_bounds.npy nor transforms.json")


@pytest.mark.parametrize("content, needle", [
    (b"not an npy file", "not a readable .npy array"),
    (np.zeros((3, 10)), "expected an (N, 17) array"),
    (np.full((3, 17), np.nan), "NaN"),
    ("bounds", "invalid bounds"),
])
def test_malformed_poses_bounds(tmp_path, content, needle):
    root = n3dv(tmp_path / "s")
    path = root / "poses_bounds.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        table = np.load(path)
        table[1, 15:] = [5.0, 2.0]
        np.save(path, table)
    else:
        np.save(path, content)
    assert_error(run(root), "poses_bounds.npy", needle)


@pytest.mark.parametrize("text, needle", [
    ('{"camera_angle_x": 0.7, "frames": [', "malformed JSON at line 1"),
    ('[1, 2]', "expected a JSON object"),
    ('{"frames": [{"transform_matrix": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}', "camera_angle_x"),
    ('{"camera_angle_x": 0.7, "frames": [{"transform_matrix": [[1, 0], [0, 1]]}, {}]}',
     "frames[0].transform_matrix must be a 4x4"),
    ('{"camera_angle_x": "wide", "frames": [{}]}', "'camera_angle_x' must be a finite number"),
    ('{"camera_angle_x": 0.7, "frames": []}', "missing or empty 'frames'"),
])
def test_malformed_transforms(tmp_path, text, needle):
    root = blender(tmp_path / "s")
    (root / "transforms.json").write_text(text)
    assert_error(run(root), "transforms.json", needle)


def test_transform_count_mismatch(tmp_path):
    root = blender(tmp_path / "s", n_cams=3, meta={"frames": [{"transform_matrix": np.eye(4).tolist()}] * 2})
    assert_error(run(root), "transforms.json", "2 entries in 'frames' but 3 cameras")


def test_unreadable_video(tmp_path):
    root = n3dv(tmp_path / "s")
    (root / "cam01.mp4").write_bytes(b"\x00garbage" * 100)
    assert_error(run(root), "cam01.mp4", "unreadable video")


def test_truncated_video(tmp_path):
    root = n3dv(tmp_path / "s", lengths=(30, 30), size=(64, 48))
    data = (root / "cam01.mp4").read_bytes()
    (root / "cam01.mp4").write_bytes(data[: int(len(data) * 0.6)])
    line = assert_error(run(root, "--build-cache"), "cam01.mp4")
    assert "truncated" in line or "damaged" in line


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_error(run(tmp_path / "empty"), "empty", "empty folder")
    assert_error(run(tmp_path / "nope"), "nope", "folder not found")
    root = n3dv(tmp_path / "novideo")
    for p in root.glob("*.mp4"):
        p.unlink()
    assert_error(run(root), "no .mp4 videos")


def test_videos_of_different_lengths_use_common_frames(tmp_path):
    root = n3dv(tmp_path / "s", lengths=(5, 3, 5))
    res = run(root, "--json", "--build-cache")
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warn) == 1 and "cam01.mp4 has 3" in warn[0] and "first 3 frames" in warn[0]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["frames"] == 3 and info["cache_bytes"] == 3 * 3 * 12 * 16 * 3


def test_image_size_disagreeing_with_intrinsics_is_rescaled(tmp_path):
    root = n3dv(tmp_path / "s", hwf_size=(32, 24))
    with pytest.warns(DataWarning, match=r"cam00\.mp4 and 2 other camera\(s\): frames are 16x12 but "
                      r"poses_bounds\.npy states 32x24"):
        ds = load_dataset(root, build_cache=False)
    assert ds.intrinsics[0].fx == pytest.approx(10.0) and ds.intrinsics[0].cx == pytest.approx(8.0)
    res = run(root, "--json")
    assert res.exit_code == 0 and res.stderr.count("warning: ") == 1
    assert json.loads(res.stdout.splitlines()[-1])["intrinsics"]["fx"] == pytest.approx(10.0)
    root = blender(tmp_path / "b", meta={"width": 32, "height": 24})
    with pytest.warns(DataWarning, match="transforms.json states 32x24"):
        ds = load_dataset(root, build_cache=False)
    assert ds.intrinsics[0].fx == pytest.approx(8.0 / np.tan(0.35))


def test_bad_options_and_ground_truth(tmp_path):
    root = n3dv(tmp_path / "s")
    assert_error(run(root, "--test-camera", "cam07"), "cam07", "cam00, cam01, cam02")
    (root / "offsets_gt.json").write_text('{"offsets_frames": [1, 2]}')
    assert_error(run(root), "offsets_gt.json", "2 values but the dataset has 3 cameras")
    (root / "offsets_gt.json").write_text('{"offsets_frames": "x"')
    assert_error(run(root), "offsets_gt.json", "malformed JSON")


def test_unreadable_png_frame(tmp_path):
    import imageio.v3 as iio

    root = tmp_path / "p"
    for c in range(2):
        (root / "frames_1" / f"cam{c:02d}").mkdir(parents=True)
        for f in range(3):
            iio.imwrite(root / "frames_1" / f"cam{c:02d}" / f"{f:04d}.png", np.zeros((4, 4, 4), np.uint8))
    (root / "frames_1" / "cam01" / "0002.png").write_bytes(b"broken")
    (root / "transforms.json").write_text(json.dumps(
        {"camera_angle_x": 0.7, "frames": [{"transform_matrix": np.eye(4).tolist()}] * 2}))
    assert_error(run(root, "--build-cache"), "cam01/0002.png", "unreadable image")
    with pytest.raises(DataError):
        load_dataset(root)
