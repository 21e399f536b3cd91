"""Sync-K-Planes vs the no-offset baseline on generated scenes with known offsets.

Protocol (each step a real command line, timed, with its peak memory):
  make-scene --layout n3dv --cameras 9 --frames 60 --size 128x96 --offset-sigma S   (S = 3, and 0)
  train CONFIG  ->  testoptim RUN          (Sync-K-Planes)
  train CONFIG --no-sync                    (the plain K-Planes baseline: no offsets, no testoptim)
and prints, per scene and variant, test PSNR before/after testoptim, SSIM, the train cameras' offset
MAE (frames, after removing the global shift), training wall time and peak RSS. The last line is one
JSON object.

    python benchmarks/sync_synthetic.py --out bench-runs [--config synthetic/sync-kplanes]
        [--sigmas 3 0] [--variants sync nosync] [--threads 2] [--train-seeds 0 1 2] [--jobs 1]
        [-o key=value ...]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


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


def train_and_measure(exe, rt, args, scene, sigma, variant, seed, out):
    """Train one variant (then testoptim for Sync) and return its figures."""
    name = f"sigma{sigma:g}-{variant}" + (f"-seed{seed}" if len(args.train_seeds) > 1 else "")
    rdir = out / name
    if rdir.exists():
        shutil.rmtree(rdir)
    cmd = exe + ["train", args.config, "--data", str(scene), "--out", str(rdir)] + rt
    cmd += sum([["-o", o] for o in args.overrides + [f"train.seed={seed}"]], [])
    if variant == "nosync":
        cmd.append("--no-sync")
    wall, rss = run(cmd, out / f"{name}-train.log")
    t_wall = None
    if variant == "sync" or args.testoptim_baseline:
        t_wall, _ = run(exe + ["testoptim", str(rdir)] + rt, out / f"{name}-testoptim.log")
    m = json.loads((rdir / "metrics.json").read_text())
    before = m.get("test_before_testoptim", m["test"])
    log = [json.loads(line) for line in (rdir / "log.jsonl").read_text().splitlines()]
    res = {
        "name": name, "sigma": sigma, "variant": variant, "train_seed": seed,
        "test_psnr": m["test"]["psnr"], "test_ssim": m["test"]["ssim"],
        "test_psnr_before_testoptim": before["psnr"],
        "train_psnr": m["train"]["psnr"],
        "offsets_mae_frames": m.get("offsets", {}).get("mae_frames"),
        "train_wall_s": round(wall, 1), "train_peak_rss_mib": round(rss, 1),
        "testoptim_wall_s": None if t_wall is None else round(t_wall, 1), "steps": log[-1]["step"],
    }
    mae = res["offsets_mae_frames"]
    print(f"{name:22s} test PSNR {res['test_psnr']:.2f} dB (before testoptim "
          f"{res['test_psnr_before_testoptim']:.2f})  SSIM {res['test_ssim']:.4f}  "
          f"offsets MAE {mae if mae is None else round(mae, 3)}"
          f"  train {wall / 60:.1f} min, peak {rss:.0f} MiB", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-runs")
    ap.add_argument("--config", default="synthetic/sync-kplanes")
    ap.add_argument("--sigmas", nargs="+", type=float, default=[3.0, 0.0])
    ap.add_argument("--variants", nargs="+", default=["sync", "nosync"], choices=["sync", "nosync"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated scenes")
    ap.add_argument("--train-seeds", nargs="+", type=int, default=[0],
                    help="train each variant once per seed and report medians (training is stochastic)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at once (each with --threads); >1 makes the wall times incomparable")
    ap.add_argument("-o", dest="overrides", action="append", default=[])
    ap.add_argument("--testoptim-baseline", action="store_true",
                    help="also run testoptim on the no-sync baseline (default: the plain baseline)")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "taichi_syncnerf.cli.main"]
    rt = ["--threads", str(args.threads), "--quiet"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for sigma in args.sigmas:
        scene = out / f"scene-sigma{sigma:g}"
        if not (scene / "offsets_gt.json").exists():
            run(exe + ["make-scene", str(scene), "--layout", "n3dv", "--cameras", "9", "--frames", "60",
                       "--size", "128x96", "--offset-sigma", str(sigma), "--seed", str(args.seed), "--quiet"],
                out / f"make-scene-sigma{sigma:g}.log")
        for seed in args.train_seeds:
            for variant in args.variants:
                jobs.append((scene, sigma, variant, seed))
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda job: train_and_measure(exe, rt, args, *job, out), jobs))
    summary = {"name": "sync_synthetic", "config": args.config, "threads": args.threads, "jobs": args.jobs,
               "train_seeds": args.train_seeds, "runs": results}
    print(f"\nmedians over train seeds {args.train_seeds}:")
    for s in args.sigmas:
        med = {}
        for v in args.variants:
            rs = [r for r in results if r["sigma"] == s and r["variant"] == v]
            med[v] = float(np.median([r["test_psnr"] for r in rs]))
            summary[f"sigma{s:g}_{v}_median_test_psnr"] = round(med[v], 3)
            maes = [r["offsets_mae_frames"] for r in rs if r["offsets_mae_frames"] is not None]
            mae_txt = f", offsets MAE {np.median(maes):.3f} frames" if v == "sync" and maes else ""
            each = ", ".join(f"{r['test_psnr']:.2f}" for r in rs)
            print(f"  sigma {s:g} {v:7s} test PSNR {med[v]:.2f} dB (runs: {each}){mae_txt}")
        if "sync" in med and "nosync" in med:
            gap = med["sync"] - med["nosync"]
            summary[f"sigma{s:g}_sync_minus_nosync_db"] = round(gap, 3)
            print(f"  sigma {s:g} Sync minus baseline: {gap:+.2f} dB")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
