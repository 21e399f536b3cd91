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
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_common import MARKDOWN_HEADER, describe, make_scene, markdown_row, medians, parser, train_and_measure


def main():
    ap = parser(__doc__, "bench-runs")
    ap.add_argument("--sigmas", nargs="+", type=float, default=[3.0, 0.0])
    ap.add_argument("--testoptim-baseline", action="store_true",
                    help="also run testoptim on the no-sync baseline (default: the plain baseline)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for sigma in args.sigmas:
        scene = make_scene(out / f"scene-sigma{sigma:g}",
                           ["--layout", "n3dv", "--cameras", "9", "--frames", "60", "--size", "128x96",
                            "--offset-sigma", str(sigma), "--seed", str(args.seed)],
                           out / f"make-scene-sigma{sigma:g}.log")
        for seed in args.train_seeds:
            for variant in args.variants:
                jobs.append((scene, sigma, variant, seed))

    def one(job):
        scene, sigma, variant, seed = job
        name = f"sigma{sigma:g}-{variant}" + (f"-seed{seed}" if len(args.train_seeds) > 1 else "")
        res = train_and_measure(out / name, args.config, scene, variant, seed, args.overrides, args.threads,
                                args.testoptim_baseline, reuse=args.reuse)
        res["sigma"] = sigma
        print(describe(res), flush=True)
        return res

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, jobs))
    summary = {"name": "sync_synthetic", "config": args.config, "threads": args.threads, "jobs": args.jobs,
               "train_seeds": args.train_seeds, "runs": results}
    print(f"\nmedians over train seeds {args.train_seeds}:\n")
    print(MARKDOWN_HEADER)
    for s in args.sigmas:
        med = {}
        scene = f"offsets N(0, {s:g} frames)" if s > 0 else "synchronised"
        for v in args.variants:
            med[v] = medians([r for r in results if r["sigma"] == s and r["variant"] == v])
            for key, value in med[v].items():
                summary[f"sigma{s:g}_{v}_median_{key}"] = value
            print(markdown_row(scene, "Sync" if v == "sync" else "baseline (`--no-sync`)", med[v], v == "sync"))
        if "sync" in med and "nosync" in med:
            for key in ("test_psnr", "test_psnr_before_testoptim"):
                gap = med["sync"][key] - med["nosync"]["test_psnr"]
                summary[f"sigma{s:g}_sync_minus_nosync_{key}_db"] = round(gap, 3)
            print(f"\nsigma {s:g}: Sync minus baseline {summary[f'sigma{s:g}_sync_minus_nosync_test_psnr_db']:+.2f} dB "
                  f"after testoptim, {summary[f'sigma{s:g}_sync_minus_nosync_test_psnr_before_testoptim_db']:+.2f} dB "
                  "before it (medians)")
    print(json.dumps(summary))
    if args.record:
        from report import record
        record(summary)


if __name__ == "__main__":
    main()
