"""End to end on a tiny generated unsynchronised scene: train, resume, eval, testoptim, render."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from taichi_syncnerf.cli.main import main

TINY = [
    "kplanes.features=4", "kplanes.space_res=[8, 16]", "kplanes.time_res=6", "kplanes.density_hidden=16",
    "kplanes.geo_features=7", "kplanes.color_hidden=[16]", "kplanes.sh_degree=2", "kplanes.n_samples=12",
    "kplanes.proposal.samples=[16]", "kplanes.proposal.features=4", "kplanes.proposal.space_res=[16]",
    "kplanes.proposal.time_res=6", "kplanes.proposal.hidden=8", "train.batch_rays=256", "train.warmup_steps=5",
    "train.log_every=5", "train.checkpoint_every=10", "eval.max_frames=2", "testoptim.batch_rays=256",
    "offsets.lr_scale=1.0", "offsets.freeze_step=null", "train.lr=0.02",
]
RT = ["--arch", "cpu", "--threads", "2", "--precision", "f64", "--quiet"]


def run(args):
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    return r


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from taichi_syncnerf.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("e2e") / "scene"
    make_scene(out, layout="n3dv", cameras=4, frames=12, size=(32, 24), offset_sigma=2.0, seed=3, progress=False)
    return out


def cfg_file(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text("base: " + str(__import__("taichi_syncnerf.config", fromlist=["x"]).resolve_config_path(
        "synthetic/sync-kplanes")) + "\nname: tiny\n")
    return p


def overrides(steps):
    return sum([["-o", o] for o in TINY + [f"train.steps={steps}"]], [])


def test_train_interrupt_resume_eval_testoptim_render(scene, tmp_path):
    cfg = cfg_file(tmp_path)
    out = tmp_path / "run"
    # an interrupted run: stop after 10 of 30 steps (a checkpoint is written at the stop)
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.train import train

    c = load_config(cfg, TINY + ["train.steps=30"])
    train(c, scene, out, progress=False, stop_after=10)
    assert (out / "checkpoints" / "step-00000010.npz").exists()
    r = run(["train", str(cfg), "--out", str(out), "--resume", "--no-eval"] + RT)
    assert r.exit_code == 0, r.output
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 30
    assert [rec["step"] for rec in log] == sorted({rec["step"] for rec in log})
    val = [rec for rec in log if "val_train_psnr" in rec]  # preset: every 250 steps and at the last step
    assert [rec["step"] for rec in val] == [30] and all(5 < rec["val_test_psnr"] < 60 for rec in val)
    assert all("batch_psnr" in rec and "psnr" not in rec for rec in log)
    doc = json.loads((out / "offsets.json").read_text())
    assert [c["split"] for c in doc["cameras"]] == ["test", "train", "train", "train"]
    assert doc["cameras"][0]["offset_frames"] == 0.0
    # the final checkpoint's offsets are what offsets.json reports
    with np.load(out / "checkpoints" / "step-00000030.npz") as z:
        frames = z["offsets/params"] * (12 - 1) / 1.6
    np.testing.assert_allclose(frames, [c["offset_frames"] for c in doc["cameras"]], atol=1e-9)
    for name in ("training.png", "offsets.png", "config.yaml", "run.json"):
        assert (out / name).exists(), name

    r = run(["eval", str(out)] + RT)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) >= {"test", "train", "offsets"}
    assert m["test"]["psnr"] > 10 and 0 < m["test"]["ssim"] <= 1
    for split in ("test", "train"):  # the model-free floor: the temporal-median image of that camera
        assert 5 < m[split]["median_image_psnr"] < 60
    assert "temporal-median image" in r.output
    assert "mae_frames" in m["offsets"]

    r = run(["testoptim", str(out), "--steps", "5"] + RT)
    assert r.exit_code == 0, r.output
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["test_before_testoptim"]["psnr"] == pytest.approx(m["test"]["psnr"])
    r = run(["testoptim", str(out), "--steps", "3"] + RT)  # again: "before" stays the untouched model's
    assert r.exit_code == 0, r.output
    m3 = json.loads((out / "metrics.json").read_text())
    assert m3["test_before_testoptim"] == m2["test_before_testoptim"]
    doc2 = json.loads((out / "offsets.json").read_text())
    assert doc2["cameras"][0]["offset_frames"] != 0.0  # the test camera's own slot moved
    assert [c["offset_frames"] for c in doc2["cameras"][1:]] == [c["offset_frames"] for c in doc["cameras"][1:]]

    video = tmp_path / "test.mp4"
    r = run(["render", str(out), "--out", str(video), "--frames", "3"] + RT)
    assert r.exit_code == 0, r.output
    import imageio.v3 as iio

    frames = iio.imread(video)
    assert frames.shape[0] == 3 and frames.shape[2] == 3 * 32  # prediction | truth | error

    spiral = tmp_path / "spiral.mp4"
    r = run(["render", str(out), "--path", "spiral", "--time", "4", "--frames", "2", "--out", str(spiral),
             "--png", str(tmp_path / "png")] + RT)
    assert r.exit_code == 0, r.output
    assert iio.imread(spiral).shape == (2, 24, 32, 3)
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["00000.png", "00001.png"]
    r = run(["render", str(out), "--time", "99"] + RT)
    assert r.exit_code == 2 and "outside the video's frames" in r.output


def test_offsets_move_toward_truth(scene, tmp_path):
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.metrics import offset_mae
    from taichi_syncnerf.train import train

    gt = json.loads((scene / "offsets_gt.json").read_text())["offsets_frames"]
    # pure ISG (no uniform share): this checks the offsets' gradient from the moving pixels, in few steps
    c = load_config(cfg_file(tmp_path), TINY + ["train.steps=150", "kplanes.proposal.samples=[]",
                                                "kplanes.n_samples=24", "sampling.floor=0"])
    train(c, scene, tmp_path / "run", progress=False)
    doc = json.loads((tmp_path / "run" / "offsets.json").read_text())
    pred = [cam["offset_frames"] for cam in doc["cameras"]]
    before = offset_mae(np.zeros(4), gt, exclude=[0]).mae_frames
    after = offset_mae(pred, gt, exclude=[0]).mae_frames
    assert after < 0.6 * before, (before, after, pred, gt)


def test_bad_run_folder_errors(tmp_path):
    r = run(["eval", str(tmp_path / "missing")] + RT)
    assert r.exit_code == 2 and "run folder not found" in r.output
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.yaml").write_text("name: x\n")
    (tmp_path / "x" / "run.json").write_text(json.dumps({"format_version": 999, "package_version": "9.0"}))
    r = run(["testoptim", str(tmp_path / "x")] + RT)
    assert r.exit_code == 2 and "newer taichi-syncnerf" in r.output


def test_ctrl_c_leaves_a_resumable_checkpoint(scene, tmp_path, monkeypatch):
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.models.kplanes.model import SyncKPlanes
    from taichi_syncnerf.train import Interrupted, train

    original = SyncKPlanes.train_step

    def interrupted_at_7(self, n, step, *args, **kwargs):
        if step == 7:
            raise KeyboardInterrupt
        return original(self, n, step, *args, **kwargs)

    monkeypatch.setattr(SyncKPlanes, "train_step", interrupted_at_7)
    c = load_config(cfg_file(tmp_path), TINY + ["train.steps=12"])
    with pytest.raises(Interrupted, match="step 7"):
        train(c, scene, tmp_path / "run", progress=False)
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-00000007.npz"]
    monkeypatch.setattr(SyncKPlanes, "train_step", original)
    record = train(c, scene, tmp_path / "run", resume=True, progress=False)
    assert record["step"] == 12
