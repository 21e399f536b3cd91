"""Videos from a trained run: a dataset view beside its ground truth, a spiral path, or a camera path
(``camera_path.json``, see :mod:`taichi_syncnerf.camera_path`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from taichi_syncnerf.errors import UserError


def _to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def error_image(pred: np.ndarray, gt: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """Mean absolute error per pixel, amplified by ``gain``, as a grey image."""
    e = np.clip(np.abs(pred - gt).mean(-1, keepdims=True) * gain, 0.0, 1.0)
    return np.repeat(e, 3, axis=-1)


def render_video(run, split: str = "test", path_kind: str = "dataset", time_mode="sweep", n_frames=None,
                 out=None, png_dir=None, progress: bool = True) -> Path:
    from tqdm import tqdm

    from taichi_syncnerf.data.video import write_video
    from taichi_syncnerf.evaluate import render_view
    from taichi_syncnerf.run_folder import open_run

    run = Path(run)
    opened = open_run(run)
    source, model = opened.source, opened.model
    cam = source.test_index if split == "test" else int(source.train_indices[0])
    F = source.n_frames
    if time_mode == "sweep":
        count = int(n_frames) if n_frames else (F if path_kind == "dataset" else 120)
        if count < 1:
            raise UserError("--frames must be >= 1")
        times = np.linspace(0, F - 1, count)
        if path_kind == "dataset":
            times = np.unique(times.round().astype(int))
    else:
        if not 0 <= float(time_mode) <= F - 1:
            raise UserError(f"--time {time_mode} is outside the video's frames 0..{F - 1}")
        count = int(n_frames) if n_frames else (1 if path_kind == "dataset" else 120)
        times = np.full(count, float(time_mode))
    poses = source.ds.render_path(len(times)) if path_kind == "spiral" else None
    name = f"{split}_{path_kind}_{'sweep' if time_mode == 'sweep' else f't{float(time_mode):g}'}.mp4"
    out = Path(out) if out else run / "renders" / name
    if png_dir:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
    frames = []
    for i, f in enumerate(tqdm(times, disable=not progress, desc="render", dynamic_ncols=True)):
        pred = render_view(model, source.view(cam, float(f), None if poses is None else poses[i]))
        if path_kind == "dataset":
            gt = source.image(cam, int(round(f)))
            img = np.concatenate([pred, gt, error_image(pred, gt)], axis=1)
        else:
            img = pred
        u8 = _to_u8(img)
        frames.append(u8)
        if png_dir:
            import imageio.v3 as iio

            iio.imwrite(Path(png_dir) / f"{i:05d}.png", u8)
    write_video(out, np.stack(frames), fps=source.fps)
    return out


def render_camera_path(run, path_file, out=None, png_dir=None, progress: bool = True, opened=None) -> Path:
    """Render ``camera_path.json`` (nerfstudio's layout, see :mod:`taichi_syncnerf.camera_path`):
    one frame per entry at its ``render_width`` x ``render_height``, at the entry's scene time, into
    ``out`` (.mp4 at the path's fps; default ``RUN/renders/<file name>.mp4``) and/or PNGs in
    ``png_dir``. Pixels of a forward-facing (NDC) scene whose rays look away from it are black.
    ``opened``: the run already opened (:func:`taichi_syncnerf.run_folder.open_run`), else it is opened here."""
    from tqdm import tqdm

    from taichi_syncnerf.camera_path import entry_intrinsics, read_path, to_model, world_from_source
    from taichi_syncnerf.data.video import VideoWriter
    from taichi_syncnerf.evaluate import render_view
    from taichi_syncnerf.run_folder import open_run

    path_file = Path(path_file)
    cam_path = read_path(path_file)
    run = Path(run)
    opened = open_run(run) if opened is None else opened
    source, model = opened.source, opened.model
    W = world_from_source(source)
    offsets = np.asarray(model.offsets.frames(), np.float64)
    ref = source.test_index
    out = None if out is None and png_dir else Path(out) if out else run / "renders" / f"{path_file.stem}.mp4"
    if png_dir:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
    w, h = cam_path.width, cam_path.height
    writer = None if out is None else VideoWriter(out, w, h, cam_path.fps)
    try:
        for i in tqdm(range(len(cam_path)), disable=not progress, desc="render", dynamic_ncols=True):
            intr = entry_intrinsics(cam_path.fov[i], w, h)
            view = source.pose_view(to_model(cam_path.c2w[i], W), intr, float(cam_path.time[i]), ref, offsets)
            u8 = _to_u8(render_view(model, view))
            if writer is not None:
                writer.write(u8)
            if png_dir:
                import imageio.v3 as iio

                iio.imwrite(Path(png_dir) / f"{i:05d}.png", u8)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    return out if out is not None else Path(png_dir)
