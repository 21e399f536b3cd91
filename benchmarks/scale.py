"""The size of real captures: every stage of every published preset on a Plenoptic-size and a
Blender-size generated capture, each stage in its own process, timed, with its peak memory
(anonymous and file-backed apart).

    python benchmarks/scale.py [--data scale-data] [--out scale-runs] [--sets plenoptic blender]
        [--presets plenoptic/sync-mixvoxels ...] [--steps 5] [--testoptim-steps 3] [--threads 2]
        [--plenoptic-downsample 1] [--skip eval render view ...] [--outputs-on-final-grid] [--timeout 7200]
        [--keep-runs] [--record]

Sets, written by ``make-scene`` into ``--data`` once and reused (offsets drawn from N(0, 3 frames),
seed 0; the default family and encoding):

* ``plenoptic``: ``--layout n3dv --cameras 20 --frames 300 --size 1352x1014``, the Plenoptic Video
  (N3DV) capture at the resolution K-Planes and MixVoxels train at. The published presets'
  ``data.downsample: 2`` is meant for the original 2704x2028 videos, so the presets run here with
  ``-o data.downsample=1`` (``--plenoptic-downsample``): the paper's training resolution.
* ``blender``: ``--layout blender --cameras 14 --frames 300 --size 512x512``.

Stages (a stage whose output is already on disk, the capture, a frame cache or a statistic, is
reported as reused, with no figures):

* ``make_scene``: the capture (the process tree: make-scene, its renderer worker, the encoders);
* ``cache``: the preset's frame cache (its downsampling and frame range: the MixVoxels presets read
  270 frames, a cache of their own);
* ``stats``: the per-pixel statistics the preset trains with: ISG and IST weights
  (Sync-K-Planes), std maps and mean colours (Sync-MixVoxels);
* ``train``: ``--steps`` training steps (``train PRESET --no-eval``): steps/s is the median of the
  steps after the first (which compiles the kernels);
* ``train_final_grid`` (Sync-MixVoxels): the same after the grids have grown to their final size
  (``-o mixvoxels.upsample_steps=[1,2,3,4] -o mixvoxels.alpha_mask_steps=[5]``, 6 steps; steps/s
  of the last step);
* ``testoptim``: ``--testoptim-steps`` steps of test-time optimisation of the test camera's
  offset (the loop of taichi_syncnerf/testoptim.py, without its two evaluations);
* ``eval``: the metrics of one full-resolution frame of the test camera (evaluate.compute_metrics:
  render, PSNR, SSIM, the temporal-median image);
* ``render``: ``render RUN --frames 1``, one full-resolution frame with ground truth and error;
* ``view``: the viewer's first full frame at the dataset's height from the test camera's pose
  (viewer/bench.py with 2 moving frames and 1 full frame).

With ``--outputs-on-final-grid`` Sync-MixVoxels' ``eval``, ``render`` and ``view`` use the
``train_final_grid`` run (what a trained model renders: grids at their final size) and their
records say ``"grid": "final"``.

Memory: ``peak_anon_mib`` and ``peak_file_mib`` are the largest RssAnon and RssFile read from
/proc/PID/status every 50 ms (sampled: a spike shorter than that can be missed); ``peak_rss_mib`` is
the kernel's exact high-water mark of the stage process (anonymous + file-backed + shared, wait4's
ru_maxrss), an upper bound of both. ``make_scene`` sums the process tree at each sample. ``cpu_s``
(user + system of the process and its children) beside ``wall_s``: on a shared machine it says
what an idle one would take. The limit this benchmark checks: ``peak_anon_mib`` <= 4096 for every
stage. The last line is one JSON object (``name`` "scale").

On a GPU (``benchmarks/gpu_check.sh --published``, which runs ``scale.py --gpu-published``): the
Plenoptic-size capture (its 270 frames: one frame cache for every preset, so that the leg fits in
8 minutes; time planes of 135 instead of 150 for Sync-K-Planes), then each published Plenoptic
preset trains for ``--budget`` seconds after its first logged window (compilation excluded; stopped
by SIGINT, which writes a checkpoint), with its peak GPU memory (nvidia-smi every 0.5 s, Taichi's
pool included) and the projected time of its whole schedule at that speed beside the paper's 2.0 h /
2.5 h on an A6000; then one full-resolution frame of the test camera is rendered twice from the
checkpoint (the second timed: the first compiles). ``--tiny`` makes the capture 4 cameras x 12
frames at 96x72, to check the leg on a CPU. The last line is one JSON object (``name``
"scale_gpu").
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "taichi_syncnerf.cli.main"]
ANON_LIMIT_MIB = 4096
SETS = {
    "plenoptic": {"layout": "n3dv", "cameras": 20, "frames": 300, "size": (1352, 1014)},
    "blender": {"layout": "blender", "cameras": 14, "frames": 300, "size": (512, 512)},
}
PAPER_A6000_HOURS = (2.0, 2.5)  # the paper's training times on one A6000, as issue 26 quotes them
GPU_SET = {"layout": "n3dv", "cameras": 20, "frames": 270, "size": (1352, 1014)}
GPU_TINY_SET = {"layout": "n3dv", "cameras": 4, "frames": 12, "size": (96, 72)}
STAGES = ("make_scene", "cache", "stats", "train", "train_final_grid", "testoptim", "eval", "render", "view")
OUTPUT_STAGES = ("eval", "render", "view")
FINAL_GRID = ["mixvoxels.upsample_steps=[1,2,3,4]", "mixvoxels.alpha_mask_steps=[5]", "train.steps=6",
              "train.checkpoint_every=6"]


# ---------------------------------------------------------------- measuring a process

def _status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    out[key] = int(val.split()[0]) / 1024.0
    except OSError:
        pass
    return out


def _tree(pid: int) -> list:
    """``pid`` and its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def measure(cmd: list, log: Path, timeout: float, tree: bool = False, interval: float = 0.05) -> dict:
    """Run ``cmd`` (output to ``log``); its wall and CPU seconds, sampled peak RssAnon / RssFile (of
    the process, or summed over its process tree) and exact peak RSS (wait4's ru_maxrss)."""
    t0 = time.perf_counter()
    peak = {"RssAnon": 0.0, "RssFile": 0.0}
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            total = {"RssAnon": 0.0, "RssFile": 0.0}
            for q in (_tree(p.pid) if tree else [p.pid]):
                for k, v in _status(q).items():
                    total[k] += v
            for k in peak:
                peak[k] = max(peak[k], total[k])
            if time.perf_counter() - t0 > timeout:
                p.kill()
            time.sleep(interval)
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_anon_mib": round(peak["RssAnon"]), "peak_file_mib": round(peak["RssFile"]),
            "peak_rss_mib": round(usage.ru_maxrss / 1024.0)}


def last_json(log: Path) -> dict:
    for line in reversed(Path(log).read_text().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return {}


# ---------------------------------------------------------------- presets and overrides

def presets(set_name: str) -> list:
    return [f"{set_name}/{p.stem}" for p in sorted((ROOT / "configs" / set_name).glob("*.yaml"))]


def overrides(preset: str, args) -> list:
    """What every stage of ``preset`` runs with: the resolution, short logs, one evaluation frame."""
    out = ["eval.max_frames=1", "train.val_every=null", "train.log_every=1",
           f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}"]
    if preset.startswith("plenoptic/"):
        out.append(f"data.downsample={args.plenoptic_downsample}")
    return out


def flags(overs: list) -> list:
    return sum((["-o", o] for o in overs), [])


def projected_hours(steps: int, steps_per_s: float | None) -> float | None:
    """Hours the preset's whole schedule of ``steps`` takes at ``steps_per_s`` (no evaluation)."""
    if steps_per_s is None or not steps_per_s > 0 or int(steps) < 0:
        return None
    return int(steps) / float(steps_per_s) / 3600.0


def projection(steps: int, steps_per_s: float | None, paper=PAPER_A6000_HOURS) -> dict:
    """The whole schedule's projected hours beside the paper's, and their ratios (projected / paper)."""
    h = projected_hours(steps, steps_per_s)
    return {"schedule_steps": int(steps), "projected_hours": None if h is None else round(h, 3),
            "paper_a6000_hours": list(paper),
            "ratio_to_paper": None if h is None else [round(h / p, 3) for p in paper]}


def window_rate(records: list) -> float | None:
    """Median steps/s of the logged windows after the first (which holds the compilation)."""
    rates = [r["steps_per_s"] for r in records if r.get("steps_per_s")]
    if not rates:
        return None
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


# ---------------------------------------------------------------- stages run in their own process

def _runtime(args) -> None:
    from taichi_syncnerf import runtime

    runtime.init(arch=args.arch, threads=args.threads or None, precision="f32")


def stage_cache(args) -> dict:
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.data.dataset import load_dataset

    d = load_config(args.config, args.o)["data"]
    ds = load_dataset(args.data, downsample=int(d["downsample"]), max_frames=d["max_frames"],
                      test_camera=d["test_camera"], background=d["background"], build_cache=False)
    built = ds.cache is None
    cache = ds.ensure_cache()
    return {"built": built, "cache_gib": round(cache.nbytes / 2 ** 30, 2), "shape": list(cache.shape),
            "build_seconds": cache.manifest.get("build_seconds")}


def stat_kinds(cfg: dict) -> list:
    """The per-pixel statistics the preset's sampler reads: ISG / IST weights on their schedule (pixel
    rays), std maps and mean colours (pixel videos), none (whole images)."""
    from taichi_syncnerf.models.registry import family

    sampler = family(cfg["model"]["kind"]).sampler
    if sampler == "pixel-videos":
        return ["std", "mean"]
    if sampler != "pixels":
        return []
    s = cfg["sampling"]
    return [k for k, step in (("isg", s["isg_step"]), ("ist", s["ist_step"])) if step is not None]


def stage_stats(args) -> dict:
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.data import preprocess
    from taichi_syncnerf.data.dataset import load_dataset

    cfg = load_config(args.config, args.o)
    d = cfg["data"]
    ds = load_dataset(args.data, downsample=int(d["downsample"]), max_frames=d["max_frames"],
                      test_camera=d["test_camera"], background=d["background"])
    out = {}
    for kind in stat_kinds(cfg):
        cached = Path(f"{ds.cache.stem}.{kind}.npy").exists()
        t0 = time.perf_counter()
        arr = preprocess.load_or_compute(ds.cache, kind, ds.downsample)
        out[kind] = {"computed": not cached, "seconds": round(time.perf_counter() - t0, 1),
                     "gib": round(arr.nbytes / 2 ** 30, 3)}
    return {"kinds": out, "computed": any(v["computed"] for v in out.values())}


def stage_testoptim(args) -> dict:
    """The loop of taichi_syncnerf.testoptim without its evaluations and without writing the run."""
    import numpy as np

    from taichi_syncnerf.models.registry import make_sampler
    from taichi_syncnerf.run_folder import open_run

    _runtime(args)
    opened = open_run(args.run)
    cfg, source, model = opened.cfg, opened.source, opened.model
    t = cfg["testoptim"]
    model.prepare_testoptim(source.test_index, float(t["lr"]))
    sampler = make_sampler(cfg, source)
    rng = np.random.default_rng(0)
    batch = int(t["batch_rays"])
    times = []
    for step in range(args.testoptim_steps):
        t0 = time.perf_counter()
        b = sampler.sample(rng, batch, step, cameras=[source.test_index], uniform=True)
        model.train_on(b, step, 1.0, offsets_frozen=False, offsets_only=True)
        times.append(time.perf_counter() - t0)
    later = times[1:] or times
    return {"steps": len(times), "first_step_s": round(times[0], 2),
            "steps_per_s": round(1.0 / statistics.median(later), 4), "batch_rays": batch}


def stage_eval(args) -> dict:
    from taichi_syncnerf.evaluate import compute_metrics
    from taichi_syncnerf.run_folder import open_run

    _runtime(args)
    opened = open_run(args.run)
    src = opened.source
    t0 = time.perf_counter()
    m = compute_metrics(opened.cfg, src, opened.model, progress=False, splits=("test",))["test"]
    return {"frames": m["n_images"], "size": f"{src.width}x{src.height}", "psnr": m["psnr"],
            "seconds": round(time.perf_counter() - t0, 1)}


def stage_view(args) -> dict:
    from taichi_syncnerf.viewer.bench import benchmark
    from taichi_syncnerf.viewer.live import RunModel

    _runtime(args)
    rm = RunModel(args.run)
    r = benchmark(args.run, [rm.source.height], moving_frames=2, full_frames=1, log=lambda s: None, model=rm)[0]
    return {k: r[k] for k in ("full", "moving", "moving_fps", "first_pass_s", "full_frame_s", "full_frame_cpu_s")}


def stage_render_time(args) -> dict:
    """One full-resolution frame of the test camera, rendered twice (the first compiles)."""
    from taichi_syncnerf.evaluate import render_view
    from taichi_syncnerf.run_folder import open_run

    _runtime(args)
    opened = open_run(args.run)
    src, model = opened.source, opened.model
    out = []
    for _ in range(2):
        t0 = time.perf_counter()
        render_view(model, src.view(src.test_index, 0))
        out.append(time.perf_counter() - t0)
    return {"size": f"{src.width}x{src.height}", "first_frame_s": round(out[0], 3), "frame_s": round(out[1], 3)}


STAGE_FUNCS = {"cache": stage_cache, "stats": stage_stats, "testoptim": stage_testoptim, "eval": stage_eval,
               "view": stage_view, "render_time": stage_render_time}


# ---------------------------------------------------------------- the driver

def make_set(name: str, root: Path, args, records: list) -> Path:
    spec = SETS[name]
    w, h = spec["size"]
    folder = root / name
    mark = root / f"{name}.make_scene.json"
    try:
        gt = json.loads((folder / "offsets_gt.json").read_text())
        if (gt["cameras"], gt["frames"], gt["width"], gt["height"], gt["layout"]) == (
                spec["cameras"], spec["frames"], w, h, spec["layout"]):
            prev = json.loads(mark.read_text()) if mark.exists() else {}
            records.append({**prev, "set": name, "stage": "make_scene", "reused": True})
            print(f"{name}: reusing {folder}", file=sys.stderr)
            return folder
    except (OSError, ValueError, KeyError):
        pass
    if "make_scene" in args.skip:
        raise SystemExit(f"{folder}: no {name} capture there and make_scene is skipped")
    root.mkdir(parents=True, exist_ok=True)
    cmd = EXE + ["make-scene", str(folder), "--layout", spec["layout"], "--cameras", str(spec["cameras"]),
                 "--frames", str(spec["frames"]), "--size", f"{w}x{h}", "--offset-sigma", "3", "--seed", "0",
                 "--quiet", "--force"]
    print(f"{name}: make-scene {w}x{h}, {spec['cameras']} x {spec['frames']} frames ...", file=sys.stderr)
    m = measure(cmd, root / f"{name}.make_scene.log", args.timeout, tree=True)
    if m["rc"] != 0:
        raise SystemExit(f"make-scene failed ({m['rc']}); see {root / f'{name}.make_scene.log'}")
    rec = {**m, "size": f"{w}x{h}", "cameras": spec["cameras"], "frames": spec["frames"],
           "video_mib": round(sum(p.stat().st_size for p in folder.glob("*.mp4")) / 2 ** 20, 1),
           "command": " ".join(cmd[3:])}
    mark.write_text(json.dumps(rec))
    records.append({**rec, "set": name, "stage": "make_scene", "reused": False})
    return folder


def run_stage(stage: str, preset: str, data: Path, run: Path, args, extra=()) -> dict:
    """One stage of one preset in its own process: its figures and measurements."""
    log = args.out / f"{preset.replace('/', '_')}.{stage}.log"
    overs = overrides(preset, args) + list(extra)
    rt = ["--threads", str(args.threads), "--arch", args.arch]
    if stage in ("train", "train_final_grid"):
        if run.exists():
            shutil.rmtree(run)
        cmd = EXE + ["train", preset, "--data", str(data), "--out", str(run), "--no-eval", "--quiet"] + rt + flags(overs)
    elif stage == "render":
        cmd = EXE + ["render", str(run), "--frames", "1", "--out", str(args.out / f"{preset.replace('/', '_')}.mp4"),
                     "--quiet"] + rt
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--config", preset, "--data",
               str(data), "--run", str(run), "--threads", str(args.threads), "--arch", args.arch,
               "--testoptim-steps", str(args.testoptim_steps)] + flags(overs)
    print(f"  {preset} {stage} ...", file=sys.stderr, flush=True)
    m = measure(cmd, log, args.timeout)
    rec = {"preset": preset, "stage": stage, **m}
    if m["rc"] != 0:
        rec["failed"] = f"see {log}"
        print(f"  {preset} {stage} FAILED ({m['rc']}): see {log}", file=sys.stderr)
        return rec
    if stage in ("train", "train_final_grid"):
        logs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
        rates = [r["steps_per_s"] for r in logs if r.get("steps_per_s")]
        rec["steps"] = logs[-1]["step"]
        rec["steps_per_s"] = round(statistics.median(rates[1:] if len(rates) > 1 else rates), 4)
        if stage == "train_final_grid":
            rec["steps_per_s"] = round(rates[-1], 4)
        rec["dynamic_rays"] = logs[-1].get("dynamic_rays")
    elif stage != "render":
        rec.update(last_json(log))
    return rec


def describe(r: dict) -> str:
    head = f"{r.get('preset') or r.get('set', '')} {r['stage']}"
    if r.get("reused"):
        return f"{head}: reused"
    if r.get("failed"):
        return f"{head}: FAILED ({r['failed']})"
    extra = f", {r['steps_per_s']:.3f} steps/s" if r.get("steps_per_s") else ""
    return (f"{head}: {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU{extra}; peak anonymous "
            f"{r['peak_anon_mib']} MiB, file-backed {r['peak_file_mib']} MiB, RSS {r['peak_rss_mib']} MiB")


def measured(r: dict) -> bool:
    """A record whose memory figures describe the stage (not reused, not a cache hit)."""
    if r.get("reused") or r.get("failed") or "peak_anon_mib" not in r:
        return False
    if r["stage"] == "cache":
        return bool(r.get("built"))
    if r["stage"] == "stats":
        return bool(r.get("computed"))
    return True


def drive(args) -> dict:
    args.out.mkdir(parents=True, exist_ok=True)
    from taichi_syncnerf.config import load_config

    records, sets = [], {}
    for name in args.sets:
        data = make_set(name, args.data, args, records)
        spec = SETS[name]
        sets[name] = {"size": "x".join(map(str, spec["size"])), "cameras": spec["cameras"], "frames": spec["frames"],
                      "path": str(data)}
        for preset in (p for p in presets(name) if not args.presets or p in args.presets):
            cfg = load_config(preset, overrides(preset, args))
            run = args.out / preset.replace("/", "_")
            final = args.out / (run.name + "_final_grid")
            mixvoxels = cfg["model"]["kind"] == "sync-mixvoxels"
            outputs_final = mixvoxels and args.outputs_on_final_grid and "train_final_grid" not in args.skip
            for stage in STAGES[1:]:
                if stage in args.skip or (stage == "train_final_grid" and not mixvoxels):
                    continue
                if stage == "train_final_grid":
                    rec = run_stage(stage, preset, data, final, args, FINAL_GRID)
                elif stage in OUTPUT_STAGES and outputs_final:
                    rec = {**run_stage(stage, preset, data, final, args), "grid": "final"}
                else:
                    rec = run_stage(stage, preset, data, run, args)
                if stage == "train":
                    full = int(load_config(preset)["train"]["steps"])
                    rec["schedule_steps"] = full
                    rec["schedule_hours"] = projected_hours(full, rec.get("steps_per_s"))
                rec["set"] = name
                records.append(rec)
                print("  " + describe(rec), file=sys.stderr, flush=True)
                (args.out / "scale.partial.json").write_text(json.dumps({"sets": sets, "stages": records}))
                if stage == "train" and rec.get("failed"):
                    break
            if not args.keep_runs:
                shutil.rmtree(run, ignore_errors=True)
                shutil.rmtree(final, ignore_errors=True)
    peaks = [r["peak_anon_mib"] for r in records if measured(r)]
    worst = max((r for r in records if measured(r)), key=lambda r: r["peak_anon_mib"], default=None)
    return {"name": "scale", "threads": args.threads, "arch": args.arch, "steps": args.steps,
            "testoptim_steps": args.testoptim_steps, "plenoptic_downsample": args.plenoptic_downsample,
            "outputs_on_final_grid": bool(args.outputs_on_final_grid),
            "sets": sets, "stages": records, "anon_limit_mib": ANON_LIMIT_MIB,
            "max_peak_anon_mib": max(peaks) if peaks else None,
            "max_peak_anon_stage": None if worst is None else f"{worst.get('preset', worst.get('set'))} {worst['stage']}",
            "within_limit": bool(peaks) and max(peaks) <= ANON_LIMIT_MIB,
            "failed": [f"{r.get('preset', r.get('set'))} {r['stage']}" for r in records if r.get("failed")]}


# ---------------------------------------------------------------- the GPU leg (gpu_check.sh --published)

class GpuMemory:
    """Peak memory.used of the GPU (nvidia-smi every 0.5 s) while the block runs; None without it."""

    def __enter__(self):
        self.proc, self.peak = None, None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                          "-lms", "500"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            vals = [float(v) for v in self.proc.communicate()[0].split() if v.replace(".", "", 1).isdigit()]
            self.peak = max(vals) if vals else None
        return False


def train_for(cmd: list, run: Path, budget: float, log: Path, timeout: float) -> dict:
    """Run a training command, stop it with SIGINT ``budget`` seconds after its first log record
    (it writes a checkpoint), and return its steps/s and peak host memory."""
    import signal

    t0 = time.perf_counter()
    first = stopped = None
    with open(log, "w") as f, GpuMemory() as gpu:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            if first is None and (run / "log.jsonl").exists() and (run / "log.jsonl").stat().st_size > 0:
                first = now
            if stopped is None and ((first is not None and now - first > budget) or now - t0 > timeout):
                p.send_signal(signal.SIGINT)
                stopped = now
            elif stopped is not None and now - stopped > 300:
                p.kill()
            time.sleep(0.2)
    logs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()] if (
        run / "log.jsonl").exists() else []
    return {"rc": os.waitstatus_to_exitcode(status), "wall_s": round(time.perf_counter() - t0, 1),
            "steps": logs[-1]["step"] if logs else 0, "steps_per_s": window_rate(logs),
            "peak_gpu_mib": gpu.peak, "peak_host_rss_mib": round(usage.ru_maxrss / 1024.0)}


def gpu_published(args) -> dict:
    """The published-size leg of gpu_check.sh (see the module docstring)."""
    from taichi_syncnerf.config import load_config

    t_start = time.perf_counter()
    spec = GPU_TINY_SET if args.tiny else GPU_SET
    args.out.mkdir(parents=True, exist_ok=True)
    w, h = spec["size"]
    data = args.out / "capture"
    rt = ["--arch", args.arch] + (["--threads", str(args.threads)] if args.threads else [])
    if not (data / "offsets_gt.json").exists():
        m = measure(EXE + ["make-scene", str(data), "--layout", spec["layout"], "--cameras", str(spec["cameras"]),
                           "--frames", str(spec["frames"]), "--size", f"{w}x{h}", "--quiet", "--force"],
                    args.out / "make_scene.log", args.timeout, tree=True)
        if m["rc"]:
            raise SystemExit(f"make-scene failed; see {args.out / 'make_scene.log'}")
    make_s = round(time.perf_counter() - t_start, 1)
    res = {"name": "scale_gpu", "arch": args.arch, "tiny": bool(args.tiny), "budget_s": args.budget,
           "set": {"size": f"{w}x{h}", "cameras": spec["cameras"], "frames": spec["frames"], "make_scene_s": make_s},
           "presets": []}
    names = [p for p in presets("plenoptic") if not args.presets or p in args.presets]
    common = [f"data.downsample={args.plenoptic_downsample}", "data.max_frames=270",
              f"train.log_every={2 if args.tiny else 20}",
              "train.val_every=null", "train.checkpoint_every=1000000", "eval.max_frames=1"]
    # the frame cache and every statistic once, before any clock runs (each preset's stage reuses them)
    t0 = time.perf_counter()
    for name in names:
        for stage in ("cache", "stats"):
            stage_args = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--config", name,
                          "--data", str(data)] + flags(common)
            subprocess.run(stage_args, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    res["set"]["prepare_s"] = round(time.perf_counter() - t0, 1)
    for name in names:
        run = args.out / name.replace("/", "_")
        shutil.rmtree(run, ignore_errors=True)
        cmd = EXE + ["train", name, "--data", str(data), "--out", str(run), "--no-eval", "--quiet"] + rt + flags(common)
        print(f"  {name}: training for {args.budget:g} s ...", file=sys.stderr, flush=True)
        rec = {"preset": name, **train_for(cmd, run, args.budget, args.out / f"{run.name}.train.log", args.timeout)}
        rec.update(projection(int(load_config(name)["train"]["steps"]), rec["steps_per_s"]))
        if rec["steps"]:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", "render_time", "--run", str(run),
                   "--arch", args.arch] + (["--threads", str(args.threads)] if args.threads else [])
            log = args.out / f"{run.name}.render.log"
            m = measure(cmd, log, args.timeout)
            rec["render"] = {**last_json(log), "rc": m["rc"]}
        res["presets"].append(rec)
        print(f"  {name}: {rec['steps']} steps, {rec['steps_per_s']} steps/s, GPU {rec['peak_gpu_mib']} MiB, "
              f"schedule {rec['projected_hours']} h (paper {PAPER_A6000_HOURS[0]} / {PAPER_A6000_HOURS[1]} h), "
              f"frame {rec.get('render', {}).get('frame_s')} s", file=sys.stderr, flush=True)
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("scale-data"), help="where the captures are (written once)")
    ap.add_argument("--out", type=Path, default=Path("scale-runs"), help="runs and logs")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--presets", nargs="+", default=[], help="only these presets (default: every preset of the sets)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--testoptim-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--plenoptic-downsample", type=int, default=1)
    ap.add_argument("--skip", nargs="+", default=[], choices=list(STAGES))
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds a stage may take")
    ap.add_argument("--keep-runs", action="store_true", help="keep the run folders in --out")
    ap.add_argument("--outputs-on-final-grid", action="store_true",
                    help="Sync-MixVoxels: eval, render and view the train_final_grid run (its grids at their final "
                         "size) instead of the train run; their records carry grid: final")
    ap.add_argument("--record", action="store_true",
                    help="append the JSON line, with date, machine and command, to docs/results/scale.jsonl")
    ap.add_argument("--gpu-published", action="store_true",
                    help="the published-size leg of gpu_check.sh instead (see the module docstring)")
    ap.add_argument("--budget", type=float, default=30.0, help="--gpu-published: seconds of training per preset")
    ap.add_argument("--tiny", action="store_true", help="--gpu-published: a tiny capture (a check on a CPU)")
    # one stage of one preset, in its own process (the driver runs these)
    ap.add_argument("--stage", choices=sorted(STAGE_FUNCS), help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("-o", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.gpu_published:
        if not args.budget > 0:
            ap.error("--budget must be a positive number of seconds")
        args.out = args.out.resolve()
        res = gpu_published(args)
        print(json.dumps(res))
        return 0 if all(p["steps"] and p.get("render", {}).get("rc") == 0 for p in res["presets"]) else 1
    if args.stage:
        res = STAGE_FUNCS[args.stage](args)
        print(json.dumps(res))
        return 0
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the first step compiles)")
    args.data, args.out = args.data.resolve(), args.out.resolve()
    res = drive(args)
    print(f"largest anonymous peak: {res['max_peak_anon_mib']} MiB ({res['max_peak_anon_stage']}); limit "
          f"{ANON_LIMIT_MIB} MiB: {'within' if res['within_limit'] else 'EXCEEDED'}", file=sys.stderr)
    print(json.dumps(res))
    if args.record:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from report import record
        record(res)
    return 0 if res["within_limit"] and not res["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
