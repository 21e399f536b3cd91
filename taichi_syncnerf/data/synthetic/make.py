"""Generate a synthetic dynamic multi-view capture with known per-camera time offsets.

Camera k's frame f shows scene time ``(f + offsets_frames[k]) / fps`` seconds, with offsets drawn
from N(0, offset_sigma) frames (fractional; rounded to 1e-3 frame; sigma 0 gives a synchronised
capture). The dataset is written in the real layout (see :mod:`.writer`) with H.264 videos.

Renderers (``renderer``): ``numpy`` (:class:`.render.ViewRenderer`, cameras in parallel processes)
or ``taichi`` (:class:`.render.KernelViewRenderer`: the frames' ray casting in one Taichi kernel,
kernels/raycast.py, in one worker process initialised on the CPU in float32 whatever the caller's
runtime, so the output does not depend on it). Both write the same files; their frames agree
(tests/data/test_synthetic_raycast.py: identical on the test scenes, and within 1 level of 255 on
all but a few silhouette pixels in general). ``auto`` takes taichi from
:data:`TAICHI_MIN_PIXELS` per frame (a Plenoptic-size capture, 20 x 300 frames of 1352x1014,
in minutes instead of hours), numpy below (the small scenes of the presets and tests, unchanged)
and for PNG frames (:meth:`.render.ViewRenderer.render`'s float output).

Example::

    gt = make_scene("data/toy", layout="n3dv", cameras=6, frames=30, size=(128, 96))
    gt["offsets_frames"]        # one value per camera, camera order
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from taichi_syncnerf.data.synthetic import writer as sw
from taichi_syncnerf.data.synthetic.render import ViewRenderer
from taichi_syncnerf.data.synthetic.rig import Camera, blender_rig, n3dv_rig
from taichi_syncnerf.data.synthetic.scene import FAMILIES, family_scene
from taichi_syncnerf.data.video import DEFAULT_CRF, VideoWriter
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.io_utils import write_json_atomic

LAYOUTS = ("n3dv", "blender")
# Encodings: x264 quality and sensor noise (standard deviation in [0, 1] units, drawn
# independently per pixel, channel and frame, before encoding; a higher crf would smooth most of
# it away again on static pixels). "clean" is near lossless, so static pixels are
# the same in every frame; "noisy" looks like a phone camera in dim light.
ENCODINGS = ("default", "clean", "noisy")
ENCODING_SETTINGS = {"default": (DEFAULT_CRF, 0.0), "clean": (1, 0.0), "noisy": (14, 0.03)}
RENDERERS = ("auto", "numpy", "taichi")
TAICHI_MIN_PIXELS = 256 * 256


def resolve_renderer(renderer: str, width: int, height: int, png: bool) -> str:
    """The renderer ``auto`` stands for (see the module docstring); PNG frames need numpy's."""
    if renderer not in RENDERERS:
        raise UserError(f"renderer must be one of {', '.join(RENDERERS)}, got {renderer!r}")
    if png:
        return "numpy"
    if renderer == "auto":
        return "taichi" if int(width) * int(height) >= TAICHI_MIN_PIXELS else "numpy"
    return renderer


_CASTERS: dict = {}


def _kernel_renderer(scene, camera: Camera, supersample: int):
    """A :class:`.render.KernelViewRenderer`; Taichi is initialised (CPU, float32) if nobody has,
    and one caster per frame size is kept for the process (Taichi never frees a field)."""
    from taichi_syncnerf import runtime
    from taichi_syncnerf.data.synthetic.render import KernelViewRenderer
    from taichi_syncnerf.kernels.raycast import RayCaster

    if not runtime.is_initialized():
        runtime.init(arch="cpu", precision="f32")
    key = (camera.width, camera.height, int(supersample))
    if key not in _CASTERS or _CASTERS[key].max_objects < len(scene.objects):
        _CASTERS[key] = RayCaster(camera.width, camera.height, supersample, max(8, len(scene.objects)))
    return KernelViewRenderer(scene, camera, supersample, _CASTERS[key])


def draw_offsets(cameras: int, sigma: float, seed: int) -> np.ndarray:
    """Per-camera offsets in frames: N(0, sigma) from ``default_rng(seed)``, rounded to 1e-3."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0.0, float(sigma), int(cameras)), 3) + 0.0   # + 0.0: no -0.0


def scene_rig(layout: str, cameras: int, width: int, height: int) -> list[Camera]:
    """The camera rig of a layout (camera 0 is the test camera)."""
    return (n3dv_rig if layout == "n3dv" else blender_rig)(cameras, width, height)


def default_workers(cameras: int, pixels: int) -> int:
    """Cameras rendered in parallel: half the cores (ffmpeg encodes beside each renderer),
    at most one per camera, and none for tiny images where start-up costs dominate."""
    if pixels < 256 * 256:
        return 1
    return max(1, min(cameras, (os.cpu_count() or 1) // 2))


def render_camera(scene, camera: Camera, video: Path, png_dir: Path | None, times: np.ndarray,
                  fps: float, supersample: int, crf: int, noise: float = 0.0, noise_seed: int = 0,
                  on_frame=None, renderer: str = "numpy") -> tuple[float, float]:
    """Render one camera's video (and PNGs) at the given scene times (seconds, (F,)).

    ``noise``: standard deviation of Gaussian sensor noise added to the video frames (not to the
    PNGs), from ``default_rng(noise_seed)``. ``renderer``: "numpy" or "taichi" (video frames
    only). Returns the (near, far) depth range of the content it sees.
    """
    if renderer == "taichi" and png_dir is None:
        renderer = _kernel_renderer(scene, camera, supersample)
    else:
        renderer = ViewRenderer(scene, camera, supersample)
    rng = np.random.default_rng(noise_seed)

    def noisy(frame: np.ndarray) -> np.ndarray:
        if noise <= 0:
            return frame
        return sw.to_uint8(frame / 255.0 + rng.normal(0.0, noise, frame.shape))

    with VideoWriter(video, camera.width, camera.height, fps, crf=crf) as writer:
        for f, t in enumerate(times):
            if png_dir is None:
                writer.write(noisy(renderer.render_uint8(float(t))))    # white behind objects
            else:
                rgb, alpha = renderer.render(float(t))           # premultiplied
                writer.write(noisy(sw.to_uint8(rgb + (1.0 - alpha)[..., None])))
                straight = rgb / np.maximum(alpha, 1e-6)[..., None]
                rgba = np.concatenate([straight, alpha[..., None]], -1)
                sw.write_rgba_png(png_dir / f"{f:04d}.png", sw.to_uint8(rgba))
            if on_frame is not None:
                on_frame()
    return renderer.depth_range(times)


def _render_parallel(jobs: list, workers: int, bounds: np.ndarray, bar) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(render_camera, **job): k for k, job in enumerate(jobs)}
        try:
            for fut in as_completed(futures):
                bounds[futures[fut]] = fut.result()
                bar.update(len(jobs[futures[fut]]["times"]))
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _check(layout, cameras, frames, size, fps, offset_sigma, png, family, encoding) -> tuple[int, int]:
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if family not in FAMILIES:
        raise UserError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if encoding not in ENCODINGS:
        raise UserError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if int(cameras) < 2:
        raise UserError(f"cameras must be at least 2, got {cameras}")
    if int(frames) < 2:
        raise UserError(f"frames must be at least 2, got {frames}")
    w, h = (int(v) for v in size)
    if w < 8 or h < 8:
        raise UserError(f"size must be at least 8x8 pixels, got {w}x{h}")
    if not float(fps) > 0:
        raise UserError(f"fps must be positive, got {fps}")
    if not float(offset_sigma) >= 0:
        raise UserError(f"offset sigma must be >= 0, got {offset_sigma}")
    if png and layout != "blender":
        raise UserError("PNG frames (frames_1/camXX/) exist only in the blender layout")
    return w, h


def make_scene(out_dir: str | os.PathLike, layout: str = "n3dv", cameras: int = 9,
               frames: int = 60, size: tuple[int, int] = (128, 96), fps: float = 30.0,
               offset_sigma: float = 3.0, seed: int = 0, progress: bool = True,
               png: bool = False, overwrite: bool = False, supersample: int = 2,
               crf: int | None = None, workers: int | None = None, family: str = "default",
               encoding: str = "default", renderer: str = "auto") -> dict:
    """Render and write a synthetic unsynchronised capture.

    Args:
        out_dir: output folder (must not exist, or be empty; ``overwrite`` replaces a dataset).
        layout: "n3dv" (forward-facing rig, room background, ``poses_bounds.npy``) or "blender"
            (cameras on a spherical cap, objects on transparent/white, ``transforms.json``).
        cameras: number of cameras (>= 2); camera 0 is the test camera.
        frames: frames per video.
        size: (width, height) in pixels.
        fps: frame rate; scene motion is defined in seconds.
        offset_sigma: standard deviation of the offsets, in frames (0: synchronised).
        seed: seed of the offsets.
        progress: show a progress bar.
        png: (blender only) also write RGBA PNGs ``frames_1/camXX/NNNN.png``.
        overwrite: replace an existing dataset folder.
        supersample: s x s rays per pixel (antialiasing).
        crf: H.264 quality (lower is better); None: the encoding's.
        family: scene family (:data:`FAMILIES`): "default", "static" (mostly static room with a
            high-frequency textured wall and floor, two small movers) or "busy" (eight movers).
        encoding: :data:`ENCODINGS`: "default" (crf 12), "clean" (crf 1, static pixels constant)
            or "noisy" (Gaussian sensor noise of 0.03, crf 14).
        workers: cameras rendered in parallel processes by the numpy renderer (None:
            :func:`default_workers`).
        renderer: "auto", "numpy" or "taichi" (see the module docstring).

    Returns:
        The ground truth written to ``offsets_gt.json`` (keys ``fps``, ``frames``,
        ``offsets_frames``, ``layout``, ``seed``, ...) plus ``path``.
    """
    w, h = _check(layout, cameras, frames, size, fps, offset_sigma, png, family, encoding)
    renderer = resolve_renderer(renderer, w, h, png)
    enc_crf, noise = ENCODING_SETTINGS[encoding]
    crf = enc_crf if crf is None else int(crf)
    from tqdm import tqdm

    out = Path(out_dir)
    cams = scene_rig(layout, int(cameras), w, h)
    names = sw.camera_names(len(cams))
    offsets = draw_offsets(len(cams), offset_sigma, seed)
    scene = family_scene(family, background=(layout == "n3dv"), seed=seed)
    staging = sw.begin_output(out, overwrite)
    bounds = np.zeros((len(cams), 2))
    jobs = [dict(scene=scene, camera=cam, video=staging / f"{name}.mp4",
                 png_dir=(staging / "frames_1" / name) if png else None,
                 times=(np.arange(int(frames)) + offsets[k]) / float(fps), fps=float(fps),
                 supersample=supersample, crf=crf, noise=noise, noise_seed=seed * 1000 + k, renderer=renderer)
            for k, (cam, name) in enumerate(zip(cams, names))]
    n_workers = default_workers(len(cams), w * h) if workers is None else max(1, int(workers))
    try:
        with tqdm(total=len(cams) * int(frames), desc="make-scene", unit="frame",
                  disable=not progress) as bar:
            if renderer == "taichi":    # one process: Taichi takes the cores (and its own precision)
                _render_parallel(jobs, 1, bounds, bar)
            elif n_workers == 1:
                for k, job in enumerate(jobs):
                    bounds[k] = render_camera(**job, on_frame=lambda: bar.update(1))
            else:
                _render_parallel(jobs, n_workers, bounds, bar)
        c2w = np.stack([c.c2w for c in cams])
        if layout == "n3dv":
            hwf = np.array([[h, w, c.focal] for c in cams], np.float64)
            sw.write_poses_bounds(staging / "poses_bounds.npy", sw.llff_rows(c2w, hwf, bounds))
        else:
            sw.write_transforms(staging / "transforms.json", c2w, w, h, cams[0].focal, names)
        gt = {
            "fps": float(fps),
            "frames": int(frames),
            "offsets_frames": [float(o) for o in offsets],
            "layout": layout,
            "family": family,
            "encoding": encoding,
            "crf": int(crf),
            "noise": float(noise),
            "seed": int(seed),
            "offset_sigma": float(offset_sigma),
            "cameras": len(cams),
            "width": w,
            "height": h,
            "test_camera": 0,
            "videos": [f"{n}.mp4" for n in names],
            "scene_time_convention": sw.SCENE_TIME_CONVENTION,
            "generator": "taichi-syncnerf make-scene",
        }
        write_json_atomic(staging / "offsets_gt.json", gt)
        sw.finish_output(staging, out)
    except BaseException:
        sw.abort_output(staging)
        raise
    return dict(gt, path=str(out))


def dataset_for_config(cfg: dict, data: str | None, log=print) -> str:
    """The dataset folder a training of ``cfg`` reads: ``data``, else ``data.path``; generated by
    :func:`make_scene` with ``data.generate``'s arguments when that folder is missing or empty."""
    from taichi_syncnerf.errors import UserError

    path = data or cfg["data"]["path"]
    gen = cfg["data"]["generate"]
    if path is None:
        raise UserError("no dataset: give --data DIR or set data.path in the config")
    p = Path(path)
    if p.exists() and any(p.iterdir()):
        return str(p)
    if not gen:
        raise UserError(f"{p}: dataset folder not found")
    args = dict(gen)
    size = args.pop("size", "128x96")
    w, h = (int(v) for v in str(size).lower().split("x"))
    log(f"generating the scene into {p} ...")
    make_scene(p, size=(w, h), **args)
    return str(p)
