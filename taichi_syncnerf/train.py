"""The training loop: a short explicit loop over steps, with schedules, logs and checkpoints."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from taichi_syncnerf.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from taichi_syncnerf.config import dump_config
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.evaluate import validate
from taichi_syncnerf.io_utils import write_text_atomic
from taichi_syncnerf.runlog import JsonlLog, offsets_document, write_json, write_run_marker
from taichi_syncnerf.schedule import make_lr_schedule, offsets_frozen


class Interrupted(Exception):
    """Training was interrupted; a checkpoint of the last finished step was written."""

    def __init__(self, run: Path, step: int):
        super().__init__(f"interrupted: checkpoint at step {step} written to {run}; continue with --resume")
        self.step = step


def build(cfg: dict, data_dir: str | Path):
    """Open the dataset and build the model of ``cfg`` (``model.kind``; no training)."""
    from taichi_syncnerf.models.registry import build_model
    from taichi_syncnerf.rays import RaySource

    source = RaySource.open(data_dir, cfg)
    return source, build_model(cfg, source)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, dynamic_ncols=True, unit="step",
                smoothing=0.05, mininterval=0.5)


def train(cfg: dict, data_dir: str | Path, run: str | Path, resume: bool = False, progress: bool = True,
          stop_after: int | None = None) -> dict:
    """Train per ``cfg`` into the run folder ``run``; returns the final log record.

    ``stop_after`` ends the loop after that many steps of this call (used by tests to emulate an
    interrupted run); the run can then be resumed with ``resume=True``.
    """
    run = Path(run)
    t_cfg = cfg["train"]
    steps = int(t_cfg["steps"])
    source, model = build(cfg, data_dir)
    log = JsonlLog(run / "log.jsonl")
    start = 0
    rng = np.random.default_rng(int(t_cfg["seed"]))
    if resume:
        ckpt = latest_checkpoint(run)
        if ckpt is None:
            raise UserError(f"{run}: --resume given but the run has no checkpoint")
        meta, arrays = load_checkpoint(ckpt)
        model.load_state_arrays(arrays, str(ckpt))
        start = int(meta["step"])
        rng.bit_generator.state = json.loads(meta["rng_state"])
        log.truncate_after(start)
    else:
        if run.exists() and any(run.iterdir()):
            raise UserError(f"{run}: run folder exists and is not empty (use --resume, or another --out)")
        run.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run / "config.yaml", dump_config(cfg))
        write_run_marker(run, {"data": str(Path(data_dir).resolve())})
        start_offsets_from_dataset(cfg, source, model)

    lr_sched = make_lr_schedule(t_cfg["schedule"], int(t_cfg["warmup_steps"]), steps)
    freeze_step, start_step = cfg["offsets"]["freeze_step"], int(cfg["offsets"]["start_step"])
    batch = int(t_cfg["batch_rays"])
    log_every = max(1, int(t_cfg["log_every"]))
    val_every = t_cfg["val_every"]
    ckpt_every = max(1, int(t_cfg["checkpoint_every"]))

    def checkpoint(step):
        save_checkpoint(run, step, model.state_arrays(),
                        {"rng_state": json.dumps(rng.bit_generator.state)})

    record, val = {}, {}
    end = steps if stop_after is None else min(steps, start + stop_after)
    bar = _progress(steps, start, progress)
    window = []
    t_last = time.perf_counter()
    step = start
    try:
        for step in range(start, end):
            b = model.sample_batch(source, rng, batch, step)  # the model's own kind of batch
            mode = b["sampling"]
            frozen = offsets_frozen(step, freeze_step, start_step)
            stats = model.train_on(b, step, lr_sched(step), frozen)
            window.append(stats)
            bar.update(1)
            validating = val_every is not None and ((step + 1) % int(val_every) == 0 or step + 1 == steps)
            if validating:
                t_val = time.perf_counter()
                val = validate(model, source, int(t_cfg["val_frames"]), int(t_cfg["val_pixel_stride"]))
                t_last += time.perf_counter() - t_val       # steps_per_s counts training only
            if (step + 1) % log_every == 0 or step + 1 == end or validating:
                now = time.perf_counter()
                mean = {k: float(np.mean([w[k] for w in window if k in w])) for k in window[-1] if k != "psnr"}
                record = {"step": step + 1, **mean, "batch_psnr": -10 * np.log10(max(mean["mse"], 1e-12)),
                          **(val if validating else {}),
                          **model.current_lrs(), "sampling": mode, "offsets_frozen": frozen,
                          "offsets_frames": model.offsets.frames().tolist(),
                          "steps_per_s": len(window) / max(now - t_last, 1e-9)}
                log.append(record)
                bar.set_postfix(_postfix(record, val))
                window, t_last = [], now
            if (step + 1) % ckpt_every == 0 and step + 1 < end:
                checkpoint(step + 1)
    except KeyboardInterrupt:
        bar.close()
        checkpoint(step)
        raise Interrupted(run, step) from None
    finally:
        bar.close()
    checkpoint(end)
    write_offsets(run, source, model)
    if end == steps:
        from taichi_syncnerf import plots

        records = log.read()
        plots.plot_training(records, run / "training.png")
        plots.plot_offsets(records, run / "offsets.png", gt=aligned_truth(source, model),
                           camera_names=source.camera_names)
    return record


def _postfix(record: dict, val: dict) -> dict:
    """Progress-bar figures: loss, the batch PSNR (on the sampled rays) and the latest full-image
    validation PSNR of a training camera and of the test camera."""
    out = {"loss": f"{record['loss']:.4f}", "batch_psnr": f"{record['batch_psnr']:.2f}"}
    if val:
        out["val_train"] = f"{val['val_train_psnr']:.2f}"
        out["val_test"] = f"{val['val_test_psnr']:.2f}"
    return out


def start_offsets_from_dataset(cfg, source, model) -> None:
    """Start the trainable offsets from the dataset's coarse estimate (``offsets_init.json``,
    written by ``prepare`` / ``sync-estimate``), moved so that the test camera's is 0, when
    ``offsets.init_from_dataset`` is set."""
    init = getattr(source.ds, "offsets_init_frames", None)
    offsets = getattr(model, "offsets", None)
    if init is None or offsets is None or not cfg["offsets"].get("init_from_dataset", True):
        return
    init = np.asarray(init, np.float64)
    offsets.set_frames((init - init[source.test_index]) * offsets.trainable)


def aligned_truth(source, model):
    """Ground-truth offsets moved by the one global shift offsets cannot determine (the median
    difference to the learned ones over the training cameras), so the two can be compared."""
    if source.offsets_gt is None:
        return None
    gt = np.asarray(source.offsets_gt, np.float64)
    pred = model.offsets.frames()
    train = np.asarray(source.train_indices)
    return (gt + np.median(pred[train] - gt[train])).tolist()


def write_offsets(run: Path, source, model) -> dict:
    doc = offsets_document(source.camera_names, model.offsets.frames(), source.fps, source.test_index)
    write_json(Path(run) / "offsets.json", doc)
    return doc
