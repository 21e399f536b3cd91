"""Faults of a run folder through the command line, on one tiny trained run:

* a truncated newest checkpoint: ``train --resume``, ``eval`` and ``render`` use the newest readable one
  and say in one ``warning:`` line which one they skipped and why;
* two writers: while a ``train --resume`` runs in another process, ``testoptim``, ``eval`` and a second
  ``train --resume`` are refused in one line (exit 2), ``render`` and ``view --benchmark`` work as
  readers; after ``kill -9`` of the writer its lock is taken over with a warning;
* a full disk (``ulimit -f``) during a checkpoint write: one line naming the file, exit 2, the previous
  checkpoint still loads, no lock and no temporary left;
* a training whose dataset has one camera of 1 frame and the others of 8 (issue 27): the camera is left
  out with one warning and the run trains on every frame of the others.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import yaml

from tests.cli import run as _run
from tests.faults.builders import RT, TAICHI_LOG, config_file
from tests.faults.killing import temporaries

STEPS, EVERY = 6, 3


def run(*args):
    """The command in this process, its warnings shown as a fresh process would show them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        return _run(*args)


def _set_steps(run_dir, steps):
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["train"]["steps"] = steps
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _lines(res):
    return [ln for ln in res.stderr.splitlines() if ln.strip() and not TAICHI_LOG.match(ln)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(dataset, config, a run trained for 6 steps with checkpoints at steps 3 and 6, the training's
    result). The dataset has 4 cameras of 8 frames, but cam02's video holds 1 frame (issue 27)."""
    from taichi_syncnerf.data.synthetic import make_scene
    from taichi_syncnerf.data.video import iter_video, write_video

    root = tmp_path_factory.mktemp("faults-cli")
    make_scene(root / "scene", cameras=4, frames=8, size=(32, 24), offset_sigma=1.0, seed=4, progress=False)
    first = next(iter(iter_video(root / "scene" / "cam02.mp4")))
    write_video(root / "scene" / "cam02.mp4", first[None], 30.0)
    cfg = config_file(root, [f"train.steps={STEPS}", f"train.checkpoint_every={EVERY}"])
    res = run("train", cfg, "--data", root / "scene", "--out", root / "run", "--no-eval", *RT)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (root / "run" / "checkpoints").iterdir()) == [
        "step-00000003.npz", "step-00000006.npz"]
    return root / "scene", cfg, root / "run", res


def test_a_truncated_newest_checkpoint_is_skipped_with_a_warning(trained, tmp_path):
    from taichi_syncnerf.checkpoint import load_checkpoint

    _, cfg, src, _ = trained
    run_dir = shutil.copytree(src, tmp_path / "run")
    newest = run_dir / "checkpoints" / "step-00000006.npz"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    want = "skipped " + str(newest)

    def check(res):
        assert res.exit_code == 0, res.output
        warns = [ln for ln in _lines(res) if ln.startswith("warning: ") and "skipped" in ln]
        assert len(warns) == 1 and want in warns[0] and "not a readable checkpoint" in warns[0] \
            and "using step-00000003.npz" in warns[0], _lines(res)
        assert all(ln.startswith("warning: ") for ln in _lines(res)), _lines(res)

    check(run("eval", run_dir, *RT))
    check(run("render", run_dir, "--frames", 2, "--out", tmp_path / "a.mp4", *RT))
    assert (tmp_path / "a.mp4").exists()
    check(run("train", cfg, "--out", run_dir, "--resume", "--no-eval", *RT))
    meta, _ = load_checkpoint(newest)                   # written again by the resumed run
    assert meta["step"] == STEPS
    steps = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS


def _wait(cond, timeout, proc=None, what=""):
    t0 = time.perf_counter()
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the writer ended early ({what}): {proc.stderr.read()}")
        assert time.perf_counter() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_writers_and_a_killed_writers_lock(trained, tmp_path):
    _, cfg, src, _ = trained
    run_dir = shutil.copytree(src, tmp_path / "run")
    _set_steps(run_dir, 100000)
    log = run_dir / "log.jsonl"
    size0 = log.stat().st_size
    writer = subprocess.Popen(
        [sys.executable, "-m", "taichi_syncnerf.cli.main", "train", str(cfg), "--out", str(run_dir), "--resume",
         "--no-eval", "--arch", "cpu", "--threads", "1", "--precision", "f64", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: os.nice(19))          # it only has to hold the lock: leave the CPU to the readers
    try:
        _wait(lambda: log.stat().st_size > size0, 120, writer, "the writer's first steps")
        lock = json.loads((run_dir / ".lock").read_text())
        assert lock["pid"] == writer.pid
        for args in (["testoptim", run_dir], ["eval", run_dir], ["train", cfg, "--out", run_dir, "--resume"]):
            res = run(*args, *RT)
            assert res.exit_code == 2, (args, res.output)
            lines = _lines(res)
            assert len(lines) == 1 and lines[0].startswith("error: ") and "another process writes this run" \
                in lines[0] and f"PID {writer.pid}" in lines[0] and "train --resume" in lines[0], lines
        res = run("render", run_dir, "--frames", 2, "--out", tmp_path / "r.mp4", *RT)       # a reader
        assert res.exit_code == 0, res.output
        res = run("view", run_dir, "--benchmark", "24", *RT[:-1])                          # a reader
        assert res.exit_code == 0, (res.output, res.exception)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert json.loads((run_dir / ".lock").read_text())["pid"] == writer.pid           # left by the kill
    _set_steps(run_dir, STEPS)
    res = run("eval", run_dir, *RT)
    assert res.exit_code == 0, res.output
    warns = [ln for ln in _lines(res) if ln.startswith("warning: ")]
    assert any(f"taking over the lock of process {writer.pid} (train --resume), which is gone" in ln
               for ln in warns), warns
    assert not (run_dir / ".lock").exists()


def test_a_full_disk_during_a_checkpoint_write(trained, tmp_path):
    from taichi_syncnerf.run_folder import RunFolder

    _, cfg, src, _ = trained
    run_dir = shutil.copytree(src, tmp_path / "run")
    _set_steps(run_dir, STEPS + EVERY)
    size = (run_dir / "checkpoints" / "step-00000006.npz").stat().st_size

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    res = subprocess.run([sys.executable, "-m", "taichi_syncnerf.cli.main", "train", str(cfg), "--out", str(run_dir),
                          "--resume", "--no-eval", *RT], preexec_fn=limit, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not TAICHI_LOG.match(ln)]
    assert lines[-1].startswith("error: ") and all(ln.startswith("warning: ") for ln in lines[:-1]), lines
    assert "step-00000009.npz: cannot write it: file too large" in lines[-1], lines
    path, meta, _ = RunFolder(run_dir).load_newest_checkpoint()
    assert path.name == "step-00000006.npz" and meta["step"] == STEPS
    assert not (run_dir / ".lock").exists()
    assert temporaries(run_dir, run_dir / "checkpoints") == []


def test_one_camera_of_one_frame_is_left_out(trained):
    """Issue 27: one video of 1 frame, the others 8: that camera is left out with one warning and the
    run keeps every frame of the others."""
    _, _, run_dir, res = trained
    lines = _lines(res)
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "left out cam02.mp4 (1 frame)" in lines[0] \
        and "median length, 8 frames" in lines[0], lines
    doc = json.loads((run_dir / "offsets.json").read_text())
    assert [c["name"] for c in doc["cameras"]] == ["cam00", "cam01", "cam03"]
    with np.load(run_dir / "checkpoints" / "step-00000006.npz") as z:
        assert z["offsets/params"].shape == (3,)
    from taichi_syncnerf.run_folder import open_run

    assert open_run(run_dir).source.n_frames == 8
