"""``prepare`` on a generated capture: time, peak memory, rig and offset errors; optionally a
training on the prepared folder.

Protocol (each step a real command line, timed, with its peak memory):
  make-scene --family static --cameras 9 --frames 60 --size 512x384 --offset-sigma S
  (sound tracks with the same events shifted by each camera's true offset; files renamed)
  prepare VIDEOS OUT [--sync audio|visual] [--size WxH]
  [train CONFIG --data OUT]   (with --train; OUT/offsets_gt.json is written from the truth first)
The rig error is after aligning the cameras to the generator's (rotation from the orientations,
then scale and translation from the centres). Peak memory is that of the prepare process (its
ffmpeg children are not counted). The last line is one JSON object.

    python benchmarks/prepare_capture.py --out bench-prepare [--sigma 8] [--sync auto]
        [--size 128x96] [--fov 55] [--intrinsics auto] [--train] [--threads 1]
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from bench_common import EXE, make_scene, run

NAMES = ["IMG_4431.MOV", "gopro-b.mp4", "phone_c.mov", "DJI_0007.mp4", "back left.mp4", "z.mov",
         "cam 7.mp4", "MVI_0032.MOV", "north.mkv"]


def _rows(path):
    m = np.load(path)[:, :15].reshape(-1, 3, 5)
    return np.stack([m[:, :, 1], m[:, :, 0], -m[:, :, 2]], axis=-1), m[:, :, 3], m[:, 2, 4]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-prepare")
    ap.add_argument("--sigma", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sync", default="auto", choices=["auto", "visual"])
    ap.add_argument("--size", default=None, help="dataset size given to prepare (default: 512x384)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fov", default=None, help="passed to prepare (the generator's lens: 55)")
    ap.add_argument("--intrinsics", default="auto", choices=["auto", "shared", "per-camera"])
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--config", default="synthetic/sync-kplanes")
    ap.add_argument("--record", action="store_true",
                    help="append the JSON line, with date, machine and command, to docs/results/prepare_capture.jsonl")
    args = ap.parse_args()
    from taichi_syncnerf.capture.checks import align_rig
    from taichi_syncnerf.capture.soundtrack import add_soundtracks

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = make_scene(out / f"scene-sigma{args.sigma:g}",
                       ["--family", "static", "--cameras", "9", "--frames", "60", "--size", "512x384",
                        "--offset-sigma", str(args.sigma), "--seed", str(args.seed)],
                       out / "make-scene.log")
    videos = out / f"videos-sigma{args.sigma:g}"
    if not videos.exists():
        add_soundtracks(scene, videos, names=NAMES, seed=args.seed)
    prepared = out / (f"prepared-{args.sync}-{args.size or 'full'}-{args.intrinsics}"
                      + (f"-fov{args.fov}" if args.fov else ""))
    shutil.rmtree(prepared, ignore_errors=True)
    cmd = EXE + ["prepare", str(videos), str(prepared), "--sync", args.sync, "--quiet",
                 "--threads", str(args.threads), "--intrinsics", args.intrinsics]
    cmd += (["--size", args.size] if args.size else []) + (["--fov", args.fov] if args.fov else [])
    wall, rss = run(cmd, Path(f"{prepared}.log"))
    doc = json.loads((prepared / "prepare.json").read_text())
    index = {n: k for k, n in enumerate(NAMES)}
    order = [index[i["file"]] for i in doc["inputs"] if i["registered"]]
    gt = np.asarray(json.loads((scene / "offsets_gt.json").read_text())["offsets_frames"])
    shown = np.array([i["start_frame"] for i in doc["inputs"] if i["registered"]]) + gt[order]
    truth = shown - shown[0]
    init = np.asarray(json.loads((prepared / "offsets_init.json").read_text())["offsets_frames"])
    r_e, c_e, f_e = _rows(prepared / "poses_bounds.npy")
    r_g, c_g, f_g = _rows(scene / "poses_bounds.npy")
    r_g, c_g, f_g = r_g[order], c_g[order], f_g[order]
    s, rot, t = align_rig(r_e, c_e, r_g, c_g)
    rig = np.max(np.linalg.norm(c_g[:, None] - c_g[None], axis=-1))
    centre = np.linalg.norm((s * (rot @ c_e.T)).T + t - c_g, axis=1) / rig
    cos = [(np.trace((rot @ r_e[k]).T @ r_g[k]) - 1) / 2 for k in range(len(order))]
    res = {"name": "prepare_capture", "sigma": args.sigma, "sync": doc["sync"]["method"], "intrinsics": args.intrinsics,
           "fov": args.fov, "prepare_wall_s": round(wall, 1),
           "prepare_peak_rss_mib": round(rss, 1), "registered": len(order), "frames": doc["frames"],
           "size": [doc["width"], doc["height"]],
           "coarse_max_error_frames": round(float(np.abs(init - truth).max()), 3),
           "rotation_max_error_deg": round(float(np.degrees(np.arccos(np.clip(cos, -1, 1))).max()), 3),
           "centre_max_error_of_rig": round(float(centre.max()), 4),
           "focal_error": round(float(np.median(f_e * 512 / doc["width"]) / f_g[0] - 1), 4)}
    print(f"prepare: {wall:.0f} s, {rss:.0f} MiB, coarse max error "
          f"{res['coarse_max_error_frames']} frames", flush=True)
    if args.train:
        (prepared / "offsets_gt.json").write_text(json.dumps({"offsets_frames": truth.tolist()}))
        rdir = out / f"train-{prepared.name}"
        shutil.rmtree(rdir, ignore_errors=True)
        wall, rss = run(EXE + ["train", args.config, "--data", str(prepared), "--out", str(rdir),
                               "--threads", str(args.threads), "--quiet"], Path(f"{rdir}.log"))
        m = json.loads((rdir / "metrics.json").read_text())
        res["train"] = {"offsets_mae_frames": m["offsets"]["mae_frames"],
                        "test_psnr": m["test"]["psnr"], "train_wall_s": round(wall, 1),
                        "train_peak_rss_mib": round(rss, 1)}
        print(f"train: offsets MAE {m['offsets']['mae_frames']:.3f} frames, test PSNR "
              f"{m['test']['psnr']:.2f} dB ({wall / 60:.1f} min)", flush=True)
    print(json.dumps(res))
    if args.record:
        from report import record
        record(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
