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

Images. Evaluation, ``render``, validation and the viewer ask for whole images (or a few pixels
of one) through :meth:`SyncModel.render_view` / :meth:`SyncModel.render_pixels` with a
:class:`View`: a pinhole camera (intrinsics and OpenGL camera-to-world in the dataset's world),
a normalised frame time on the clock of camera ``cam`` (whose learned offset the model adds),
and a lazy way to get that image's rays. Ray families (K-Planes, MixVoxels) keep the default
implementation, which renders the view's rays; image families (Gaussians) rasterize the camera.

Optional: ``retrain_variation(batch, step, lr_scale)`` for families with a variation field
(``supports_variation_retraining``); ``ray_layers(n)`` (depth and opacity of the rays of the last
``render_rays_chunk``); ``build(cfg, source)`` (class method) when the family needs more of the
dataset than the constructor's arguments.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np


RAY_KEYS = ("origins", "dirs", "view_dirs", "times", "cams")


@dataclass(frozen=True)
class View:
    """One image to render: a pinhole camera at a time on one camera's clock.

    ``intrinsics``: a :class:`taichi_syncnerf.data.cameras.Intrinsics` (its width and height are the
    image's); ``c2w``: (3, 4) OpenGL camera-to-world in the dataset's world (the loader's recentred,
    scaled world; never NDC); ``time``: normalised frame time (:mod:`taichi_syncnerf.timeline`) on
    the clock of camera ``cam``, whose learned offset the model adds; ``make_rays(x, y)``: the rays
    of pixels ``(x, y)`` ((N,) arrays; ``None`` for every pixel, row-major) as a dict of
    :data:`RAY_KEYS` and an (N,) bool ``valid`` (False where a ray cannot see the scene, e.g. an NDC
    scene's ray looking away from it: its pixel is black), made only when a ray family asks.
    """

    intrinsics: object
    c2w: np.ndarray
    time: float
    cam: int
    make_rays: Callable = field(repr=False, compare=False)

    @property
    def width(self) -> int:
        return int(self.intrinsics.width)

    @property
    def height(self) -> int:
        return int(self.intrinsics.height)

    def rays(self, x=None, y=None) -> tuple[dict, np.ndarray]:
        """``(rays, valid)`` of pixels ``(x, y)``, or of every pixel (row-major) when both are None."""
        return self.make_rays(x, y)


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

    @classmethod
    def build(cls, cfg: dict, source) -> "SyncModel":
        """The model of ``cfg`` sized for the dataset ``source`` (a RaySource)."""
        return cls(cfg, source.n_cameras, source.n_frames, source.test_index, source.ndc, source.near, source.far,
                   source.bbox, source.background, max_rays=int(cfg["train"]["batch_rays"]))

    # ------------------------------------------------------------------ images

    def ray_layers(self, n: int) -> dict | None:
        """``{"depth", "opacity"}`` ((n,) each) of the rays of the last :meth:`render_rays_chunk`, or
        None when the family keeps neither."""
        return None

    def render_view(self, view: View) -> np.ndarray:
        """(H, W, 3) colours in [0, 1] of ``view`` (default: its rays, in chunks of ``max_rays``)."""
        return self.render_view_layers(view)["rgb"]

    def render_view_layers(self, view: View, layers: bool = False, cancel=None) -> dict | None:
        """``{"rgb": (H, W, 3)}``, with ``"depth"`` and ``"opacity"`` (H, W) when ``layers`` and the
        family gives them; ``cancel`` (a function) is asked between chunks and, when it answers True,
        the image is abandoned and None returned. Depth is the weighted sum of the distances along
        the ray (ray families) or of the camera z (Gaussians), NOT divided by the opacity."""
        h, w = view.height, view.width
        rays, valid = view.rays()
        n = h * w
        img = np.empty((n, 3))
        extra = {"depth": np.zeros(n), "opacity": np.zeros(n)} if layers else None
        for a in range(0, n, self.max_rays):
            if cancel is not None and cancel():
                return None
            b = min(n, a + self.max_rays)
            img[a:b] = self.render_rays_chunk({k: rays[k][a:b] for k in RAY_KEYS})
            if extra is not None:
                got = self.ray_layers(b - a)
                if got is None:
                    extra = None
                else:
                    for k in extra:
                        extra[k][a:b] = got[k]
        valid = np.asarray(valid, bool)
        out = {"rgb": (np.clip(img, 0.0, 1.0) * valid[:, None]).reshape(h, w, 3)}
        if extra is not None:
            out.update({k: (v * valid).reshape(h, w) for k, v in extra.items()})
        return out

    def render_pixels(self, view: View, x, y) -> np.ndarray:
        """(N, 3) colours in [0, 1] of pixels ``(x, y)`` ((N,) int arrays) of ``view`` (validation)."""
        rays, valid = view.rays(np.asarray(x), np.asarray(y))
        return self.render(rays) * np.asarray(valid, bool)[:, None]

    def render(self, rays: dict) -> np.ndarray:
        """(N, 3) colours in [0, 1] of any number of rays, in chunks of ``max_rays``."""
        n = len(rays["times"])
        out = np.empty((n, 3))
        for a in range(0, n, self.max_rays):
            b = min(n, a + self.max_rays)
            out[a:b] = self.render_rays_chunk({k: rays[k][a:b] for k in RAY_KEYS})
        return np.clip(out, 0.0, 1.0)
