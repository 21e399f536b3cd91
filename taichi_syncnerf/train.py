"""The training loop: a short explicit loop over steps, with schedules, logs and checkpoints.

The run folder's files are read and written through :mod:`taichi_syncnerf.run_folder`, the
batches come from the model family's sampler (:mod:`taichi_syncnerf.data.samplers`), the offsets'
freeze policy from :class:`taichi_syncnerf.offsets.TimeOffsets`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from taichi_syncnerf.evaluate import compute_metrics, validate
from taichi_syncnerf.run_folder import RunFolder, build, open_run, rng_state
from taichi_syncnerf.schedule import make_lr_schedule


class Interrupted(Exception):
    """Training was interrupted; a checkpoint of the last finished step was written."""

    def __init__(self, run: Path, step: int):
        super().__init__(f"interrupted: checkpoint at step {step} written to {run}; continue with --resume")
        self.step = step


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, dynamic_ncols=True, unit="step",
                smoothing=0.05, mininterval=0.5)


def train(cfg: dict | None, data_dir: str | Path | None, run: str | Path, resume: bool = False,
          progress: bool = True, stop_after: int | None = None) -> dict:
    """Train per ``cfg`` into the run folder ``run``; returns the final log record.

    With ``resume`` the run's own config.yaml and newest readable checkpoint are used (a run stopped
    before its first checkpoint starts again from step 0; ``cfg`` is ignored; ``data_dir``, when
    given, replaces the dataset folder recorded in run.json). ``stop_after`` ends the loop after that
    many steps of this call (used by tests to emulate an interrupted run).
    """
    if resume:
        folder = RunFolder.open(run)
        with folder.writing("train --resume"):
            if not folder.checkpoints():       # stopped before its first checkpoint: start again, same config
                cfg = folder.config()
                source, model = build(cfg, data_dir or folder.data_dir(), progress=progress)
                folder.log().truncate_after(0)
                return _train(folder, cfg, source, model, None, progress, stop_after)
            opened = open_run(folder.path, optimizer=True, folder=folder, data_dir=data_dir)
            return _train(folder, opened.cfg, opened.source, opened.model, opened, progress, stop_after)
    RunFolder.require_new(run)                 # before the dataset is read: a mistake shows at once
    source, model = build(cfg, data_dir, progress=progress)
    folder = RunFolder.create(run, cfg, data_dir)
    with folder.writing("train"):
        return _train(folder, cfg, source, model, None, progress, stop_after)


def _train(folder: RunFolder, cfg, source, model, opened, progress: bool, stop_after) -> dict:
    """The loop; ``opened`` is the run as loaded for ``--resume`` (None for a new run)."""
    from taichi_syncnerf.models.registry import make_sampler

    resume = opened is not None
    t_cfg = cfg["train"]
    steps = int(t_cfg["steps"])
    log = folder.log()
    rng = np.random.default_rng(int(t_cfg["seed"]))
    start = 0
    if resume:
        start = opened.step
        rng.bit_generator.state = json.loads(opened.meta["rng_state"])
        log.truncate_after(start)
    else:
        init = getattr(source.ds, "offsets_init_frames", None)
        if init is not None and cfg["offsets"]["init_from_dataset"]:
            model.offsets.start_from_estimate(init, source.test_index)

    sampler = make_sampler(cfg, source)
    lr_sched = make_lr_schedule(t_cfg["schedule"], int(t_cfg["warmup_steps"]), steps)
    batch = int(t_cfg["batch_rays"])
    log_every = max(1, int(t_cfg["log_every"]))
    val_every = t_cfg["val_every"]
    ckpt_every = max(1, int(t_cfg["checkpoint_every"]))

    def checkpoint(step):
        folder.save_checkpoint(step, model.state_arrays(), {"rng_state": rng_state(rng)})

    previous = log.read() if resume else []
    record, val = (dict(previous[-1]) if previous else {}), {}   # what a resumed run that is done reports
    end = steps if stop_after is None else min(steps, start + stop_after)
    bar = _progress(steps, start, progress)
    window = []
    t_last = time.perf_counter()
    step = start
    try:
        for step in range(start, end):
            b = sampler.sample(rng, batch, step)
            frozen = model.offsets.frozen_at(step)
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
                          **model.current_lrs(), "sampling": b["sampling"], "offsets_frozen": frozen,
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
        raise Interrupted(folder.path, step) from None
    finally:
        bar.close()
    checkpoint(end)
    doc = _offsets_document(model, source)
    folder.write_offsets(doc)
    if end == steps:
        from taichi_syncnerf import plots

        records = log.read()
        plots.plot_training(records, folder.plot_path("training"))
        truth = [c.get("truth_frames") for c in doc["cameras"]] if "truth_alignment" in doc else None
        plots.plot_offsets(records, folder.plot_path("offsets"), gt=truth, camera_names=source.camera_names)
    return record


def _offsets_document(model, source) -> dict:
    return model.offsets.document(source.camera_names, source.fps, source.test_index, truth=source.offsets_gt,
                                  initial=getattr(source.ds, "offsets_init_frames", None),
                                  train_indices=source.train_indices)


def _postfix(record: dict, val: dict) -> dict:
    """Progress-bar figures: loss, the batch PSNR (on the sampled rays) and the latest full-image
    validation PSNR of a training camera and of the test camera."""
    out = {"loss": f"{record['loss']:.4f}", "batch_psnr": f"{record['batch_psnr']:.2f}"}
    if val:
        out["val_train"] = f"{val['val_train_psnr']:.2f}"
        out["val_test"] = f"{val['val_test_psnr']:.2f}"
    return out


def train_and_evaluate(cfg, data_dir, run, resume: bool = False, progress: bool = True,
                       evaluate: bool = True) -> tuple[dict, dict | None]:
    """``train``, then (``evaluate``) the metrics of the trained run written to metrics.json.
    Returns (the final log record, the metrics or None)."""
    record = train(cfg, data_dir, run, resume=resume, progress=progress)
    if not evaluate:
        return record, None
    folder = RunFolder.open(run)
    with folder.writing("train (evaluation)"):
        opened = open_run(run, folder=folder)
        metrics = compute_metrics(opened.cfg, opened.source, opened.model, progress=progress)
        folder.write_metrics(metrics)
    return record, metrics
