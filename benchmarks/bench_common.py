"""Shared pieces of the training benchmarks: timed command lines, one trained run's figures,
medians over training seeds and the Markdown rows of the README's tables.

Every figure comes from a real command line (`make-scene`, `train`, `testoptim`), timed, with its
peak memory; the figures of a run are read back from its `metrics.json` and `log.jsonl`.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EXE = [sys.executable, "-m", "taichi_syncnerf.cli.main"]


def run(cmd, log):
    """Run a command; return (wall seconds, peak RSS in MiB). Output goes to ``log``."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"command failed ({code}): {' '.join(cmd)}; see {log}")
    return wall, usage.ru_maxrss / 1024.0


def parser(doc: str, out_default: str) -> argparse.ArgumentParser:
    """The options every training benchmark shares: where, which preset, which variants, seeds,
    threads and parallel jobs, and config overrides."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=out_default)
    ap.add_argument("--config", default="synthetic/sync-kplanes")
    ap.add_argument("--variants", nargs="+", default=["sync", "nosync"], choices=["sync", "nosync"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated scenes")
    ap.add_argument("--train-seeds", nargs="+", type=int, default=[0],
                    help="train each variant once per seed and report medians (training is stochastic)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at once (each with --threads); >1 makes the wall times incomparable")
    ap.add_argument("--reuse", action="store_true",
                    help="read back runs that already finished in --out (same config, scene, seed and "
                         "overrides: checked against the run's config.yaml) instead of training them again")
    ap.add_argument("-o", dest="overrides", action="append", default=[])
    ap.add_argument("--record", action="store_true",
                    help="append the JSON line, with date, machine and command, to docs/results/<name>.jsonl")
    return ap


def make_scene(scene: Path, args: list, log: Path) -> Path:
    """Generate ``scene`` with make-scene ``args`` unless it is already there."""
    if not (scene / "offsets_gt.json").exists():
        run(EXE + ["make-scene", str(scene), "--quiet"] + list(args), log)
    return scene


def _resolved_config(config: str, variant: str, seed: int, overrides) -> dict:
    """The configuration ``train`` would resolve for these arguments (what a run stores in
    config.yaml), without the paths."""
    from taichi_syncnerf.config import load_config
    cfg = load_config(config, list(overrides) + [f"train.seed={seed}"]
                      + (["model.sync=false"] if variant == "nosync" else []))
    cfg["data"].pop("path", None)
    return cfg


def _finished(rdir: Path, config: str, scene: Path, variant: str, seed: int, overrides,
              testoptim: bool):
    """The timing record of a finished run of exactly these arguments in ``rdir``, or None.

    A run counts as finished when its metrics.json holds the final evaluation (and the figure from
    before testoptim where testoptim is due) and its config.yaml equals what ``train`` would resolve
    now; ``measure.json`` beside it holds the wall times when this script trained it.
    """
    from taichi_syncnerf.config import load_resolved
    from taichi_syncnerf.errors import UserError
    try:
        m = json.loads((rdir / "metrics.json").read_text())
        stored = load_resolved(rdir / "config.yaml")
        data = json.loads((rdir / "run.json").read_text()).get("data")
    except (OSError, ValueError, UserError):
        return None
    if Path(data).resolve() != Path(scene).resolve():
        return None
    if "test" not in m or (testoptim and "test_before_testoptim" not in m):
        return None
    stored.get("data", {}).pop("path", None)
    if stored != _resolved_config(config, variant, seed, overrides):
        return None
    try:
        return json.loads((rdir / "measure.json").read_text())
    except (OSError, ValueError):
        return {"train_wall_s": None, "train_peak_rss_mib": None, "testoptim_wall_s": None}


def train_and_measure(rdir: Path, config: str, scene: Path, variant: str, seed: int, overrides=(),
                      threads: int = 2, testoptim_baseline: bool = False, reuse: bool = False) -> dict:
    """Train one variant into ``rdir`` (then testoptim for Sync) and return its figures.

    ``variant`` "sync" learns the offsets and runs test-time optimisation; "nosync" is the baseline
    (``--no-sync``: offsets fixed at 0; no testoptim unless ``testoptim_baseline``). With ``reuse``
    a finished run of the same arguments is read back (its times are None unless this script
    trained it).
    """
    rt = ["--threads", str(threads), "--quiet"]
    testoptim = variant == "sync" or testoptim_baseline
    timing = _finished(rdir, config, scene, variant, seed, overrides, testoptim) if reuse else None
    if timing is None:
        if rdir.exists():
            shutil.rmtree(rdir)
        cmd = EXE + ["train", config, "--data", str(scene), "--out", str(rdir)] + rt
        cmd += sum([["-o", o] for o in list(overrides) + [f"train.seed={seed}"]], [])
        if variant == "nosync":
            cmd.append("--no-sync")
        wall, rss = run(cmd, Path(f"{rdir}-train.log"))
        t_wall = None
        if testoptim:
            t_wall, _ = run(EXE + ["testoptim", str(rdir)] + rt, Path(f"{rdir}-testoptim.log"))
        timing = {"train_wall_s": round(wall, 1), "train_peak_rss_mib": round(rss, 1),
                  "testoptim_wall_s": None if t_wall is None else round(t_wall, 1), "threads": threads}
        from taichi_syncnerf.io_utils import write_text_atomic
        write_text_atomic(rdir / "measure.json", json.dumps(timing))
    m = json.loads((rdir / "metrics.json").read_text())
    before = m.get("test_before_testoptim", m["test"])
    log = [json.loads(line) for line in (rdir / "log.jsonl").read_text().splitlines()]
    return {
        "name": rdir.name, "variant": variant, "train_seed": seed,
        "test_psnr": m["test"]["psnr"], "test_ssim": m["test"]["ssim"],
        "test_psnr_before_testoptim": before["psnr"],
        "test_median_image_psnr": m["test"].get("median_image_psnr"),
        "train_psnr": m["train"]["psnr"], "train_median_image_psnr": m["train"].get("median_image_psnr"),
        "offsets_mae_frames": m.get("offsets", {}).get("mae_frames"),
        "train_wall_s": timing["train_wall_s"], "train_peak_rss_mib": timing["train_peak_rss_mib"],
        "testoptim_wall_s": timing["testoptim_wall_s"], "steps": log[-1]["step"],
        "steps_per_s": float(np.median([r["steps_per_s"] for r in log if r.get("steps_per_s")] or [np.nan])),
        "reused": "threads" not in timing,
    }


def describe(res: dict) -> str:
    """One line of a run's figures."""
    mae = res["offsets_mae_frames"]
    floor = res["test_median_image_psnr"]
    return (f"{res['name']:28s} test PSNR {res['test_psnr']:.2f} dB (before testoptim "
            f"{res['test_psnr_before_testoptim']:.2f}; temporal-median image "
            f"{'n/a' if floor is None else f'{floor:.2f}'})  SSIM {res['test_ssim']:.4f}  "
            f"offsets MAE {'n/a' if mae is None else f'{mae:.3f}'}  "
            + (f"train {res['train_wall_s'] / 60:.1f} min, peak {res['train_peak_rss_mib']:.0f} MiB"
               if res["train_wall_s"] is not None else f"reused run, {res['steps_per_s']:.2f} steps/s"))


def medians(runs: list) -> dict:
    """Medians over the runs (training seeds) of one scene and variant; None where absent."""
    def med(key):
        vals = [r[key] for r in runs if r.get(key) is not None]
        return float(np.median(vals)) if vals else None

    keys = ("test_psnr", "test_psnr_before_testoptim", "test_ssim", "test_median_image_psnr",
            "offsets_mae_frames", "train_wall_s", "train_peak_rss_mib")
    out = {k: med(k) for k in keys}
    out["each_test_psnr"] = [round(r["test_psnr"], 2) for r in runs]
    return out


def markdown_row(scene: str, variant: str, med: dict, sync: bool) -> str:
    """A README table row: scene | variant | test PSNR | before testoptim | temporal-median image |
    margin over it | SSIM | offsets MAE | training time | test PSNR of each seed."""
    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    floor = med["test_median_image_psnr"]
    margin = None if floor is None else med["test_psnr"] - floor
    return (f"| {scene} | {variant} | **{med['test_psnr']:.2f} dB** | "
            f"{f(med['test_psnr_before_testoptim'] if sync else None, '.2f')} | {f(floor, '.2f')} | "
            f"{f(margin, '+.2f')} | {med['test_ssim']:.3f} | {f(med['offsets_mae_frames'] if sync else None, '.3f')} | "
            f"{'not timed (reused run)' if med['train_wall_s'] is None else format(med['train_wall_s'] / 60, '.1f') + ' min'} | {', '.join(f'{v:.2f}' for v in med['each_test_psnr'])} |")


MARKDOWN_HEADER = ("| scene | variant | test PSNR | before testoptim | temporal-median image | margin | SSIM "
                   "| offsets MAE (frames) | training | test PSNR of each seed |\n"
                   "|---|---|---|---|---|---|---|---|---|---|")
