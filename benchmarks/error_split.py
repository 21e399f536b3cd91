"""Where a trained run's test-camera error is: the pixels that move against those that never do.

Re-renders the run's test camera at the evaluation frames (`eval.max_frames`, as `metrics.json`),
splits the pixels by their temporal standard deviation in that camera's video (max over RGB;
"moving" when above --std, default 0.03, the MixVoxels labelling threshold) and prints the share of
moving pixels, the mean squared error and PSNR on each part, and the moving pixels' share of the
total squared error. The last line is one JSON object.

    python benchmarks/error_split.py RUN [RUN ...] [--std 0.03] [--threads 2]
"""
import argparse
import json
import os
import sys

import numpy as np

os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")


def split(run: str, std_threshold: float) -> dict:
    from taichi_syncnerf.evaluate import eval_frames, render_view
    from taichi_syncnerf.run_folder import open_run

    opened = open_run(run)
    cfg, source, model = opened.cfg, opened.source, opened.model
    cam = source.test_index
    video = np.stack([source.image(cam, f) for f in range(source.n_frames)])
    moving = video.std(0).max(-1) > std_threshold
    err_moving, err_static = [], []
    for f in eval_frames(source.n_frames, cfg["eval"]["max_frames"]):
        pred = render_view(model, source.view(cam, f))
        sq = ((pred - video[f]) ** 2).mean(-1)
        err_moving.append(sq[moving].mean() if moving.any() else 0.0)
        err_static.append(sq[~moving].mean() if (~moving).any() else 0.0)
    share = float(moving.mean())
    mse_m, mse_s = float(np.mean(err_moving)), float(np.mean(err_static))
    total = share * mse_m + (1.0 - share) * mse_s
    return {"run": run, "camera": source.camera_names[cam], "moving_pixels": share,
            "mse_moving": mse_m, "psnr_moving": -10.0 * np.log10(mse_m) if mse_m > 0 else None,
            "mse_static": mse_s, "psnr_static": -10.0 * np.log10(mse_s) if mse_s > 0 else None,
            "moving_error_share": share * mse_m / total if total > 0 else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--std", type=float, default=0.03, help="temporal std above which a pixel is moving")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", action="store_true",
                    help="append the JSON line, with date, machine and command, to docs/results/error_split.jsonl")
    args = ap.parse_args()
    from taichi_syncnerf import runtime

    runtime.init(arch="cpu", threads=args.threads, precision="f32")
    results = []
    for run in args.runs:
        r = split(run, args.std)
        results.append(r)
        print(f"{run}: moving pixels {100 * r['moving_pixels']:.1f} %, PSNR moving {r['psnr_moving']:.2f} dB, "
              f"static {r['psnr_static']:.2f} dB; moving share of the squared error "
              f"{100 * r['moving_error_share']:.0f} %", flush=True)
    summary = {"name": "error_split", "std": args.std, "runs": results}
    print(json.dumps(summary))
    if args.record:
        from report import record
        record(summary)


if __name__ == "__main__":
    sys.exit(main())
