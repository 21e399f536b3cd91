"""``taichi-syncnerf view``: one-line errors, the figures panel, live reload and the server's page."""
import json
import os
import shutil
import socket
import urllib.request
from pathlib import Path

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

    results = benchmark(tiny_run[0], [24, (40, 30)], moving_frames=2, full_frames=1, log=lambda s: None,
                        model=run_model)
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["results"] == results
    assert [x["full"] for x in results] == ["32x24", "40x30"] and [x["moving"] for x in results] == ["11x8", "11x8"]
    assert all(x["moving_fps"] > 0 and x["full_frame_s"] > 0 and x["passes"][-1] == 1 for x in results)
    assert all(x["first_pass_s"] <= x["time_to_full_s"] for x in results)
    for bad in ("24,x", "30x", "4"):
        r = invoke(["view", str(tiny_run[0]), "--benchmark", bad] + RT)
        assert r.exit_code == 2 and "error: --benchmark" in r.output, r.output


def test_figures_markdown():
    from taichi_syncnerf.viewer.panel import figures_markdown

    m = {"test": {"psnr": 31.234, "ssim": 0.91}, "test_before_testoptim": {"psnr": 29.5},
         "offsets": {"mae_frames": 0.0123}}
    text = figures_markdown("runs/x", 2500, 2500, m, 0.0125, live=False)
    assert "| step shown | 2500 / 2500 |" in text and "31.23 dB" in text and "0.9100" in text
    assert "29.50 dB" in text and "0.012 frames" in text and "0.013 frames" in text
    live = figures_markdown("runs/x", 500, 2500, {}, None, live=True)
    assert "500 / 2500 (live)" in live and "n/a" in live and "offsets MAE" not in live


def test_rig_labels_and_colours(kind_run):
    from taichi_syncnerf.viewer.rig import offset_colors, rig_cameras

    rm = kind_run[1]
    cams = rig_cameras(rm.source, rm.offsets_frames(), rm.aligned_truth())
    assert [c.is_test for c in cams] == [True, False, False, False]
    assert cams[0].label.startswith("cam00 (test)  +0.00 f  (truth ")
    learned = rm.offsets_frames()
    assert np.all(learned[1:] != 0.0)           # the training cameras' offsets were learned
    assert [c.offset for c in cams] == list(learned)
    assert cams[1].label.startswith(f"cam01  {learned[1]:+.2f} f  (truth ")
    gt = np.asarray(rm.source.offsets_gt)
    assert cams[2].truth == pytest.approx(gt[2] + np.median(rm.offsets_frames()[1:] - gt[1:]))
    blue, white, red = offset_colors([-2.0, 0.0, 2.0])
    assert blue[2] > blue[0] and red[0] > red[2] and min(white) > 200


def check_stage_1_is_shown_by_the_head_training_uses(rm) -> None:
    """A Sync-MixVoxels checkpoint of stage 1 renders its dynamic rays with the per-frame head that
    training fits then, not with the time function it does not train yet."""
    from taichi_syncnerf.evaluate import render_colours

    m = rm.model
    assert rm.step == int(rm.cfg["mixvoxels"]["stage1_steps"]) and m.steps_done == rm.step
    assert not m.renders_with_time_function()
    from taichi_syncnerf.models.registry import make_sampler

    batch = make_sampler(rm.cfg, rm.source).sample(np.random.default_rng(0), m.max_rays, rm.step)
    m.forward_backward(batch, rm.step - 1, seed=0, jitter=False)
    m.optimizer.zero_grad()
    dyn = m._dyn_rays_np.copy()
    trained = m.all_renderer.colour.to_numpy()[:len(dyn)]
    assert len(dyn) > 0
    for f in (2, 9):
        rays = {"origins": batch["origins"], "dirs": batch["dirs"], "view_dirs": batch["dirs"],
                "times": np.full(len(batch["cams"]), rm.source.ds.time_of_frame(f)), "cams": batch["cams"]}
        shown = render_colours(m, rays)
        np.testing.assert_allclose(shown[dyn], np.clip(trained[:, f], 0.0, 1.0), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind_run", ["sync-kplanes", "sync-mixvoxels"], indirect=True)
def test_live_reload_follows_new_checkpoints(kind_run, tmp_path):
    """A run folder whose checkpoints appear one after another, as while training: the image, the rig's
    offsets and the figures follow; a checkpoint that does not fit the model is skipped, the model kept."""
    pytest.importorskip("viser")
    from taichi_syncnerf.run_folder import RunFolder
    from taichi_syncnerf.viewer.app import Viewer
    from taichi_syncnerf.viewer.live import RunModel
    from taichi_syncnerf.viewer.rig import offset_colors, rig_cameras

    from .test_camera import _viewer_like_dataset_camera

    src_run, final = kind_run
    run = tmp_path / "run"
    shutil.copytree(src_run, run, ignore=shutil.ignore_patterns("checkpoints", "offsets.json", "metrics.json"))
    ckpts = RunFolder(src_run).checkpoints()
    (run / "checkpoints").mkdir()
    shutil.copy(ckpts[0], run / "checkpoints")
    logs = []
    viewer = Viewer(run, port=0, log=logs.append, model=RunModel(run))
    try:
        rm = viewer.model

        def figures():
            return viewer.story["figures"]

        src, total = rm.source, int(rm.cfg["train"]["steps"])
        step0, off0 = rm.step, rm.offsets_frames()
        labels0 = [c.label for c in viewer.rig_cameras]
        table0 = viewer.story["table"]
        assert step0 < total and f"| step shown | {step0} / {total} |" in figures()
        c2w, intr = _viewer_like_dataset_camera(src, 1)
        before = rm.render(c2w, intr, 2.0)
        if rm.model.kind == "sync-mixvoxels":
            check_stage_1_is_shown_by_the_head_training_uses(rm)
        assert not viewer.reload()
        shutil.copy(ckpts[-1], run / "checkpoints")
        assert viewer.reload() and rm.version == 1 and logs[-1] == f"showing step {total}"
        assert rm.step == total and not np.allclose(rm.offsets_frames(), off0)
        if rm.model.kind == "sync-mixvoxels":
            assert rm.model.renders_with_time_function()
        with np.load(ckpts[-1]) as z:
            np.testing.assert_allclose(rm.offsets_frames(), z["offsets/params"] * (src.n_frames - 1) / 1.6)
        assert f"| step shown | {total} / {total} |" in figures()
        assert f"| offsets MAE (step shown) | {rm.offset_mae():.3f} frames |" in figures()
        labels = [c.label for c in rig_cameras(src, rm.offsets_frames(), rm.aligned_truth())]
        assert [c.label for c in viewer.rig_cameras] == labels != labels0
        assert [c.color for c in viewer.rig_cameras] == offset_colors(rm.offsets_frames())
        assert viewer.story["table"] != table0 and f"{rm.offsets_frames()[1]:+.2f}" in viewer.story["table"]
        after = rm.render(c2w, intr, 2.0)
        assert np.abs(after - before).max() > 1e-3
        np.testing.assert_allclose(after, final.render(c2w, intr, 2.0), rtol=0, atol=1e-12)   # as opened there
        # another config's checkpoint: its first entries fit, the last does not
        with np.load(ckpts[0]) as z:
            arrays = {k: z[k] for k in z.files}
        bad = [k for k in arrays if k != "meta" and not k.startswith(("offsets/", "adam/", "mixvoxels/"))][-1]
        arrays[bad] = arrays[bad][:1]
        np.savez(run / "checkpoints" / "step-99999999.npz", **arrays)
        assert not viewer.reload() and rm.version == 1 and rm.ckpt.name == "step-99999999.npz"
        assert logs[-1].endswith("step-99999999.npz: not loaded (it does not fit the model shown)")
        np.testing.assert_array_equal(rm.render(c2w, intr, 2.0), after)
        assert not viewer.reload() and f"| step shown | {total} / {total} |" in figures()
    finally:
        viewer.stop()


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


def _thread_nice_values(pid: int) -> list[int]:
    """The nice value of every thread of a process (Linux /proc; field 19 of each task's stat)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.append(int(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[16]))
        except (OSError, IndexError, ValueError):
            pass
    return out


def test_train_view_serves_the_run_live(tiny_run, tmp_path):
    """``train --view``'s viewer process: it waits for the run, then serves it; its reload thread runs
    at nice 19 (training keeps the CPU), and once it has started so does every other thread of it
    (viser's server, Taichi's workers, the main thread)."""
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
        if Path(f"/proc/{viewer.proc.pid}/task").is_dir():    # the reload thread starts after the page
            base = os.getpriority(os.PRIO_PROCESS, 0)
            while set(nice := _thread_nice_values(viewer.proc.pid)) != {min(19, base + 19)}:
                assert time.monotonic() < end, f"not every thread at nice {base} + 19: {nice}"
                time.sleep(0.2)
            assert len(nice) > 2, nice
    finally:
        viewer.stop()
    assert viewer.proc.returncode is not None


def _per_thread_after_lowering(niceness: int, per_thread: str) -> list:
    """In a child process (priorities cannot be raised back): one thread started before and one
    after ``lower_process_priority(niceness)``; the sorted ``per_thread`` expression (of the thread
    id ``t``, a string) over every thread of that process."""
    code = f"""
import json, os, threading, time
from taichi_syncnerf.viewer.app import lower_process_priority
stop = threading.Event()
before = threading.Thread(target=stop.wait); before.start()
lower_process_priority({niceness})
after = threading.Thread(target=stop.wait); after.start()
time.sleep(0.2)
vals = sorted({per_thread} for t in os.listdir("/proc/self/task"))
stop.set()
print(json.dumps(vals))
"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread nice values need Linux /proc")
def test_lower_process_priority_lowers_every_thread_once():
    """Threads running before the call and threads started after it end at base + niceness, not more."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    vals = _per_thread_after_lowering(
        5, 'int(open(f"/proc/self/task/{t}/stat").read().rsplit(")", 1)[1].split()[16])')
    assert len(vals) >= 3 and set(vals) == {min(19, base + 5)}, vals


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or not hasattr(os, "SCHED_IDLE"),
                    reason="needs Linux /proc and SCHED_IDLE")
def test_nice_19_puts_every_thread_in_the_idle_class():
    """At nice 19 the threads running before the call and those started after it are SCHED_IDLE."""
    pols = _per_thread_after_lowering(19, "os.sched_getscheduler(int(t))")
    assert len(pols) >= 3 and set(pols) == {os.SCHED_IDLE}, pols


def test_camera_message_without_a_move_keeps_the_full_frame():
    """The browser resends its camera on a resize: only a message that changes the view counts as a move
    (a move drops the next frames to the moving height)."""
    from types import SimpleNamespace

    from taichi_syncnerf.viewer.app import Session

    cam = SimpleNamespace(wxyz=np.array([1.0, 0.0, 0.0, 0.0]), position=np.zeros(3), fov=0.8, aspect=1.5)
    view = Session.__new__(Session)
    view.client, view.last_view, view.snapped = SimpleNamespace(camera=cam), None, None
    view._moved(cam)
    view.last_move = first = 100.0
    cam.aspect = 1.2                                   # the page resized: the same view
    view._moved(cam)
    assert view.last_move == first
    cam.position = np.array([0.0, 0.0, 0.01])
    view._moved(cam)
    assert view.last_move > first
