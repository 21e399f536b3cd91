"""Sync-MixVoxels through the command line on a tiny generated scene: train (interrupted and
resumed across a grid upsample and an alpha mask), eval, testoptim, render; the model kind is
chosen by the config."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from taichi_syncnerf.cli.main import main

TINY = [
    "mixvoxels.comps_density=[2, 2, 2]", "mixvoxels.comps_app=[4, 2, 2]", "mixvoxels.voxels_init=512",
    "mixvoxels.voxels_final=1728", "mixvoxels.upsample_steps=[4]", "mixvoxels.alpha_mask_steps=[7]",
    "mixvoxels.n_samples=8", "mixvoxels.static_hidden=8", "mixvoxels.trunk_hidden=8", "mixvoxels.width=4",
    "mixvoxels.time_freqs=3", "mixvoxels.time_hidden=8", "mixvoxels.stage1_steps=3", "mixvoxels.pool_kernel=3",
    "mixvoxels.dynamic_threshold=0.3", "train.batch_rays=64", "testoptim.batch_rays=64", "train.log_every=2",
    "train.checkpoint_every=5", "train.val_every=null", "eval.max_frames=2", "eval.lpips=false",
    "offsets.freeze_step=null", "data.path=null", "data.generate=null", "train.steps=10",
    "testoptim.variation_steps=2",
]
RT = ["--arch", "cpu", "--threads", "2", "--precision", "f64", "--quiet"]


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from taichi_syncnerf.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("mv") / "scene"
    make_scene(out, layout="n3dv", cameras=3, frames=6, size=(24, 16), offset_sigma=1.0, seed=3, progress=False)
    return out


def test_train_resume_eval_testoptim_render(scene, tmp_path, monkeypatch):
    from taichi_syncnerf.checkpoint import CheckpointArrays
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.train import train

    out = tmp_path / "run"
    cfg = load_config("synthetic/sync-mixvoxels", TINY)
    assert cfg["model"]["kind"] == "sync-mixvoxels"
    train(cfg, scene, out, progress=False, stop_after=5)  # the upsample at step 4 is behind it
    read, lookup = [], CheckpointArrays.__getitem__        # the checkpoint entries each command reads
    monkeypatch.setattr(CheckpointArrays, "__getitem__", lambda self, k: read.append(k) or lookup(self, k))
    run("train", "synthetic/sync-mixvoxels", "--out", out, "--resume", "--no-eval", *RT)
    assert [k for k in read if k.startswith("adam/")]       # resuming restores the optimiser's moments
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 5, 6, 8, 10]
    assert all(np.isfinite(r["loss"]) for r in log)
    ckpt = np.load(out / "checkpoints" / "step-00000010.npz")
    assert list(ckpt["mixvoxels/res"]) != [8, 8, 8] and "mixvoxels/occ" in ckpt.files
    read.clear()
    run("eval", out, *RT)                                  # to render: the moments stay on disk
    assert "params/static.density" in read and not [k for k in read if k.startswith("adam/")]
    monkeypatch.undo()
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["test"]["psnr"]) and "offsets" in metrics
    before = json.loads((out / "offsets.json").read_text())["cameras"][0]["offset_frames"]
    run("testoptim", out, "--steps", 3, *RT)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["testoptim"]["steps"] == 3 and "test_before_testoptim" in metrics
    assert metrics["testoptim"]["variation_steps"] == 2
    tlog = [json.loads(line) for line in (out / "testoptim.jsonl").read_text().splitlines()]
    assert [r["variation_step"] for r in tlog if "variation_step" in r] == [1, 2]
    after = json.loads((out / "offsets.json").read_text())["cameras"][0]["offset_frames"]
    assert after != before  # the test camera's own offset moved
    run("render", out, "--png", tmp_path / "png", "--out", tmp_path / "v.mp4", "--frames", 2, *RT)
    assert len(list((tmp_path / "png").glob("*.png"))) == 2


def test_unknown_model_kind_is_a_one_line_error(tmp_path):
    r = CliRunner().invoke(main, ["train", "synthetic/sync-mixvoxels", "-o", "model.kind=nerf", "--out",
                                  str(tmp_path / "r")])
    assert r.exit_code != 0
    assert "model.kind" in r.output and "sync-mixvoxels" in r.output and "Traceback" not in r.output
