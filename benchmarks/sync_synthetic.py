"""Sync-K-Planes vs the no-offset baseline on generated scenes with known offsets.

Protocol (each step a real command line, timed, with its peak memory):
  make-scene --layout n3dv --cameras 9 --frames 60 --size 128x96 --offset-sigma S   (S = 3, and 0)
  train CONFIG  ->  testoptim RUN          (Sync-K-Planes)
  train CONFIG --no-sync                    (the plain K-Planes baseline: no offsets, no testoptim)
and prints, per scene and variant, test PSNR before/after testoptim, SSIM, the train cameras' offset
MAE (frames, after removing the global shift), training wall time and peak RSS. The last line is one
JSON object.

    python benchmarks/sync_synthetic.py --out bench-runs [--config synthetic/sync-kplanes]
        [--sigmas 3 0] [--variants sync nosync] [--threads 2] [-o key=value ...]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-runs")
    ap.add_argument("--config", default="synthetic/sync-kplanes")
    ap.add_argument("--sigmas", nargs="+", type=float, default=[3.0, 0.0])
    ap.add_argument("--variants", nargs="+", default=["sync", "nosync"], choices=["sync", "nosync"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", dest="overrides", action="append", default=[])
    ap.add_argument("--testoptim-baseline", action="store_true",
                    help="also run testoptim on the no-sync baseline (default: the plain baseline)")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "taichi_syncnerf.cli.main"]
    rt = ["--threads", str(args.threads), "--quiet"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for sigma in args.sigmas:
        scene = out / f"scene-sigma{sigma:g}"
        if not (scene / "offsets_gt.json").exists():
            run(exe + ["make-scene", str(scene), "--layout", "n3dv", "--cameras", "9", "--frames", "60",
                       "--size", "128x96", "--offset-sigma", str(sigma), "--seed", str(args.seed), "--quiet"],
                out / f"make-scene-sigma{sigma:g}.log")
        for variant in args.variants:
            name = f"sigma{sigma:g}-{variant}"
            rdir = out / name
            if rdir.exists():
                import shutil

                shutil.rmtree(rdir)
            cmd = exe + ["train", args.config, "--data", str(scene), "--out", str(rdir)] + rt
            cmd += sum([["-o", o] for o in args.overrides], [])
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
                "name": name, "sigma": sigma, "variant": variant,
                "test_psnr": m["test"]["psnr"], "test_ssim": m["test"]["ssim"],
                "test_psnr_before_testoptim": before["psnr"],
                "train_psnr": m["train"]["psnr"],
                "offsets_mae_frames": m.get("offsets", {}).get("mae_frames"),
                "train_wall_s": round(wall, 1), "train_peak_rss_mib": round(rss, 1),
                "testoptim_wall_s": None if t_wall is None else round(t_wall, 1), "steps": log[-1]["step"],
            }
            results.append(res)
            print(f"{name:16s} test PSNR {res['test_psnr']:.2f} dB (before testoptim "
                  f"{res['test_psnr_before_testoptim']:.2f})  SSIM {res['test_ssim']:.4f}  "
                  f"offsets MAE {res['offsets_mae_frames'] if res['offsets_mae_frames'] is None else round(res['offsets_mae_frames'], 3)}"
                  f"  train {wall / 60:.1f} min, peak {rss:.0f} MiB", flush=True)
    summary = {"name": "sync_synthetic", "config": args.config, "threads": args.threads, "runs": results}
    by = {r["name"]: r for r in results}
    for s in args.sigmas:
        a, b = by.get(f"sigma{s:g}-sync"), by.get(f"sigma{s:g}-nosync")
        if a and b:
            summary[f"sigma{s:g}_sync_minus_nosync_db"] = round(a["test_psnr"] - b["test_psnr"], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
