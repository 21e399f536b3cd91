"""Frame times of the viewer without a browser: what ``view --benchmark SIZE1,SIZE2`` prints.

A size is a height H (the width follows the dataset's aspect) or a canvas ``WxH`` (a browser's
canvas: 956x800 is a 1280x800 window less the docked panel). For each size the camera moves along
the dataset's render path (spiral or orbit) while time advances, rendering at the "while moving"
choice 1/4 (a quarter of H), then rests and renders the full frame the way the viewer does: in
passes (:func:`taichi_syncnerf.viewer.app.pass_strides` at the speed measured while moving), the
first pass a coarse picture. The viewer's default "while moving" choice, "auto", would move at the
height that renders at ``AUTO_FPS``; the figures give that height for the cost measured (a fixed
part and a pixel rate fitted to the moving and the full frames, :mod:`taichi_syncnerf.viewer.cost`). Each
frame is rendered by the viewer's own path (:class:`RunModel`) and JPEG-encoded as it is sent to
the browser; one untimed frame of each size first (allocation and kernel compilation are the
viewer's start-up, not its frame rate). "time to full" is the rest the viewer waits (``SETTLE_S``) plus the passes and their
encodings. CPU seconds are given beside wall seconds: on a shared machine they say what an idle
one would take.
"""
from __future__ import annotations

import json
import time

import numpy as np

from taichi_syncnerf.viewer.camera import camera_fov, view_intrinsics
from taichi_syncnerf.viewer.cost import FrameCost
from taichi_syncnerf.viewer.live import RunModel
from taichi_syncnerf.viewer.panel import AUTO_FPS, MOVING_SCALES

DEFAULT_MOVING = "1/4"


def _encode(img: np.ndarray) -> bytes:
    import cv2

    u8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def parse_size(size, dataset_aspect: float) -> tuple[int, float]:
    """``(height, aspect)`` of a size: an int height (the dataset's aspect) or ``(width, height)``."""
    if isinstance(size, (tuple, list)):
        w, h = size
        return int(h), int(w) / int(h)
    return int(size), dataset_aspect


def benchmark(run, sizes, moving_frames: int = 20, full_frames: int = 3, log=print,
              model: RunModel | None = None) -> list[dict]:
    """Frame rate while moving and time to a full frame for each size; one JSON line at the end."""
    from tqdm import tqdm

    from taichi_syncnerf.viewer.app import SETTLE_S, pass_strides

    rm = RunModel(run) if model is None else model
    src = rm.source
    fov, ds_aspect = camera_fov(src.ds.intrinsics[src.test_index])
    poses = src.ds.render_path(moving_frames)
    scale = MOVING_SCALES[DEFAULT_MOVING]
    rm.render(poses[0], view_intrinsics(fov, ds_aspect, 8), 0.0)          # compile before timing
    results = []
    for size in sizes:
        h, aspect = parse_size(size, ds_aspect)
        small = view_intrinsics(fov, aspect, max(8, int(round(h * scale))))
        full = view_intrinsics(fov, aspect, h)
        for intr in (small, full):           # buffers of this size allocated, their kernels compiled: untimed
            rm.render(poses[0], intr, 0.0)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in tqdm(range(moving_frames), desc=f"moving {small.width}x{small.height}", leave=False):
            _encode(rm.render(poses[i], small, (src.n_frames - 1) * i / max(moving_frames - 1, 1)))
        seconds = time.perf_counter() - t0
        fps = moving_frames / seconds
        cpu_fps = moving_frames / (time.process_time() - c0)
        cost = FrameCost()
        cost.add(small.width * small.height, seconds / moving_frames)
        strides = pass_strides(full.width * full.height, cost)
        times, cpu, first = [], [], []
        for i in tqdm(range(full_frames), desc=f"full {full.width}x{full.height}", leave=False):
            t1, c1 = time.perf_counter(), time.process_time()
            passes = []

            def on_pass(stride, images):
                _encode(images["rgb"])
                passes.append(time.perf_counter() - t1)

            _encode(rm.render_progressive(poses[i], full, 0.5 * (src.n_frames - 1), strides=strides,
                                          on_pass=on_pass)["rgb"])
            times.append(time.perf_counter() - t1)
            cpu.append(time.process_time() - c1)
            first.append(passes[0] if passes else times[-1])
        cost.add(full.width * full.height, float(np.median(times)))     # with the moving frames: fixed + rate
        auto_h = cost.height_for(1.0 / AUTO_FPS, aspect, 8, h)
        r = {"full": f"{full.width}x{full.height}", "moving": f"{small.width}x{small.height}",
             "auto_moving_height": auto_h,
             "moving_fps": round(fps, 2), "passes": list(strides),
             "first_pass_s": round(SETTLE_S + float(np.median(first)), 3),
             "full_frame_s": round(float(np.median(times)), 3),
             "time_to_full_s": round(SETTLE_S + float(np.median(times)), 3),
             # CPU seconds (all threads): with --threads 1 the wall time an idle core would take
             "moving_fps_per_cpu_s": round(cpu_fps, 2), "full_frame_cpu_s": round(float(np.median(cpu)), 3)}
        log(f"{r['full']}: moving at {r['moving']} {r['moving_fps']:.1f} fps; after the camera stops a first picture "
            f"(every {strides[0]}th pixel) in {r['first_pass_s']:.2f} s, the full frame in {r['time_to_full_s']:.2f} s")
        results.append(r)
    print(json.dumps({"run": str(run), "step": rm.step, "results": results}))
    return results
