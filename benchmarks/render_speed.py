"""Frames per second of a trained run rendering a spiral, start-up excluded.

Opens RUN (config, dataset, newest checkpoint), then for every ``--sizes`` entry renders the
spiral of ``render --path spiral`` (the dataset's render path: the LLFF spiral or the orbit) with
the test camera's intrinsics resized to that size, sweeping the scene time over the video, through
``SyncModel.render_view`` (what ``render``, ``eval`` and the viewer use; any model kind). One
warm-up frame per size (kernel compilation, buffers sized to the image) is not timed; then
``--frames`` frames are, each ending with its image in numpy (no video encoding). Prints one line
per size and, last, one JSON object: ``name`` ("render_speed"), ``run``, ``kind``, ``step``,
``threads``, ``arch``, ``precision``, ``gaussians`` (sync-4dgs: the count; else null), ``results``
(per size: ``width``, ``height``, ``frames``, ``fps``, ``ms_per_frame`` (median), ``first_frame_s``,
``mean_walked`` (sync-4dgs: tile-list entries a pixel walks to the last Gaussian it blends, mean
over the timed frames)).

    python benchmarks/render_speed.py RUN [--sizes 128x96 1352x1014] [--frames 30] [--threads 2]
        [--arch cpu] [--precision f32] [--record]
"""
import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--sizes", nargs="+", default=["128x96", "1352x1014"], help="image sizes WxH")
    p.add_argument("--frames", type=int, default=30, help="timed frames per size (after one warm-up frame)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--arch", default="cpu", choices=["cpu", "cuda", "vulkan", "auto"])
    p.add_argument("--precision", default="f32", choices=["f32", "f64"])
    p.add_argument("--record", action="store_true",
                   help="append the JSON line, with date, machine and command, to docs/results/render_speed.jsonl")
    args = p.parse_args(argv)
    try:
        args.sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    except ValueError:
        p.error(f"--sizes must be WxH entries, got {args.sizes!r}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from taichi_syncnerf import runtime

    runtime.init(arch=args.arch, threads=args.threads, precision=args.precision)
    import taichi as ti

    from taichi_syncnerf.run_folder import open_run

    opened = open_run(args.run)
    source, model = opened.source, opened.model
    cam = source.test_index
    offsets = model.offsets.frames()
    n = args.frames + 1
    poses = source.ds.render_path(n)
    times = np.linspace(0, source.n_frames - 1, n)
    gaussians = getattr(getattr(model, "cloud", None), "n", None)
    results = []
    for w, h in args.sizes:
        intr = source.ds.intrinsics[cam].resized(w, h)
        spans, walked = [], []
        first = None
        for i in range(n):
            t0 = time.perf_counter()
            img = model.render_view(source.pose_view(poses[i], intr, times[i], cam, offsets))
            ti.sync()
            assert img.shape == (h, w, 3)
            dt = time.perf_counter() - t0
            if i == 0:
                first = dt
                continue
            spans.append(dt)
            ras = getattr(model, "_rasterizers", None)
            if ras:
                r = next(r for r in ras if r.width >= w and r.height >= h)
                walked.append(float(r.n_contrib.to_numpy()[:h, :w].mean()))
        total = float(np.sum(spans))
        res = {"width": w, "height": h, "frames": len(spans), "fps": len(spans) / total,
               "ms_per_frame": 1e3 * float(np.median(spans)), "first_frame_s": first,
               "mean_walked": float(np.mean(walked)) if walked else None}
        results.append(res)
        print(f"{w}x{h}: {res['fps']:.2f} fps ({res['ms_per_frame']:.1f} ms a frame, median of {len(spans)}; "
              f"first frame {first:.2f} s)" + (f", {res['mean_walked']:.0f} list entries walked per pixel"
                                                if walked else ""), flush=True)
    out = {"name": "render_speed", "run": str(args.run), "kind": model.kind, "step": opened.step,
           "threads": args.threads, "arch": args.arch, "precision": args.precision, "gaussians": gaussians,
           "results": results}
    print(json.dumps(out))
    if args.record:
        from report import record

        record(out)
    return out


if __name__ == "__main__":
    main()
