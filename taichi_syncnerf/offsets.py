"""Per-camera time offsets: one learnable component shared by every model family.

:class:`TimeOffsets` owns everything about the offsets: the Taichi field the kernels read (one
value per camera, normalised time units, see :mod:`taichi_syncnerf.timeline`), which cameras train
(``mask``: the held-out test camera and every camera of a ``--no-sync`` run stay fixed), its
optimiser group and learning rate, its L1 term, its freeze policy (``offsets.start_step`` /
``offsets.freeze_step``), its checkpoint arrays, its start from the dataset's coarse estimate
(``offsets_init.json``), the offsets report (``offsets.json``) and the alignment of learned
offsets to a ground truth.

A model creates one with :meth:`TimeOffsets.from_config`, passes :meth:`param_group` to its
optimiser and reads ``params`` in its kernels; the training loop asks :meth:`frozen_at`.

Example:
    >>> off = TimeOffsets.from_config(cfg, n_cameras=4, n_frames=60, test_index=0)  # doctest: +SKIP
    >>> off.set_frames([0.0, 1.5, -2.0, 0.25]); off.frames()                         # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import taichi as ti

from taichi_syncnerf import runtime, timeline
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.kernels.losses import offset_l1

CONVENTION = "frame f of this camera shows scene time f + offset_frames"


@ti.data_oriented
class TimeOffsets:
    """Offsets of ``n_cameras`` cameras of ``n_frames``-frame videos.

    Args:
        trainable: (n_cameras,) bool, which offsets train.
        init_mean, init_std: trainable offsets start at N(init_mean, init_std) (normalised units).
        lr: the optimiser group's base learning rate; l1: weight of the L1 term.
        start_step, freeze_step: the offsets are held before ``start_step`` and from
            ``freeze_step`` on (None: never frozen).
    """

    GROUP = "offsets"

    def __init__(self, n_cameras: int, n_frames: int, trainable, init_mean: float = -0.001,
                 init_std: float = 0.001, seed: int = 0, lr: float = 0.0, l1: float = 0.0,
                 start_step: int = 0, freeze_step: int | None = None):
        trainable = np.asarray(trainable, dtype=bool)
        if trainable.shape != (n_cameras,):
            raise ValueError("trainable must have one entry per camera")
        self.n_cameras = int(n_cameras)
        self.n_frames = int(n_frames)
        self.lr, self.l1_weight = float(lr), float(l1)
        self.start_step = int(start_step)
        self.freeze_step = None if freeze_step is None else int(freeze_step)
        self.params = ti.field(float, shape=self.n_cameras, needs_grad=True)
        self.mask = ti.field(ti.i32, shape=self.n_cameras)
        rng = np.random.default_rng(seed)
        init = rng.normal(init_mean, init_std, size=self.n_cameras) * trainable
        self.params.from_numpy(init.astype(runtime.np_float()))
        self.mask.from_numpy(trainable.astype(np.int32))
        self.sync = bool(trainable.any())

    @classmethod
    def from_config(cls, cfg: dict, n_cameras: int, n_frames: int, test_index: int) -> "TimeOffsets":
        """The offsets of a model built from ``cfg``: every camera but ``test_index`` trains when
        ``model.sync``; none does otherwise."""
        o = cfg["offsets"]
        trainable = np.full(n_cameras, bool(cfg["model"]["sync"]))
        trainable[test_index] = False
        off = cls(n_cameras, n_frames, trainable, float(o["init_mean"]), float(o["init_std"]),
                  int(cfg["train"]["seed"]), lr=float(cfg["train"]["lr"]) * float(o["lr_scale"]),
                  l1=float(o["l1"]), start_step=int(o["start_step"]), freeze_step=o["freeze_step"])
        off.sync = bool(cfg["model"]["sync"])
        return off

    # ------------------------------------------------------------------ values
    @property
    def trainable(self) -> np.ndarray:
        return self.mask.to_numpy() != 0

    def set_trainable(self, trainable) -> None:
        self.mask.from_numpy(np.asarray(trainable, dtype=bool).astype(np.int32))

    def normalised(self) -> np.ndarray:
        return self.params.to_numpy().astype(np.float64)

    def frames(self) -> np.ndarray:
        """Offsets in frames ("frame f shows scene time f + offset")."""
        return timeline.normalised_to_frames(self.normalised(), self.n_frames)

    def set_frames(self, offsets_frames) -> None:
        self.params.from_numpy(timeline.frames_to_normalised(offsets_frames, self.n_frames)
                               .astype(runtime.np_float()))

    def start_from_estimate(self, init_frames, test_index: int) -> None:
        """Start the trainable offsets from a coarse estimate (frames, e.g. the dataset's
        ``offsets_init.json``), moved so that the test camera's is 0; fixed cameras stay at 0."""
        init = np.asarray(init_frames, np.float64)
        self.set_frames((init - init[test_index]) * self.trainable)

    # ------------------------------------------------------------------ training
    def param_group(self) -> dict:
        """The optimiser group of the offsets (frozen for good in a ``--no-sync`` run)."""
        return {"name": self.GROUP, "param": self.params, "lr": self.lr, "frozen": not self.sync}

    def frozen_at(self, step: int) -> bool:
        """Whether the offsets are held at training ``step`` (before start_step, from freeze_step on)."""
        return (not self.sync) or step < self.start_step or (
            self.freeze_step is not None and step >= self.freeze_step)

    def l1(self, weight: float | None = None) -> float:
        """L1 penalty on the trainable offsets (``weight`` default: ``offsets.l1``); ACCUMULATES its
        gradient into ``params.grad``."""
        weight = self.l1_weight if weight is None else float(weight)
        if weight == 0.0:
            return 0.0
        return offset_l1(self.params, weight, self.mask)

    @ti.kernel
    def apply_mask_to_grad(self):
        """Zero the gradient of fixed cameras (called before the optimiser step)."""
        for k in range(self.n_cameras):
            self.params.grad[k] *= self.mask[k]

    def only(self, camera: int, lr: float) -> None:
        """Test-time optimisation: only ``camera``'s offset trains, at learning rate ``lr``."""
        only = np.zeros(self.n_cameras, bool)
        only[camera] = True
        self.set_trainable(only)
        self.sync = True
        self.lr = float(lr)

    # ------------------------------------------------------------------ checkpoint
    def state_arrays(self) -> dict:
        return {"offsets/params": self.params.to_numpy(), "offsets/mask": self.mask.to_numpy()}

    def load_state_arrays(self, arrays: dict, where: str) -> None:
        """Load the learned values (the mask stays the model's: the config decides what trains)."""
        for k in ("offsets/params", "offsets/mask"):
            if k not in arrays or arrays[k].shape != (self.n_cameras,):
                raise UserError(f"{where}: checkpoint entry {k} is missing or has the wrong camera count")
        self.params.from_numpy(arrays["offsets/params"].astype(runtime.np_float()))

    # ------------------------------------------------------------------ reports
    def document(self, camera_names, fps: float, test_index: int, truth=None, initial=None,
                 train_indices=None) -> dict:
        """The offsets report (``offsets.json``): per camera the learned offset in frames and
        seconds, and where known the coarse initial estimate and the ground truth aligned to the
        learned offsets (:func:`align_truth`)."""
        return offsets_document(camera_names, self.frames(), fps, test_index, truth=truth, initial=initial,
                                train_indices=train_indices)


def alignment_shift(pred_frames, gt_frames, cameras) -> float:
    """The one global shift offsets cannot determine (they are learned relative to the held-at-zero
    test camera): the median of ``pred - gt`` over ``cameras``, the shift with the smallest mean
    absolute error. Used by the offsets report, the metrics, the plots, the viewer and the benchmarks."""
    cameras = np.asarray(cameras, np.int64)
    return float(np.median(np.asarray(pred_frames, np.float64)[cameras] - np.asarray(gt_frames, np.float64)[cameras]))


def align_truth(pred_frames, gt_frames, train_indices) -> np.ndarray:
    """Ground-truth offsets moved by :func:`alignment_shift` over the training cameras."""
    return np.asarray(gt_frames, np.float64) + alignment_shift(pred_frames, gt_frames, train_indices)


def offsets_document(names, offsets_frames, fps: float, test_index: int, truth=None, initial=None,
                     train_indices=None) -> dict:
    """See :meth:`TimeOffsets.document`; ``train_indices`` (default: all but the test camera)
    are the cameras the truth is aligned on."""
    offsets_frames = np.asarray(offsets_frames, np.float64)
    if train_indices is None:
        train_indices = [i for i in range(len(offsets_frames)) if i != test_index]
    aligned = None if truth is None else align_truth(offsets_frames, truth, train_indices)
    cams = []
    for i, (name, off) in enumerate(zip(names, offsets_frames)):
        cam = {"name": name, "split": "test" if i == test_index else "train",
               "offset_frames": float(off), "offset_seconds": float(off) / float(fps)}
        if initial is not None:
            cam["initial_frames"] = float(initial[i])
        if aligned is not None:
            cam["truth_frames"] = float(aligned[i])
            cam["error_frames"] = float(off - aligned[i])
        cams.append(cam)
    doc = {"fps": float(fps), "convention": CONVENTION, "cameras": cams}
    if aligned is not None:
        doc["truth_alignment"] = "ground truth shifted by the median difference over the training cameras"
    return doc


def read_offsets_document(path) -> dict:
    """Read an offsets report; a missing or malformed one is a one-line error naming the file."""
    try:
        doc = json.loads(Path(path).read_text())
        _ = [float(c["offset_frames"]) for c in doc["cameras"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{path}: missing or malformed offsets file") from None
    return doc
