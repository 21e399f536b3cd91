"""The model of a run as the viewer sees it: opened once, reloaded when a newer checkpoint appears.

Training needs no change for a live view: it writes ``checkpoints/step-XXXXXXXX.npz`` atomically,
and :meth:`RunModel.poll` loads the newest one when its step is newer than the one shown. A view is
rendered as the model contract renders a :class:`taichi_syncnerf.models.base.View` (``render`` and
``eval`` render theirs so): an image family through its ``render_view_layers``, a ray family from
the rays ``RaySource.pose_view`` gives (:func:`taichi_syncnerf.viewer.camera.view_rays`), in passes
over its pixels, each pass's rays made for its pixels only (:meth:`RunModel.render_progressive`).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from taichi_syncnerf.errors import UserError
from taichi_syncnerf.run_folder import RunFolder
from taichi_syncnerf.viewer.camera import view_rays


def wait_for_run(run: Path, timeout: float | None, poll_s: float = 1.0, log=print) -> None:
    """Wait until ``run`` is a run folder with a first checkpoint (a training that just started).

    Raises UserError at once when ``run`` exists and is not a run, or after ``timeout`` seconds.
    """
    folder = RunFolder(run)
    t0 = time.monotonic()
    said = False
    while True:
        if folder.is_started():
            folder.check()
            if folder.newest_checkpoint() is not None:
                return
        elif not folder.config_path.is_file() and folder.path.is_dir() and any(folder.path.iterdir()):
            if not (set(p.name for p in folder.path.iterdir()) <= {".lock"}):
                folder.check()        # a folder with other things in it is not a run: says why
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise UserError(f"{run}: no checkpoint appeared within {timeout:g} s")
        if not said:
            log(f"waiting for the first checkpoint of {run} ...")
            said = True
        time.sleep(poll_s)


class RunModel:
    """A run's config, rays and model behind one lock, with the step of the checkpoint shown."""

    def __init__(self, run):
        from taichi_syncnerf.run_folder import open_run

        self.run = Path(run)
        self.opened = open_run(self.run)
        self.cfg, self.source, self.model = self.opened.cfg, self.opened.source, self.opened.model
        self.lock = threading.RLock()
        self._has_layers: bool | None = None      # whether the model gives depth and opacity (found out once)
        self.version = 0           # bumped at every reload: views compare it to re-render

    @property
    def step(self) -> int:
        return self.opened.step

    @property
    def ckpt(self) -> Path:
        return self.opened.checkpoint

    # ----- figures
    def offsets_frames(self) -> np.ndarray:
        return np.asarray(self.model.offsets.frames(), np.float64)

    def aligned_truth(self) -> np.ndarray | None:
        """Ground-truth offsets shifted by the one global shift offsets cannot determine, or None."""
        from taichi_syncnerf.offsets import align_truth

        if self.source.offsets_gt is None:
            return None
        return align_truth(self.offsets_frames(), self.source.offsets_gt, self.source.train_indices)

    def metrics(self) -> dict:
        """``metrics.json`` of the run when it is there and readable, else {}."""
        try:
            return self.opened.folder.read_metrics()
        except (OSError, UserError):
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
        """Load the newest checkpoint if it is not the one shown; True when it did."""
        with self.lock:
            if not self.opened.reload_if_newer():
                return False
            self.version += 1
        return True

    # ----- the run's log
    def log_records(self) -> list[dict]:
        """The rows of ``log.jsonl`` (empty when it is missing or unreadable)."""
        try:
            return self.opened.folder.log().read()
        except (OSError, ValueError, UserError):
            return []

    # ----- rendering
    @property
    def is_ray_family(self) -> bool:
        """Whether the model renders a view through its rays (the contract's default), so that a view
        can be rendered a few pixels at a time."""
        from taichi_syncnerf.models.base import SyncModel

        return type(self.model).render_view_layers is SyncModel.render_view_layers

    @property
    def depth_note(self) -> str | None:
        """None when the model gives depth and opacity with its colours; else why it does not."""
        if self._has_layers is None:         # found out once, from a 4x3 image of the test camera
            k = self.source.test_index
            tiny = self.source.ds.intrinsics[k].resized(4, 3)
            out = self._render(self.source.ds.c2w[k], tiny, 0.0, k, None, True, (1,), None, probe=True)
            self._has_layers = "depth" in out
        if self._has_layers:
            return None
        return f"{self.model.kind} gives no depth or opacity with its colours"

    def render(self, c2w, intr, scene_frame: float, ref_cam: int | None = None, cancel=None):
        """(H, W, 3) float image of the view ``(c2w, intr)`` at scene time ``scene_frame`` (frames).

        ``ref_cam`` is the camera whose clock the rays carry (default: the test camera; any gives the
        same image). ``cancel``, a function, is asked between batches of rays; when it answers True the
        image is abandoned and None returned (the view moved on).
        """
        out = self.render_layers(c2w, intr, scene_frame, ref_cam, cancel)
        return None if out is None else out["rgb"]

    def render_layers(self, c2w, intr, scene_frame: float, ref_cam: int | None = None, cancel=None,
                      layers: bool = False) -> dict | None:
        """``{"rgb": (H, W, 3)}`` as :meth:`render`, with ``"depth"`` and ``"opacity"`` (H, W) when
        ``layers`` and the model gives them (:attr:`depth_note` is None); None when cancelled."""
        return self.render_progressive(c2w, intr, scene_frame, ref_cam, cancel, layers, strides=(1,))

    def render_progressive(self, c2w, intr, scene_frame: float, ref_cam: int | None = None, cancel=None,
                           layers: bool = False, strides=(1,), on_pass=None) -> dict | None:
        """The image of :meth:`render_layers`, rendered in passes (ray families; an image family
        renders it in one): first every ``strides[0]``-th pixel of every ``strides[0]``-th row, then
        the pixels the next stride adds, ..., the last stride 1. After each pass
        ``on_pass(stride, images)`` gets the image so far, each pixel not rendered yet filled with
        the rendered one above and left of it (a picture ``stride`` times coarser). No ray is
        rendered twice: the passes together cost one image, and each pixel is the one a single pass
        gives. None when ``cancel`` (asked between batches of rays) answers True."""
        return self._render(c2w, intr, scene_frame, ref_cam, cancel, layers, strides, on_pass)

    def _render(self, c2w, intr, scene_frame, ref_cam, cancel, layers, strides, on_pass, probe=False):
        from taichi_syncnerf.models.base import RAY_KEYS

        ref = self.source.test_index if ref_cam is None else int(ref_cam)
        layers = layers and (probe or self.depth_note is None)
        with self.lock:
            offsets = self.offsets_frames()
            if not self.is_ray_family:
                view = self.source.pose_view(c2w, intr, scene_frame, ref, offsets)
                return self.model.render_view_layers(view, layers=layers, cancel=cancel)
        h, w = intr.height, intr.width
        n = h * w
        img = np.zeros((n, 3))
        valid = np.zeros(n, bool)
        extra = {"depth": np.zeros(n), "opacity": np.zeros(n)} if layers else None
        done = np.zeros((h, w), bool)
        ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
        step = self.model.max_rays
        for stride in strides:
            grid = (ys % stride == 0) & (xs % stride == 0)
            idx = np.flatnonzero(grid & ~done)
            done |= grid
            # the pass's rays only (pose_view's rays, made for these pixels): a first coarse pass is quick
            rays, valid[idx] = view_rays(self.source, c2w, intr, scene_frame, ref, offsets, idx % w, idx // w)
            for a in range(0, len(idx), step):
                if cancel is not None and cancel():
                    return None
                sel = idx[a:a + step]
                with self.lock:
                    img[sel] = self.model.render_rays_chunk({k: rays[k][a:a + step] for k in RAY_KEYS})
                    got = self.model.ray_layers(len(sel)) if extra is not None else None
                if extra is not None:
                    if got is None:
                        extra = None
                    else:
                        for k in extra:
                            extra[k][sel] = got[k]
            if on_pass is not None and stride > 1:
                fill = (np.arange(h)[:, None] // stride * stride) * w + np.arange(w)[None, :] // stride * stride
                on_pass(stride, self._images(img, extra, valid, h, w, fill.ravel()))
        return self._images(img, extra, valid, h, w)

    @staticmethod
    def _images(img, extra, valid, h, w, take=None) -> dict:
        valid = np.asarray(valid, bool)
        if take is not None:
            img, valid = img[take], valid[take]
            extra = None if extra is None else {k: v[take] for k, v in extra.items()}
        out = {"rgb": (np.clip(img, 0.0, 1.0) * valid[:, None]).reshape(h, w, 3)}
        if extra is not None:
            out.update({k: (v * valid).reshape(h, w) for k, v in extra.items()})
        return out
