"""The model of a run as the viewer sees it: opened once, reloaded when a newer checkpoint appears.

Training needs no change for a live view: it writes ``checkpoints/step-XXXXXXXX.npz`` atomically,
and :meth:`RunModel.poll` loads the newest one when its step is newer than the one shown. Rendering
goes through :func:`taichi_syncnerf.evaluate.render_image`, the one function ``render`` and ``eval``
use, so every model kind the project builds is shown the same way.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from taichi_syncnerf.checkpoint import latest_checkpoint, load_checkpoint, require_run
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.viewer.camera import view_rays


def wait_for_run(run: Path, timeout: float | None, poll_s: float = 1.0, log=print) -> None:
    """Wait until ``run`` is a run folder with a first checkpoint (a training that just started).

    Raises UserError at once when ``run`` exists and is not a run, or after ``timeout`` seconds.
    """
    run = Path(run)
    t0 = time.monotonic()
    said = False
    while True:
        has_config = (run / "config.yaml").is_file()
        if has_config and (run / "run.json").is_file():
            require_run(run)
            if latest_checkpoint(run) is not None:
                return
        elif not has_config and run.is_dir() and any(run.iterdir()):
            require_run(run)          # a folder with other things in it is not a run: says why
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise UserError(f"{run}: no checkpoint appeared within {timeout:g} s")
        if not said:
            log(f"waiting for the first checkpoint of {run} ...")
            said = True
        time.sleep(poll_s)


class RunModel:
    """A run's config, rays and model behind one lock, with the step of the checkpoint shown."""

    def __init__(self, run):
        from taichi_syncnerf.evaluate import open_run

        self.run = Path(run)
        self.cfg, self.source, self.model, meta = open_run(self.run)
        self.step = int(meta.get("step", 0))
        self.ckpt = latest_checkpoint(self.run)
        self.lock = threading.Lock()
        self.version = 0           # bumped at every reload: views compare it to re-render

    # ----- figures
    def offsets_frames(self) -> np.ndarray:
        return np.asarray(self.model.offsets.frames(), np.float64)

    def aligned_truth(self) -> np.ndarray | None:
        """Ground-truth offsets shifted by the one global shift offsets cannot determine, or None."""
        from taichi_syncnerf.train import aligned_truth

        gt = aligned_truth(self.source, self.model)
        return None if gt is None else np.asarray(gt, np.float64)

    def metrics(self) -> dict:
        """``metrics.json`` of the run when it is there and readable, else {}."""
        p = self.run / "metrics.json"
        try:
            return json.loads(p.read_text()) if p.is_file() else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def offset_mae(self) -> float | None:
        """Offset error of the training cameras (frames, global shift removed) of the model shown."""
        if self.source.offsets_gt is None:
            return None
        from taichi_syncnerf.metrics import offset_mae

        return float(offset_mae(self.offsets_frames(), self.source.offsets_gt,
                                exclude=[self.source.test_index]).mae_frames)

    # ----- live reload
    def poll(self) -> bool:
        """Load the newest checkpoint if it is newer than the one shown; True when it did."""
        ckpt = latest_checkpoint(self.run)
        if ckpt is None or ckpt == self.ckpt:
            return False
        try:
            meta, arrays = load_checkpoint(ckpt)
        except (UserError, FileNotFoundError):
            return False          # removed (only the last few are kept) or unreadable: next time
        with self.lock:
            shown = self.model.state_arrays()
            try:
                self.model.load_state_arrays(arrays, str(ckpt), optimizer=False)
            except UserError:
                # a checkpoint this model cannot take: the part of it loaded is undone, it is not retried
                self.model.load_state_arrays(shown, str(self.ckpt), optimizer=False)
                self.ckpt = ckpt
                return False
            self._apply_offsets_json(ckpt)
            self.ckpt, self.step = ckpt, int(meta.get("step", self.step))
            self.version += 1
        return True

    def _apply_offsets_json(self, ckpt: Path) -> None:
        """``offsets.json`` wins over the checkpoint when written after it (``testoptim``), as in ``open_run``."""
        from taichi_syncnerf.runlog import read_offsets_document

        p = self.run / "offsets.json"
        try:
            if p.is_file() and p.stat().st_mtime >= ckpt.stat().st_mtime:
                doc = read_offsets_document(p)
                self.model.offsets.set_frames([c["offset_frames"] for c in doc["cameras"]])
        except (OSError, UserError):
            pass

    # ----- rendering
    def render(self, c2w, intr, scene_frame: float, ref_cam: int | None = None, cancel=None):
        """(H, W, 3) float image of the view ``(c2w, intr)`` at scene time ``scene_frame`` (frames).

        ``ref_cam`` is the camera whose clock the rays carry (default: the test camera; any gives the
        same image). ``cancel``, a function, is asked between batches of rays; when it answers True the
        image is abandoned and None returned (the view moved on).
        """
        from taichi_syncnerf.evaluate import render_image

        ref = self.source.test_index if ref_cam is None else int(ref_cam)
        h, w = intr.height, intr.width
        with self.lock:
            rays, valid = view_rays(self.source, c2w, intr, scene_frame, ref, self.offsets_frames())
            n = h * w
            if cancel is None:
                img = render_image(self.model, rays, h, w).reshape(n, 3)
            else:
                img = np.empty((n, 3))
                step = self.model.max_rays
                for a in range(0, n, step):
                    if cancel():
                        return None
                    b = min(n, a + step)
                    img[a:b] = render_image(self.model, {k: v[a:b] for k, v in rays.items()}, 1, b - a)[0]
        return (img * valid[:, None]).reshape(h, w, 3)
