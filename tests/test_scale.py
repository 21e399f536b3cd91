"""Issue 26, the size of real captures: Sync-MixVoxels' memory does not grow with the frame count
(its dynamic rays in chunks), the chunks compute what one pass computes, the per-pixel statistics
read one frame at a time, and the CPU-side parts of benchmarks/scale.py and of gpu_check.sh's
published-size leg (argument handling, the projection arithmetic, the memory sampler)."""
import importlib.util
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import taichi as ti
from taichi.lang.field import Field as TiField

from taichi_syncnerf.data import preprocess
from taichi_syncnerf.models.mixvoxels.model import SyncMixVoxels
from tests.models.test_sync_mixvoxels import C, F, R, make_batch, randomize, tiny_cfg

ROOT = Path(__file__).resolve().parent.parent


def _scale():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def field_bytes(obj, seen=None) -> int:
    """Bytes of every Taichi field (gradients included) reachable from ``obj``'s attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, TiField):
        try:
            shape = obj.shape
        except AttributeError:  # a gradient that was never placed
            return 0
        n = int(np.prod(shape)) * int(getattr(obj, "n", 1) * getattr(obj, "m", 1))
        size = n * np.dtype(ti.lang.util.to_numpy_type(obj.dtype)).itemsize
        grad = getattr(obj, "grad", None)
        return size + (field_bytes(grad, seen) if isinstance(grad, TiField) else 0)
    if isinstance(obj, dict):
        return sum(field_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(field_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith(("taichi_syncnerf", "kernels")):
        return sum(field_bytes(v, seen) for v in vars(obj).values())
    return 0


def build(n_frames: int, max_rays: int, *extra) -> SyncMixVoxels:
    return SyncMixVoxels(tiny_cfg(*extra), n_cameras=C, n_frames=n_frames, test_index=0, ndc=False, near=0.5,
                         far=5.5, bbox=[[-1, -1, -1], [1, 1, 1]], background=[1.0, 1.0, 1.0], max_rays=max_rays)


def test_mixvoxels_memory_does_not_grow_with_the_frame_count(monkeypatch):
    """At F and 4F frames the model allocates nearly the same: the samples x frames buffers of the
    dynamic rays (the all-frames head and renderer: 13 values per sample and frame) are sized by
    the chunk budget, not by the batch. Before the chunks they were sized by every sample of the
    batch (here 13 x 3F x S x 8 bytes = 12.8 MB more at 4F)."""
    monkeypatch.setattr(SyncMixVoxels, "dynamic_chunk_bytes", 128 << 10)
    extra = ("mixvoxels.n_samples=16", "train.batch_rays=256")
    small, large = build(10, 256, *extra), build(40, 256, *extra)
    S, itemsize = small.S, 8
    for m in (small, large):
        assert m.Sd < m.S                                      # chunked: the budget holds fewer samples
        assert 13 * m.n_frames * m.Sd * itemsize <= (128 << 10) + 13 * m.n_frames * m.n_samples * itemsize
        assert m.frame_head.sigma.shape == (m.Sd, m.n_frames) and m.all_renderer.trans.shape[0] == m.Sd
    growth = field_bytes(large) - field_bytes(small)
    old_growth = 13 * 30 * S * itemsize
    assert 0 < growth < old_growth / 8, (growth, old_growth)


def test_dynamic_chunks_compute_what_one_pass_computes():
    """One model: the loss, every gradient and the rendered colours with all dynamic rays in one
    chunk, then with one ray per chunk (float64: equal to rounding). In a process of its own (the
    suite's process has allocated hundreds of models' fields by now; this one stays small)."""
    code = ("from taichi_syncnerf import runtime; runtime.init(arch='cpu', threads=2, precision='f64'); "
            "from tests.test_scale import check_dynamic_chunks; check_dynamic_chunks()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def check_dynamic_chunks():
    model = build(F, R)
    assert model.Sd == model.S
    randomize(model, seed=1)
    batch = make_batch(3)

    def run():
        model.optimizer.zero_grad()
        stats = model.forward_backward(batch, 0, seed=3, jitter=True)
        grads = {n: f.grad.to_numpy().copy() for n, f, _ in model.param_groups()}
        model.optimizer.zero_grad()
        n = model.load_rays(batch["origins"], batch["dirs"], batch["dirs"], np.full(R, 0.1), batch["cams"])
        return stats, grads, model.render_rays(n), len(model._chunks())

    one = run()
    model.Sd = model.n_samples            # one ray per chunk (the buffers stay as allocated)
    try:
        many = run()
    finally:
        model.Sd = model.S
    assert one[3] == 1 and many[3] == model._n_dyn_rays > 1
    assert one[0]["mse_dynamic"] > 0
    for key in ("loss", "mse", "mse_dynamic", "bce"):
        assert many[0][key] == pytest.approx(one[0][key], rel=1e-12, abs=1e-15)
    for name, g in one[1].items():
        np.testing.assert_allclose(many[1][name], g, rtol=1e-10, atol=1e-13, err_msg=name)
    assert any(np.abs(g).max() > 0 for n, g in one[1].items() if n.startswith("dynamic."))
    np.testing.assert_allclose(many[2], one[2], rtol=0, atol=1e-13)


def test_mean_colour_reads_one_frame_at_a_time():
    """The same float32 values as the float32 mean of the whole video, with memory that does not
    grow with the frame count (the old way held a float32 copy of the camera's video)."""
    rng = np.random.default_rng(0)
    peaks = {}
    for n in (20, 80):
        frames = rng.integers(0, 256, (n, 60, 50, 3), dtype=np.uint8)
        frames[:, :4] = 255
        want = np.asarray(frames, np.float32).mean(axis=0) / 255.0
        tracemalloc.start()
        got = preprocess.mean_colour(frames)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert got.dtype == np.float32 and np.array_equal(got, want)
    frame_bytes = 60 * 50 * 3
    assert peaks[80] < peaks[20] + frame_bytes and peaks[80] < 40 * frame_bytes


# ---------------------------------------------------------------- benchmarks/scale.py

def test_projection_arithmetic():
    scale = _scale()
    assert scale.projected_hours(60000, 10.0) == pytest.approx(60000 / 10.0 / 3600.0)
    assert scale.projected_hours(90000, 0.0) is None and scale.projected_hours(90000, None) is None
    p = scale.projection(72000, 8.0)
    assert p["schedule_steps"] == 72000 and p["projected_hours"] == 2.5
    assert p["paper_a6000_hours"] == [2.0, 2.5] and p["ratio_to_paper"] == [1.25, 1.0]
    assert scale.projection(100, None)["ratio_to_paper"] is None
    # steps/s: the median of the windows after the first (compilation)
    logs = [{"step": 20, "steps_per_s": 0.5}, {"step": 40, "steps_per_s": 9.0}, {"step": 60, "steps_per_s": 11.0},
            {"step": 80, "steps_per_s": 10.0}]
    assert scale.window_rate(logs) == 10.0 and scale.window_rate(logs[:1]) == 0.5 and scale.window_rate([]) is None


def test_stage_lists_and_overrides():
    scale = _scale()
    for name in ("plenoptic", "blender"):
        got = scale.presets(name)
        assert got == sorted(f"{name}/{p.stem}" for p in (ROOT / "configs" / name).glob("*.yaml"))
        assert {f"{name}/sync-kplanes-explicit", f"{name}/sync-kplanes-hybrid", f"{name}/sync-mixvoxels"} <= set(got)

    class A:
        steps, plenoptic_downsample = 5, 1
    assert "data.downsample=1" in scale.overrides("plenoptic/sync-mixvoxels", A)
    assert not any(o.startswith("data.downsample") for o in scale.overrides("blender/sync-mixvoxels", A))
    from taichi_syncnerf.config import load_config
    kinds = {p: scale.stat_kinds(load_config(p)) for p in scale.presets("plenoptic")}
    assert kinds["plenoptic/sync-mixvoxels"] == ["std", "mean"] and kinds["plenoptic/sync-kplanes-hybrid"] == ["isg", "ist"]
    assert all(kinds[p] == [] for p in kinds if load_config(p)["model"]["kind"] == "sync-4dgs")  # whole images
    # a reused capture or cache carries no memory figures
    assert not scale.measured({"stage": "cache", "built": False, "peak_anon_mib": 5})
    assert scale.measured({"stage": "train", "peak_anon_mib": 5})


@pytest.mark.parametrize("final", [False, True])
def test_outputs_on_final_grid(tmp_path, monkeypatch, final):
    """--outputs-on-final-grid: Sync-MixVoxels' eval, render and view open the train_final_grid run
    and say grid: final; the other presets' outputs, and everything without the flag, open the train
    run; both runs are removed afterwards."""
    import argparse

    scale = _scale()
    calls = []

    def fake_stage(stage, preset, data, run, args, extra=()):
        calls.append((preset, stage, run.name))
        run.mkdir(parents=True, exist_ok=True)
        return {"preset": preset, "stage": stage, "peak_anon_mib": 10, "peak_file_mib": 1, "peak_rss_mib": 11,
                "wall_s": 1.0, "cpu_s": 1.0}

    monkeypatch.setattr(scale, "run_stage", fake_stage)
    monkeypatch.setattr(scale, "make_set", lambda name, root, args, records: tmp_path / "data")
    args = argparse.Namespace(out=tmp_path / "out", data=tmp_path, sets=["plenoptic"], steps=5, testoptim_steps=3,
                              threads=1, arch="cpu", plenoptic_downsample=1, skip=[], keep_runs=False,
                              presets=["plenoptic/sync-mixvoxels", "plenoptic/sync-kplanes-hybrid"],
                              outputs_on_final_grid=final)
    res = scale.drive(args)
    runs = {(p, st): r for p, st, r in calls}
    for st in ("eval", "render", "view"):
        want = "plenoptic_sync-mixvoxels" + ("_final_grid" if final else "")
        assert runs[("plenoptic/sync-mixvoxels", st)] == want
        assert runs[("plenoptic/sync-kplanes-hybrid", st)] == "plenoptic_sync-kplanes-hybrid"
    grids = {(r["preset"], r["stage"]): r.get("grid") for r in res["stages"]}
    assert grids[("plenoptic/sync-mixvoxels", "eval")] == ("final" if final else None)
    assert grids[("plenoptic/sync-kplanes-hybrid", "eval")] is None
    assert ("plenoptic/sync-kplanes-hybrid", "train_final_grid") not in runs
    assert res["outputs_on_final_grid"] is final
    assert not any(p.is_dir() for p in args.out.iterdir())


def test_memory_sampler_tells_anonymous_from_file_backed(tmp_path):
    scale = _scale()
    data = tmp_path / "blob.u8"
    data.write_bytes(b"\1" * (96 << 20))
    code = ("import numpy as np, time; a = np.ones(64 << 20, np.uint8); "
            f"m = np.memmap({str(data)!r}, np.uint8, 'r'); s = int(m.sum()); time.sleep(0.5); print(s)")
    m = scale.measure([sys.executable, "-c", code], tmp_path / "log", timeout=60)
    assert m["rc"] == 0
    assert 60 <= m["peak_anon_mib"] < 200
    assert m["peak_file_mib"] >= 90
    assert m["peak_rss_mib"] >= m["peak_anon_mib"]


# ---------------------------------------------------------------- gpu_check.sh --published

def _gpu_check(*args, env=None):
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, needle", [
    (["--published", "--budget", "abc"], "--budget must be a number"),
    (["--published", "--budget"], "--budget needs a value"),
    (["--published", "--steps", "5"], "--budget seconds"),
    (["--published", "--arch", "tpu"], "--arch must be cuda or cpu"),
    (["--published", "--frobnicate"], "unknown argument"),
])
def test_gpu_check_published_arguments(args, needle):
    res = _gpu_check(*args)
    assert res.returncode == 2 and needle in res.stderr


def test_gpu_check_published_command(tmp_path):
    res = _gpu_check("--published", "--budget", "45", "--tiny", "--arch", "cpu", "--out", str(tmp_path),
                     env={"GPU_CHECK_DRY_RUN": "1"})
    assert res.returncode == 0
    assert res.stdout.split() == ["python", "benchmarks/scale.py", "--gpu-published", "--arch", "cpu", "--budget",
                                  "45", "--threads", "0", "--out", f"{tmp_path}/published", "--tiny"]
    assert "--published" in _gpu_check("--help").stdout
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--gpu-published", "--budget", "0"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--budget" in res.stderr
    json.dumps(_scale().GPU_SET)  # plain data


def test_gpu_check_help_is_its_whole_header():
    lines = (ROOT / "benchmarks" / "gpu_check.sh").read_text().splitlines()
    header = lines[1:next(i for i, line in enumerate(lines) if i and not line.startswith("#"))]
    res = _gpu_check("-h")
    assert res.returncode == 0 and res.stdout.splitlines() == header
    assert any(line.startswith("# 4.") and "splat" in line for line in header)


def test_report_tables_of_scale_records():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    rec = {"name": "scale", "threads": 2, "steps": 5, "testoptim_steps": 3, "plenoptic_downsample": 1,
           "sets": {"plenoptic": {"size": "1352x1014", "cameras": 20, "frames": 300}},
           "anon_limit_mib": 4096, "max_peak_anon_mib": 5000, "max_peak_anon_stage": "plenoptic/x train",
           "within_limit": False,
           "stages": [{"set": "plenoptic", "stage": "make_scene", "wall_s": 300.0, "cpu_s": 500.0, "peak_anon_mib": 900,
                       "peak_file_mib": 10, "video_mib": 120.0},
                      {"set": "plenoptic", "preset": "plenoptic/x", "stage": "cache", "built": False, "wall_s": 1.0,
                       "build_seconds": 180.0, "peak_anon_mib": 50},
                      {"set": "plenoptic", "preset": "plenoptic/x", "stage": "train", "wall_s": 90.0, "cpu_s": 170.0,
                       "steps_per_s": 0.1, "peak_anon_mib": 5000, "peak_file_mib": 300, "peak_rss_mib": 5300,
                       "steps": 5, "schedule_steps": 60000, "schedule_hours": 166.7}],
           "recorded": {"machine": "a CPU, 2 cores", "command": "python benchmarks/scale.py", "date": "2026-01-01"}}
    text = "\n".join(report.scale([rec]))
    assert "| plenoptic | 20 x 300 at 1352x1014 | 300 s | 500 s | 900 MiB |" in text
    assert "| `plenoptic/x` | cache | - | - |  | - | - | - | reused (built in 180 s) |" in text
    assert "**5000 MiB**" in text and "**exceeded**" in text and "166.7 h" in text
    gpu = {"name": "scale_gpu", "presets": [{"preset": "plenoptic/x", "steps": 400, "steps_per_s": 5.0,
                                              "peak_gpu_mib": 9000.0, "schedule_steps": 60000, "projected_hours": 3.333,
                                              "paper_a6000_hours": [2.0, 2.5], "ratio_to_paper": [1.667, 1.333],
                                              "render": {"frame_s": 1.5, "size": "1352x1014"}}],
           "recorded": {"machine": "H100", "command": "bash benchmarks/gpu_check.sh --published", "date": "d"}}
    assert "| `plenoptic/x` | H100 | 400 | 5.00 | 9000 MiB | **3.33 h** (60000 steps) | 2 h / 2.5 h (x1.67 / x1.33) |" \
        in "\n".join(report.scale_gpu([gpu]))
