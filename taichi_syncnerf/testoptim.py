"""Test-time optimisation: the held-out camera's offset fitted to its video, the model frozen.

The learned offset is written into the run's newest checkpoint (the one source of truth for the
offsets; nothing else of the checkpoint changes), then offsets.json and metrics.json are written
from it: ``test_before_testoptim`` (the figures at the offset training left), ``test`` (after),
and a ``testoptim`` block with the offset before and after.
"""
from __future__ import annotations

import numpy as np

from taichi_syncnerf.errors import UserError
from taichi_syncnerf.evaluate import compute_metrics
from taichi_syncnerf.run_folder import RunFolder, open_run


def testoptim(run, steps: int | None = None, progress: bool = True) -> dict:
    """Optimise only the test camera's own offset on its video (``testoptim.steps`` steps of
    ``testoptim.batch_rays`` rays drawn uniformly from it), then evaluate; returns metrics.json."""
    folder = RunFolder.open(run)
    with folder.writing("testoptim"):
        return _testoptim(folder, steps, progress)


def _testoptim(folder: RunFolder, steps: int | None, progress: bool) -> dict:
    from tqdm import tqdm

    from taichi_syncnerf.models.registry import make_sampler

    opened = open_run(folder.path, folder=folder)
    cfg, source, model = opened.cfg, opened.source, opened.model
    t = cfg["testoptim"]
    steps = int(t["steps"] if steps is None else steps)
    if steps < 0:
        raise UserError("--steps must be >= 0")
    test = source.test_index
    old = folder.read_metrics()
    before = old.get("test_before_testoptim", old.get("test"))
    if before is None:
        before = compute_metrics(cfg, source, model, progress, splits=("test",))["test"]
    model.prepare_testoptim(test, float(t["lr"]))
    sampler = make_sampler(cfg, source)
    rng = np.random.default_rng(int(cfg["train"]["seed"]) + 1)
    log = folder.testoptim_log()
    batch = int(t["batch_rays"])
    vsteps = int(t["variation_steps"])
    vbar = tqdm(range(vsteps), disable=not progress, desc="variation field", dynamic_ncols=True)
    for step in vbar:  # config validation allows it only for families with a variation field
        b = sampler.sample(rng, batch, step, cameras=[test], uniform=True)
        stats = model.retrain_variation(b, step, 0.1 ** (step / max(vsteps, 1)))
        if step % 10 == 0 or step == vsteps - 1:
            vbar.set_postfix(bce=f"{stats['bce']:.4f}", routing=f"{stats['routing_agreement']:.3f}")
            log.append({"variation_step": step + 1, "bce": stats["bce"],
                        "routing_agreement": stats["routing_agreement"]})
    offset_before = float(model.offsets.frames()[test])
    bar = tqdm(range(steps), disable=not progress, desc="testoptim", dynamic_ncols=True)
    for step in bar:
        b = sampler.sample(rng, batch, step, cameras=[test], uniform=True)
        stats = model.train_on(b, step, 1.0, offsets_frozen=False, offsets_only=True)
        off = float(model.offsets.frames()[test])
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(psnr=f"{stats['psnr']:.2f}", offset=f"{off:+.3f}")
            log.append({"step": step + 1, "psnr": stats["psnr"], "loss": stats["loss"], "offset_frames": off})
    offset_after = float(model.offsets.frames()[test])
    block = {"steps": steps, "variation_steps": vsteps, "offset_frames_before": offset_before,
             "offset_frames_after": offset_after}
    arrays = {"offsets/params": model.offsets.state_arrays()["offsets/params"]}
    if vsteps:
        arrays.update({k: v for k, v in model.state_arrays().items() if k.startswith("params/variation.")})
    folder.update_checkpoint(opened.checkpoint, arrays, {"testoptim": block})
    folder.write_offsets(opened.offsets_document())
    metrics = old
    after = compute_metrics(cfg, source, model, progress, splits=("test",))
    metrics["test_before_testoptim"] = before
    metrics["test"] = after["test"]
    metrics["testoptim"] = block
    folder.write_metrics(metrics)
    return metrics
