"""Rendering whole images from a model, evaluation, and test-time offset optimisation."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from taichi_syncnerf.checkpoint import latest_checkpoint, load_checkpoint, require_run
from taichi_syncnerf.config import load_resolved
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.runlog import JsonlLog, read_offsets_document, write_json


def render_colours(model, rays: dict) -> np.ndarray:
    """(N, 3) colours in [0, 1] of any number of rays, in chunks of the model's batch capacity."""
    n = len(rays["times"])
    out = np.empty((n, 3))
    step = model.max_rays
    for a in range(0, n, step):
        b = min(n, a + step)
        k = model.load_rays(rays["origins"][a:b], rays["dirs"][a:b], rays["view_dirs"][a:b],
                            rays["times"][a:b], rays["cams"][a:b])
        out[a:b] = model.render_rays(k)
    return np.clip(out, 0.0, 1.0)


def render_image(model, rays: dict, height: int, width: int) -> np.ndarray:
    """Render one (H, W, 3) image from per-pixel rays (row-major)."""
    return render_colours(model, rays).reshape(height, width, 3)


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
            rays = source.pixel_rays(cam, f, x, y)
            err += float(np.mean((render_colours(model, rays) - rays["rgb"]) ** 2))
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
        pred = render_image(model, source.image_rays(cam, f), source.height, source.width)
        acc.add(pred, source.image(cam, f))
    return {**acc.result(), "median_image_psnr": median_floor_psnr(source, cam, frames)}


def offsets_block(model, source) -> dict | None:
    from taichi_syncnerf.metrics import offset_mae

    if source.offsets_gt is None:
        return None
    pred = model.offsets.frames()
    gt = np.asarray(source.offsets_gt, np.float64)
    train = offset_mae(pred, gt, exclude=[source.test_index]).as_dict(source.camera_names)
    block = {"mae_frames": train["mae_frames"], "train": train}
    return block


def open_run(run, optimizer: bool = False):
    """Load a run's config, dataset and latest checkpoint into a model."""
    from taichi_syncnerf.train import build

    run = Path(run)
    cfg_path = require_run(run)
    cfg = load_resolved(cfg_path)
    import json

    data_dir = json.loads((run / "run.json").read_text()).get("data")
    if data_dir is None or not Path(data_dir).exists():
        raise UserError(f"{run}: its dataset {data_dir} is not there any more")
    source, model = build(cfg, data_dir)
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise UserError(f"{run}: the run has no checkpoint")
    meta, arrays = load_checkpoint(ckpt)
    model.load_state_arrays(arrays, str(ckpt), optimizer=optimizer)
    offsets_json = run / "offsets.json"
    if offsets_json.exists():
        doc = read_offsets_document(offsets_json)
        model.offsets.set_frames([c["offset_frames"] for c in doc["cameras"]])
    return cfg, source, model, meta


def evaluate_run(run, progress: bool = True, splits=("test", "train")) -> dict:
    """Recompute ``metrics.json`` of a run from its checkpoint and offsets."""
    run = Path(run)
    cfg, source, model, _ = open_run(run)
    metrics = compute_metrics(cfg, source, model, progress, splits)
    old = _read_metrics(run)
    if "test_before_testoptim" in old:
        metrics["test_before_testoptim"] = old["test_before_testoptim"]
    write_json(run / "metrics.json", metrics)
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


def _read_metrics(run: Path) -> dict:
    import json

    p = run / "metrics.json"
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{p}: corrupt metrics file") from None


def testoptim(run, steps: int | None = None, progress: bool = True) -> dict:
    """Freeze the model, optimise only the test camera's own offset on its video, then evaluate."""
    from tqdm import tqdm

    from taichi_syncnerf.train import write_offsets

    run = Path(run)
    cfg, source, model, meta = open_run(run)
    t = cfg["testoptim"]
    steps = int(t["steps"] if steps is None else steps)
    if steps < 0:
        raise UserError("--steps must be >= 0")
    test = source.test_index
    old = _read_metrics(run)
    before = old.get("test_before_testoptim", old.get("test"))
    if before is None:
        before = compute_metrics(cfg, source, model, progress, splits=("test",))["test"]
    model.prepare_testoptim(test, float(t["lr"]))
    rng = np.random.default_rng(int(cfg["train"]["seed"]) + 1)
    log = JsonlLog(run / "testoptim.jsonl")
    vsteps = int(t.get("variation_steps", 0))
    vbar = tqdm(range(vsteps), disable=not progress, desc="variation field", dynamic_ncols=True)
    for step in vbar:  # config validation allows it only for models with a variation field
        b = model.sample_batch(source, rng, int(t["batch_rays"]), step, cameras=[test], uniform=True)
        stats = model.retrain_variation(b, step, 0.1 ** (step / max(vsteps, 1)))
        if step % 10 == 0 or step == vsteps - 1:
            vbar.set_postfix(bce=f"{stats['bce']:.4f}", routing=f"{stats['routing_agreement']:.3f}")
            log.append({"variation_step": step + 1, "bce": stats["bce"],
                        "routing_agreement": stats["routing_agreement"]})
    offset_before = float(model.offsets.frames()[test])
    bar = tqdm(range(steps), disable=not progress, desc="testoptim", dynamic_ncols=True)
    for step in bar:
        b = model.sample_batch(source, rng, int(t["batch_rays"]), step, cameras=[test], uniform=True)
        stats = model.train_on(b, step, 1.0, offsets_frozen=False, offsets_only=True)
        off = float(model.offsets.frames()[test])
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(psnr=f"{stats['psnr']:.2f}", offset=f"{off:+.3f}")
            log.append({"step": step + 1, "psnr": stats["psnr"], "loss": stats["loss"], "offset_frames": off})
    write_offsets(run, source, model)
    metrics = old
    after = compute_metrics(cfg, source, model, progress, splits=("test",))
    metrics["test_before_testoptim"] = before
    metrics["test"] = after["test"]
    metrics["testoptim"] = {"steps": steps, "variation_steps": vsteps, "offset_frames_before": offset_before,
                            "offset_frames_after": float(model.offsets.frames()[test])}
    write_json(run / "metrics.json", metrics)
    return metrics
