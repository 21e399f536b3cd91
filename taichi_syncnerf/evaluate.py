"""Rendering whole images from a model, and evaluation figures (metrics.json's content).

Opening a run is :func:`taichi_syncnerf.run_folder.open_run`; test-time optimisation is
:mod:`taichi_syncnerf.testoptim`.
"""
from __future__ import annotations

import numpy as np


def render_colours(model, rays: dict) -> np.ndarray:
    """(N, 3) colours in [0, 1] of any number of rays (the model's own chunking)."""
    return model.render(rays)


def render_image(model, rays: dict, height: int, width: int) -> np.ndarray:
    """Render one (H, W, 3) image from per-pixel rays (row-major); ray families only (every family
    renders a :class:`~taichi_syncnerf.models.base.View` with :func:`render_view`)."""
    return render_colours(model, rays).reshape(height, width, 3)


def render_view(model, view) -> np.ndarray:
    """(H, W, 3) colours in [0, 1] of a :class:`~taichi_syncnerf.models.base.View`: the one way
    evaluation, ``render`` and the viewer ask a model of any family for an image."""
    return model.render_view(view)


def validation_pixels(height: int, width: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``stride``-th pixel in both directions, centred in its block: (x, y) int arrays."""
    xs = np.arange(min(stride // 2, width - 1), width, stride)
    ys = np.arange(min(stride // 2, height - 1), height, stride)
    x, y = np.meshgrid(xs, ys)
    return x.ravel(), y.ravel()


def validate(model, source, n_frames: int, stride: int) -> dict:
    """Full-image PSNR during training, cheaply: ``n_frames`` evenly spaced frames of the first
    training camera and of the test camera, every ``stride``-th pixel in both directions.

    Unlike the batch PSNR (measured on the training batch, whose rays are importance-sampled),
    every part of the image counts here in proportion to its area. The test camera is rendered
    with its current offset (not optimised during training). Returns ``{"val_train_psnr",
    "val_test_psnr"}`` (dB, from the MSE pooled over the pixels of all frames).
    """
    x, y = validation_pixels(source.height, source.width, stride)
    frames = eval_frames(source.n_frames, n_frames)
    out = {}
    for key, cam in (("val_train_psnr", int(source.train_indices[0])), ("val_test_psnr", source.test_index)):
        err = 0.0
        for f in frames:
            pred = model.render_pixels(source.view(cam, f), x, y)
            gt = source.pixel_colours(cam, f, x, y)
            err += float(np.mean((pred - gt) ** 2))
        out[key] = float(-10.0 * np.log10(max(err / len(frames), 1e-12)))
    return out


def median_floor_psnr(source, cam: int, frames) -> float:
    """Mean PSNR over ``frames`` of camera ``cam`` of its per-pixel temporal median image: the
    score of the trivial, model-free answer (the same per-frame mean as the model's figure)."""
    from taichi_syncnerf.metrics import psnr

    med = source.median_image(cam)
    return float(np.mean([psnr(med, source.image(cam, f)) for f in frames]))


def eval_frames(n_frames: int, max_frames) -> list[int]:
    if max_frames is None or int(max_frames) >= n_frames:
        return list(range(n_frames))
    return sorted(set(np.linspace(0, n_frames - 1, int(max_frames)).round().astype(int).tolist()))


def evaluate_camera(model, source, cam: int, frames, lpips: bool = True, progress: bool = False) -> dict:
    from tqdm import tqdm

    from taichi_syncnerf.metrics import ImageMetrics

    acc = ImageMetrics(lpips_net="alex" if lpips else None)
    for f in tqdm(frames, disable=not progress, desc=f"eval {source.camera_names[cam]}", leave=False):
        pred = render_view(model, source.view(cam, f))
        acc.add(pred, source.image(cam, f))
    return {**acc.result(), "median_image_psnr": median_floor_psnr(source, cam, frames)}


def offsets_block(model, source) -> dict | None:
    """The offsets' error figures of the training cameras (frames, the global shift removed)."""
    from taichi_syncnerf.metrics import offset_mae

    if source.offsets_gt is None:
        return None
    pred = model.offsets.frames()
    gt = np.asarray(source.offsets_gt, np.float64)
    train = offset_mae(pred, gt, exclude=[source.test_index]).as_dict(source.camera_names)
    return {"mae_frames": train["mae_frames"], "train": train}


def evaluate_run(run, progress: bool = True, splits=("test", "train")) -> dict:
    """Recompute ``metrics.json`` of a run from its newest readable checkpoint."""
    from taichi_syncnerf.run_folder import RunFolder, open_run

    folder = RunFolder.open(run)
    with folder.writing("eval"):
        opened = open_run(run, folder=folder)
        metrics = compute_metrics(opened.cfg, opened.source, opened.model, progress, splits)
        old = folder.read_metrics()
        if "test_before_testoptim" in old:
            metrics["test_before_testoptim"] = old["test_before_testoptim"]
            if "testoptim" in old:
                metrics["testoptim"] = old["testoptim"]
        folder.write_metrics(metrics)
    return metrics


def compute_metrics(cfg, source, model, progress: bool, splits=("test", "train")) -> dict:
    e = cfg["eval"]
    frames = eval_frames(source.n_frames, e["max_frames"])
    out = {}
    if "test" in splits:
        out["test"] = evaluate_camera(model, source, source.test_index, frames, e["lpips"], progress)
    if "train" in splits:
        # one training camera (the first), at the same frames: a check of fit, not of novel views
        cam = int(source.train_indices[0])
        out["train"] = {**evaluate_camera(model, source, cam, frames, e["lpips"], progress),
                        "camera": source.camera_names[cam]}
    off = offsets_block(model, source)
    if off is not None:
        out["offsets"] = off
    return out
