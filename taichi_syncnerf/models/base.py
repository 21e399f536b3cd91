"""The contract every model family implements.

The training loop (:mod:`taichi_syncnerf.train`), test-time optimisation
(:mod:`taichi_syncnerf.testoptim`), evaluation, ``render``, the viewer and the checkpoints use a
model only through :class:`SyncModel`. A family registers itself in
:mod:`taichi_syncnerf.models.registry` with the sampler its training batches come from
(:mod:`taichi_syncnerf.data.samplers`) and its config section.

What a model must provide:

* ``kind`` (its ``model.kind``), ``offsets`` (a :class:`taichi_syncnerf.offsets.TimeOffsets`, the
  one place its per-camera time offsets live), ``max_rays`` (how many rays one internal render
  pass takes; :meth:`render` splits larger requests);
* ``train_on(batch, step, lr_scale, offsets_frozen, offsets_only=False) -> stats``: one optimiser
  step on a batch of its sampler; ``stats`` has at least ``"loss"``, ``"mse"`` and ``"psnr"``;
  ``offsets_only`` trains the offsets alone (test-time optimisation);
* ``prepare_testoptim(test_index, lr)``: from now on only that camera's offset trains;
* ``render_rays_chunk(rays) -> (n, 3)``: colours of at most ``max_rays`` rays (dict of arrays:
  ``origins``, ``dirs``, ``view_dirs`` (n, 3), ``times`` (n,) normalised frame times, ``cams`` (n,)
  camera indices whose offsets apply), deterministic;
* ``state_arrays() -> dict`` and ``load_state_arrays(arrays, where, optimizer=True)``: the
  checkpoint's arrays (``<component>/<name>``), including ``offsets/*`` and ``adam/*``;
* ``current_lrs() -> dict``: ``{"lr", "lr_offsets"}`` for the log;
* ``min_frames(cfg) -> (n, why)`` (class method, default 2): the fewest frames per camera it can
  train on; :func:`taichi_syncnerf.models.registry.build_model` refuses a shorter dataset.

Optional: ``retrain_variation(batch, step, lr_scale)`` for families with a variation field
(``supports_variation_retraining``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np


RAY_KEYS = ("origins", "dirs", "view_dirs", "times", "cams")


class SyncModel(ABC):
    """A dynamic scene model with per-camera time offsets (see the module docstring)."""

    kind: ClassVar[str]
    supports_variation_retraining: ClassVar[bool] = False
    max_rays: int

    @abstractmethod
    def train_on(self, batch: dict, step: int, lr_scale: float, offsets_frozen: bool,
                 offsets_only: bool = False) -> dict:
        """One optimiser step on ``batch``; returns its statistics."""

    @abstractmethod
    def prepare_testoptim(self, test_index: int, lr: float) -> None:
        """Only camera ``test_index``'s offset trains from now on, at learning rate ``lr``."""

    @abstractmethod
    def render_rays_chunk(self, rays: dict) -> np.ndarray:
        """(n, 3) colours of ``n <= max_rays`` rays."""

    @abstractmethod
    def state_arrays(self) -> dict:
        """Every array a checkpoint needs to restore the model and its optimiser."""

    @abstractmethod
    def load_state_arrays(self, arrays: dict, where: str, optimizer: bool = True) -> None:
        """Restore from checkpoint ``arrays``; a mismatch is a UserError naming ``where``."""

    @abstractmethod
    def current_lrs(self) -> dict:
        """The current learning rates, ``{"lr": ..., "lr_offsets": ...}``."""

    @classmethod
    def min_frames(cls, cfg: dict) -> tuple[int, str]:
        """The fewest frames per camera this family trains on with ``cfg``, and why (one phrase)."""
        return 2, "a time offset needs at least 2 frames"

    def render(self, rays: dict) -> np.ndarray:
        """(N, 3) colours in [0, 1] of any number of rays, in chunks of ``max_rays``."""
        n = len(rays["times"])
        out = np.empty((n, 3))
        for a in range(0, n, self.max_rays):
            b = min(n, a + self.max_rays)
            out[a:b] = self.render_rays_chunk({k: rays[k][a:b] for k in RAY_KEYS})
        return np.clip(out, 0.0, 1.0)
