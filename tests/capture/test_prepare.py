"""prepare end to end on a real (generated) capture: the rig, the offsets, the layout train reads."""
import json

import numpy as np
import pytest

from taichi_syncnerf.capture.checks import align_rig
from tests.capture.conftest import CAMERAS, NAMES, prepared_truth, true_offsets
from tests.cli import run

pytest.importorskip("pycolmap")


def _rotations_centres(rows: np.ndarray):
    """OpenCV camera-to-world rotations and centres of poses_bounds.npy rows."""
    m = rows[:, :15].reshape(-1, 3, 5)
    return np.stack([m[:, :, 1], m[:, :, 0], -m[:, :, 2]], axis=-1), m[:, :, 3]


@pytest.fixture(scope="module")
def prepared(capture, tmp_path_factory):
    scene, videos, index = capture
    out = tmp_path_factory.mktemp("prepared") / "audio"
    res = run("prepare", videos, out, "--sfm-frames", 2, "--threads", 2, "--quiet")
    assert res.exit_code == 0, res.output
    return out, res


def test_prepare_recovers_the_rig(capture, prepared):
    scene, _, index = capture
    out, res = prepared
    doc = json.loads((out / "prepare.json").read_text())
    assert [i["file"] for i in doc["inputs"]] == sorted(NAMES)
    assert all(i["registered"] for i in doc["inputs"]), doc["inputs"]
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"cam{k:02d}.mp4" for k in range(CAMERAS)]
    r_est, c_est = _rotations_centres(np.load(out / "poses_bounds.npy"))
    order = [index[i["file"]] for i in doc["inputs"]]
    r_gt, c_gt = _rotations_centres(np.load(scene / "poses_bounds.npy")[order])
    s, rot, t = align_rig(r_est, c_est, r_gt, c_gt)
    rig = np.max(np.linalg.norm(c_gt[:, None] - c_gt[None], axis=-1))
    centre_err = np.linalg.norm((s * (rot @ c_est.T)).T + t - c_gt, axis=1) / rig
    cosines = [(np.trace((rot @ r_est[k]).T @ r_gt[k]) - 1) / 2 for k in range(CAMERAS)]
    rot_err = np.degrees(np.arccos(np.clip(cosines, -1, 1)))
    assert centre_err.max() < 0.02, centre_err
    assert rot_err.max() < 1.0, rot_err
    assert "6 of 6 cameras" in res.output


def test_prepare_audio_offsets_within_one_frame(capture, prepared):
    scene, _, index = capture
    out, _ = prepared
    init = json.loads((out / "offsets_init.json").read_text())
    assert init["method"] == "audio" and init["cameras"][0] == "cam00"
    err = np.abs(np.asarray(init["offsets_frames"]) - prepared_truth(scene, out, index))
    assert err.max() < 1.0, err


def test_prepared_folder_loads_with_its_offsets(prepared):
    from taichi_syncnerf.data.dataset import load_dataset

    out, _ = prepared
    ds = load_dataset(out, build_cache=False)
    doc = json.loads((out / "prepare.json").read_text())
    assert ds.n_cameras == CAMERAS and ds.n_frames == doc["frames"]
    assert (ds.width, ds.height) == (512, 384)
    np.testing.assert_allclose(ds.offsets_init_frames,
                               json.loads((out / "offsets_init.json").read_text())["offsets_frames"])
    res = run("inspect", out)
    assert "offsets init" in res.output


def test_prepare_visual_offsets_within_one_frame(capture, tmp_path):
    scene, videos, index = capture
    out = tmp_path / "visual"
    res = run("prepare", videos, out, "--sync", "visual", "--sfm-frames", 2, "--quiet")
    assert res.exit_code == 0, res.output
    init = json.loads((out / "offsets_init.json").read_text())
    assert init["method"] == "visual"
    err = np.abs(np.asarray(init["offsets_frames"]) - prepared_truth(scene, out, index))
    assert err.max() < 1.0, err


def test_sync_estimate_on_a_generated_dataset(capture, tmp_path):
    import shutil

    scene, _, _ = capture
    data = tmp_path / "data"
    shutil.copytree(scene, data)
    res = run("sync-estimate", data, "--quiet")
    assert res.exit_code == 0, res.output
    est = np.asarray(json.loads((data / "offsets_init.json").read_text())["offsets_frames"])
    gt = true_offsets(scene)
    assert np.abs(est - (gt - gt[0])).max() < 1.0, (est, gt - gt[0])


def test_training_on_the_prepared_folder_recovers_the_offsets(capture, prepared, tmp_path):
    """The user's path: train on what prepare wrote (poses from SfM, trimmed videos, the audio
    estimate as the offsets' start) and the joint optimisation keeps the offsets on the truth."""
    import subprocess
    import sys

    from taichi_syncnerf.metrics import offset_mae

    scene, _, index = capture
    out, _ = prepared
    run_dir = tmp_path / "run"
    overrides = ["data.downsample=4", "train.steps=400", "offsets.start_step=100", "offsets.freeze_step=null",
                 "train.val_every=null", "train.checkpoint_every=400"]
    # a process of its own: the preset-sized model's fields are freed when it ends
    res = subprocess.run([sys.executable, "-m", "taichi_syncnerf.cli.main", "train", "synthetic/sync-kplanes",
                          "--data", str(out), "--out", str(run_dir), "--threads", "2", "--quiet", "--no-eval"]
                         + sum([["-o", o] for o in overrides], []), capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    learned = json.loads((run_dir / "offsets.json").read_text())["cameras"]
    truth = prepared_truth(scene, out, index)
    err = offset_mae([c["offset_frames"] for c in learned], truth, exclude=[0])
    assert err.mae_frames <= 0.3, (err, [c["offset_frames"] for c in learned], truth)
