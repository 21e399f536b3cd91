"""A preset judged on a spread of generated scenes, each beside its trivial baseline.

For every scene family below, generates the capture (9 cameras, 60 frames, 128x96, offsets drawn
from N(0, --sigma frames)), then trains each variant through the real command line: `sync` learns the
offsets and runs `testoptim`; `nosync` (`--no-sync`) is the baseline with offsets fixed at 0. Prints
per scene and variant the full-frame test PSNR (after and before testoptim), the PSNR of the test
camera's per-pixel temporal-median image (a model-free floor) and the margin over it, SSIM, the
training cameras' offsets MAE in frames (after removing the global shift), training time and peak
memory; then the README's Markdown table (medians over --train-seeds). The last line is one JSON
object.

    python benchmarks/scene_suite.py --out suite [--config synthetic/sync-kplanes]
        [--scenes default static-clean busy-noisy blender blender-busy-black] [--variants sync nosync]
        [--sigma 3] [--train-seeds 0] [--threads 2] [--jobs 1] [-o key=value ...]
"""
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_common import MARKDOWN_HEADER, describe, make_scene, markdown_row, medians, parser, train_and_measure

SCENES = {   # name: (what it is, make-scene options, training overrides the scene needs)
    "default": ("the built-in scene: four movers, smooth room", [], []),
    "static-clean": ("mostly static: large high-frequency textured wall and floor, two small movers, "
                     "near-lossless video", ["--family", "static", "--encoding", "clean"], []),
    "busy-noisy": ("eight larger movers, sensor noise 0.03, crf 14",
                   ["--family", "busy", "--encoding", "noisy"], []),
    "blender": ("spherical rig around the movers, white background (Blender layout)", ["--layout", "blender"], []),
    "blender-busy-black": ("spherical rig around the busy family's eight movers (four of other shapes, "
                           "sizes and colours), RGBA PNG frames composited on black (`data.background=black`)",
                           ["--layout", "blender", "--family", "busy", "--png"], ["data.background=black"]),
    "static-noisy": ("the static scene with sensor noise", ["--family", "static", "--encoding", "noisy"], []),
}


def main():
    ap = parser(__doc__, "suite")
    ap.add_argument("--scenes", nargs="+", default=["default", "static-clean", "busy-noisy", "blender"],
                    choices=sorted(SCENES))
    ap.add_argument("--sigma", type=float, default=3.0, help="offsets' standard deviation, frames")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name in args.scenes:
        scene = make_scene(out / f"scene-{name}-sigma{args.sigma:g}",
                           SCENES[name][1] + ["--offset-sigma", str(args.sigma), "--seed", str(args.seed)],
                           out / f"make-scene-{name}.log")
        for seed in args.train_seeds:
            for variant in args.variants:
                jobs.append((name, scene, variant, seed))

    def one(job):
        name, scene, variant, seed = job
        rdir = out / f"{name}-sigma{args.sigma:g}-{variant}-seed{seed}"
        res = train_and_measure(rdir, args.config, scene, variant, seed, SCENES[name][2] + list(args.overrides),
                                args.threads, reuse=args.reuse)
        res["scene"] = name
        print(describe(res), flush=True)
        return res

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, jobs))
    summary = {"name": "scene_suite", "config": args.config, "sigma": args.sigma, "threads": args.threads,
               "jobs": args.jobs, "train_seeds": args.train_seeds, "overrides": args.overrides, "runs": results,
               "medians": {}}
    print(f"\n{args.config}, offsets N(0, {args.sigma:g} frames); medians over train seeds {args.train_seeds}\n")
    print(MARKDOWN_HEADER)
    for name in args.scenes:
        for variant in args.variants:
            rs = [r for r in results if r["scene"] == name and r["variant"] == variant]
            med = medians(rs)
            summary["medians"][f"{name}/{variant}"] = med
            print(markdown_row(name, "Sync" if variant == "sync" else "baseline (`--no-sync`)", med,
                               variant == "sync"))
    print()
    for name in args.scenes:
        print(f"- {name}: {SCENES[name][0]}")
    print(json.dumps(summary))
    if args.record:
        from report import record
        record(summary)


if __name__ == "__main__":
    main()
