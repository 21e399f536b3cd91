"""``taichi-syncnerf view``: one-line errors, the figures panel, live reload and the server's page."""
import json
import shutil
import socket
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner

from taichi_syncnerf.cli.main import main
from taichi_syncnerf.errors import UserError

RT = ["--arch", "cpu", "--threads", "2", "--precision", "f64"]


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_not_a_run_is_one_line(tmp_path):
    r = invoke(["view", str(tmp_path / "missing")] + RT)
    assert r.exit_code == 2 and r.output.strip() == f"error: {tmp_path / 'missing'}: run folder not found"
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("hi")
    for extra in ([], ["--live", "--wait-timeout", "1"]):
        r = invoke(["view", str(tmp_path / "x")] + extra + RT)
        assert r.exit_code == 2, r.output
        assert r.output.strip().splitlines()[-1] == f"error: {tmp_path / 'x'}: not a run folder (no config.yaml)"


def test_live_gives_up_when_no_checkpoint_appears(tmp_path):
    r = invoke(["view", str(tmp_path / "later"), "--live", "--wait-timeout", "0.5"] + RT)
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == f"error: {tmp_path / 'later'}: no checkpoint appeared within 0.5 s"


def test_missing_viser_says_how_to_install(monkeypatch, tiny_run):
    import builtins

    real = builtins.__import__

    def no_viser(name, *args, **kwargs):
        if name == "viser" or name.startswith("viser."):
            raise ImportError("No module named 'viser'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_viser)
    r = invoke(["view", str(tiny_run[0])] + RT)
    assert r.exit_code == 2
    assert "needs the viser package" in r.output and "pip install -e '.[viewer]'" in r.output


def test_port_taken_is_one_line():
    from taichi_syncnerf.viewer.app import check_port

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is taken"):
            check_port("127.0.0.1", port)
    with pytest.raises(UserError, match="not an address"):
        check_port("no-such-host.invalid", 8080)


def test_benchmark_prints_figures(tiny_run, run_model, capsys):
    from taichi_syncnerf.viewer.bench import benchmark

    results = benchmark(tiny_run[0], [24, 48], moving_frames=2, full_frames=1, log=lambda s: None,
                        model=run_model)
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["results"] == results
    assert [x["full"] for x in results] == ["32x24", "64x48"] and [x["moving"] for x in results] == ["11x8", "16x12"]
    assert all(x["moving_fps"] > 0 and x["full_frame_s"] > 0 for x in results)
    r = invoke(["view", str(tiny_run[0]), "--benchmark", "24,x"] + RT)
    assert r.exit_code == 2 and "--benchmark takes heights" in r.output


def test_figures_markdown():
    from taichi_syncnerf.viewer.panel import figures_markdown

    m = {"test": {"psnr": 31.234, "ssim": 0.91}, "test_before_testoptim": {"psnr": 29.5},
         "offsets": {"mae_frames": 0.0123}}
    text = figures_markdown("runs/x", 2500, 2500, m, 0.0125, live=False)
    assert "| step shown | 2500 / 2500 |" in text and "31.23 dB" in text and "0.9100" in text
    assert "29.50 dB" in text and "0.012 frames" in text and "0.013 frames" in text
    live = figures_markdown("runs/x", 500, 2500, {}, None, live=True)
    assert "500 / 2500 (live)" in live and "n/a" in live and "offsets MAE" not in live


def test_rig_labels_and_colours(run_model):
    from taichi_syncnerf.viewer.rig import offset_colors, rig_cameras

    rm = run_model
    cams = rig_cameras(rm.source, rm.offsets_frames(), rm.aligned_truth())
    assert [c.is_test for c in cams] == [True, False, False, False]
    assert cams[0].label.startswith("cam00 (test)  +0.00 f  (truth ")
    gt = np.asarray(rm.source.offsets_gt)
    assert cams[2].truth == pytest.approx(gt[2] + np.median(rm.offsets_frames()[1:] - gt[1:]))
    blue, white, red = offset_colors([-2.0, 0.0, 2.0])
    assert blue[2] > blue[0] and red[0] > red[2] and min(white) > 200


def test_live_reload_follows_new_checkpoints(tiny_run, tmp_path):
    """A run folder whose checkpoints appear one after another, as while training."""
    from taichi_syncnerf.checkpoint import list_checkpoints
    from taichi_syncnerf.viewer.live import RunModel

    src_run = tiny_run[0]
    run = tmp_path / "run"
    shutil.copytree(src_run, run, ignore=shutil.ignore_patterns("checkpoints", "offsets.json", "metrics.json"))
    ckpts = list_checkpoints(src_run)
    (run / "checkpoints").mkdir()
    shutil.copy(ckpts[0], run / "checkpoints")
    rm = RunModel(run)
    step0, off0 = rm.step, rm.offsets_frames()
    assert not rm.poll()
    shutil.copy(ckpts[-1], run / "checkpoints")
    assert rm.poll() and rm.version == 1
    assert rm.step > step0 and not np.allclose(rm.offsets_frames(), off0)
    with np.load(ckpts[-1]) as z:
        np.testing.assert_allclose(rm.offsets_frames(), z["offsets/params"] * (rm.source.n_frames - 1) / 1.6)
    # a checkpoint that does not fit the model (another config) is skipped, not retried, the model kept
    with np.load(ckpts[-1]) as z:
        arrays = {k: z[k] for k in z.files}
    bad = next(k for k in arrays if k.startswith("params/") or k.startswith("field"))
    arrays[bad] = arrays[bad][:1]
    np.savez(run / "checkpoints" / "step-99999999.npz", **arrays)
    assert not rm.poll() and rm.version == 1 and rm.ckpt.name == "step-99999999.npz"
    assert not rm.poll()


def test_server_serves_the_page_and_refuses_a_taken_port(tiny_run, run_model):
    pytest.importorskip("viser")
    from taichi_syncnerf.viewer.app import Viewer

    viewer = Viewer(tiny_run[0], port=0, log=lambda s: None, model=run_model)
    try:
        html = urllib.request.urlopen(viewer.url, timeout=10).read().decode()
        assert "<html" in html.lower()
        with pytest.raises(UserError, match=f"port {viewer.port} on 127.0.0.1 is taken"):
            Viewer(tiny_run[0], port=viewer.port, log=lambda s: None, model=run_model)
        r = invoke(["view", str(tiny_run[0]), "--port", str(viewer.port)] + RT)
        assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith(
            f"error: port {viewer.port} on 127.0.0.1 is taken")
    finally:
        viewer.stop()


def test_train_view_refuses_a_taken_port_before_training(tiny_run, tmp_path):
    pytest.importorskip("viser")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = invoke(["train", "synthetic/sync-kplanes", "--data", str(tiny_run[1]), "--out", str(tmp_path / "run"),
                    "--view", str(port)] + RT)
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1].startswith(f"error: port {port} on 127.0.0.1 is taken")
    assert not (tmp_path / "run").exists()


def test_train_view_serves_the_run_live(tiny_run, tmp_path):
    """``train --view``'s viewer process: it waits for the run, then serves it."""
    pytest.importorskip("viser")
    from taichi_syncnerf.cli.view_cmd import LiveViewer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    viewer = LiveViewer(run, port, "cpu", "f32")
    try:
        shutil.copytree(tiny_run[0], run)
        import time

        end = time.monotonic() + 240      # a loaded machine can take minutes to start a process
        while True:
            try:
                html = urllib.request.urlopen(viewer.url, timeout=5).read().decode()
                break
            except OSError:
                assert viewer.proc.poll() is None, viewer.log.read_text()
                assert time.monotonic() < end, "the live viewer did not start"
                time.sleep(0.5)
        assert "<html" in html.lower()
        assert "showing" not in viewer.log.read_text()      # nothing newer than what it opened
    finally:
        viewer.stop()
    assert viewer.proc.returncode is not None
