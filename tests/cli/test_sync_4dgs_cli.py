"""Sync-4DGS end to end on a tiny generated scene through the command line: train (interrupted and
resumed), eval, testoptim, render (dataset view, spiral), export (one time, every frame; another
model kind is a one-line error)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from taichi_syncnerf.cli.main import main

TINY = ["gaussians.max_gaussians=300", "gaussians.init_points=120", "gaussians.sh_degree=1",
        "gaussians.sh_increase_every=4", "gaussians.plane_res=4", "gaussians.plane_multires=[1, 2]",
        "gaussians.plane_features=4", "gaussians.deform_width=8", "gaussians.time_res=4", "gaussians.static_steps=4",
        "gaussians.densify_from=2", "gaussians.densify_every=3", "gaussians.densify_until=10",
        "gaussians.batch_images=2", "offsets.start_step=5", "offsets.freeze_step=null", "train.log_every=3",
        "train.checkpoint_every=6", "train.val_every=null", "eval.max_frames=2", "eval.lpips=false",
        "testoptim.steps=3", "train.steps=12"]
RT = ["--arch", "cpu", "--threads", "2", "--precision", "f64", "--quiet"]


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from taichi_syncnerf.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("gs-e2e") / "scene"
    make_scene(out, layout="n3dv", cameras=4, frames=8, size=(32, 24), offset_sigma=1.5, seed=5, progress=False)
    return out


def test_train_resume_eval_testoptim_render_export(scene, tmp_path):
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.models.gaussians.export import read_ply
    from taichi_syncnerf.train import train

    out = tmp_path / "run"
    train(load_config("synthetic/sync-4dgs", TINY), scene, out, progress=False, stop_after=6)
    r = run(["train", "synthetic/sync-4dgs", "--data", str(scene), "--out", str(out), "--resume"] + RT)
    assert r.exit_code == 0, r.output
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in log] == [3, 6, 9, 12] and all(rec["gaussians"] > 0 for rec in log)
    m = json.loads((out / "metrics.json").read_text())
    assert m["test"]["psnr"] > 5 and "offsets" in m and 0 < m["test"]["median_image_psnr"] < 60
    with np.load(out / "checkpoints" / "step-00000012.npz") as z:
        n = int(z["gaussians/count"])
        assert z["gaussians/means"].shape == (n, 3) and int(z["gaussians/fine"]) == 1

    r = run(["testoptim", str(out)] + RT)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["testoptim"]["steps"] == 3 and "test_before_testoptim" in m

    for args in (["--frames", "2"], ["--path", "spiral", "--frames", "2"]):
        r = run(["render", str(out)] + args + RT)
        assert r.exit_code == 0, r.output
    assert len(list((out / "renders").glob("*.mp4"))) == 2

    r = run(["export", str(out), "--time", "3.5", "--out", str(tmp_path / "t.ply")] + RT)
    assert r.exit_code == 0, r.output
    assert read_ply(tmp_path / "t.ply")["means"].shape == (n, 3)
    r = run(["export", str(out), "--frames", "all", "--out", str(tmp_path / "all")] + RT)
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "all").glob("*.ply"))
    assert [f.name for f in files] == [f"frame_{i:05d}.ply" for i in range(8)]
    first, last = read_ply(files[0]), read_ply(files[-1])
    assert np.abs(first["means"] - last["means"]).max() > 0         # deformed at each frame's time

    r = run(["export", str(out), "--time", "99", "--out", str(tmp_path / "x.ply")] + RT)
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "outside the video's frames" in r.output


def test_export_of_another_model_kind_is_one_line(scene, tmp_path):
    from taichi_syncnerf.config import DEFAULTS
    from taichi_syncnerf.run_folder import RunFolder

    RunFolder.create(tmp_path / "kp", DEFAULTS, scene)
    r = run(["export", str(tmp_path / "kp"), "--time", "0", "--out", str(tmp_path / "x.ply")] + RT)
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "sync-kplanes run has no Gaussians to export" in r.output
