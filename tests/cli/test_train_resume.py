"""``taichi-syncnerf train --resume``: it continues with RUN/config.yaml, so overrides are refused."""
import pytest

from . import assert_one_line_error, run


@pytest.mark.parametrize("args, needles", [
    (["-o", "train.steps=5"], ["-o train.steps=5"]),
    (["--no-sync"], ["--no-sync"]),
    (["-o", "train.lr=0.02", "--no-sync"], ["-o train.lr=0.02", "--no-sync"]),
])
def test_resume_refuses_overrides(tmp_path, monkeypatch, args, needles):
    import taichi_syncnerf.train

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(taichi_syncnerf.train, "train", no_training)
    out = tmp_path / "run"
    res = run("train", "synthetic/sync-kplanes", "--out", out, "--resume", *args, "--quiet")
    assert_one_line_error(res, "--resume", str(out / "config.yaml"), "overrides are not allowed", *needles)
    assert not out.exists()


def test_resume_without_overrides_reads_the_run(tmp_path):
    out = tmp_path / "run"
    assert_one_line_error(run("train", "synthetic/sync-kplanes", "--out", out, "--resume", "--quiet"),
                          str(out), "run folder not found")
    assert_one_line_error(run("train", "synthetic/sync-kplanes", "--resume", "-o", "train.steps=5"),
                          "--resume needs --out")
