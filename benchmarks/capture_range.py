"""Capture range: how far off an offset the joint optimisation recovers alone, and after the
coarse estimate (``sync-estimate``), on generated scenes with offsets drawn from N(0, sigma).

Protocol (each step a real command line, timed, with its peak memory):
  make-scene --cameras 9 --frames 60 --size 128x96 --offset-sigma S --seed SEED
  sync-estimate SCENE                        (writes SCENE/offsets_init.json)
  train CONFIG --data SCENE -o offsets.init_from_dataset=false    ("without")
  train CONFIG --data SCENE                                        ("with": starts from the file)
and prints, per sigma, the coarse estimate's own error and the trained offsets' MAE (frames, over
the training cameras, after removing the one global shift), each camera's final error, wall time
and peak RSS. The last line is one JSON object.

    python benchmarks/capture_range.py --out bench-capture --sigmas 8 15 3 \
        [--variants with without] [--threads 1] [--seed 0] [-o key=value ...]
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from bench_common import EXE, make_scene, run


def _mae(est, gt, train):
    """Offset MAE over ``train`` after removing the global shift (offsets.alignment_shift)."""
    from taichi_syncnerf.offsets import alignment_shift

    d = np.asarray(est, float)[train] - np.asarray(gt, float)[train] - alignment_shift(est, gt, train)
    return float(np.mean(np.abs(d))), np.round(d, 2).tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-capture")
    ap.add_argument("--config", default="synthetic/sync-kplanes")
    ap.add_argument("--sigmas", nargs="+", type=float, default=[8.0, 15.0, 3.0])
    ap.add_argument("--variants", nargs="*", default=["with", "without"], choices=["with", "without"],
                    help="trainings to run (none: only the coarse estimate)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated scenes (offsets)")
    ap.add_argument("-o", dest="overrides", action="append", default=[])
    ap.add_argument("--record", action="store_true",
                    help="append the JSON line, with date, machine and command, to docs/results/capture_range.jsonl")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for sigma in args.sigmas:
        tag = f"sigma{sigma:g}"
        scene = make_scene(out / f"scene-{tag}",
                           ["--cameras", "9", "--frames", "60", "--size", "128x96",
                            "--offset-sigma", str(sigma), "--seed", str(args.seed)],
                           out / f"make-scene-{tag}.log")
        gt = json.loads((scene / "offsets_gt.json").read_text())["offsets_frames"]
        train = list(range(1, len(gt)))                 # cam00 is the test camera
        wall, rss = run(EXE + ["sync-estimate", str(scene), "--quiet"], out / f"sync-{tag}.log")
        init = json.loads((scene / "offsets_init.json").read_text())["offsets_frames"]
        coarse_mae, coarse_err = _mae(init, gt, train)
        row = {"sigma": sigma, "seed": args.seed, "coarse_mae_frames": round(coarse_mae, 3),
               "coarse_errors": coarse_err, "sync_estimate_wall_s": round(wall, 1),
               "sync_estimate_peak_rss_mib": round(rss, 1),
               "gt_spread_frames": round(float(np.ptp(gt)), 2)}
        print(f"{tag}: coarse estimate MAE {coarse_mae:.3f} frames ({wall:.0f} s)", flush=True)
        for variant in args.variants:
            rdir = out / f"{tag}-{variant}"
            if rdir.exists():
                shutil.rmtree(rdir)
            cmd = EXE + ["train", args.config, "--data", str(scene), "--out", str(rdir),
                         "--threads", str(args.threads), "--quiet"]
            overrides = list(args.overrides)
            if variant == "without":
                overrides.append("offsets.init_from_dataset=false")
            cmd += sum([["-o", o] for o in overrides], [])
            wall, rss = run(cmd, Path(f"{rdir}-train.log"))
            learned = json.loads((rdir / "offsets.json").read_text())["cameras"]
            mae, err = _mae([c["offset_frames"] for c in learned], gt, train)
            m = json.loads((rdir / "metrics.json").read_text())
            row[variant] = {"offsets_mae_frames": round(mae, 3), "errors": err,
                            "test_psnr": m["test"]["psnr"], "train_wall_s": round(wall, 1),
                            "train_peak_rss_mib": round(rss, 1)}
            print(f"{tag} {variant} coarse estimate: offsets MAE {mae:.3f} frames, errors {err}, "
                  f"test PSNR {m['test']['psnr']:.2f} dB ({wall / 60:.1f} min, {rss:.0f} MiB)",
                  flush=True)
        results.append(row)
    print(f"\n{args.config}, {' '.join(args.overrides) or 'preset as it is'}; offsets MAE in frames over the "
          "training cameras after removing the global shift\n")
    print("| offsets drawn from | coarse estimate alone | trained without it | trained from it "
          "| test PSNR without / with |\n|---|---|---|---|---|")
    for row in results:
        def cell(v, key, fmt):
            return format(row[v][key], fmt) if v in row else "not run"
        print(f"| N(0, {row['sigma']:g} frames) (spread {row['gt_spread_frames']:g}) | {row['coarse_mae_frames']:.3f} | "
              f"{cell('without', 'offsets_mae_frames', '.3f')} | {cell('with', 'offsets_mae_frames', '.3f')} | "
              f"{cell('without', 'test_psnr', '.2f')} / {cell('with', 'test_psnr', '.2f')} dB |")
    summary = {"name": "capture_range", "config": args.config, "threads": args.threads,
               "overrides": args.overrides, "rows": results}
    print(json.dumps(summary))
    if args.record:
        from report import record
        record(summary)


if __name__ == "__main__":
    main()
