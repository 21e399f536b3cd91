"""The one place that chooses the model from the config (``model.kind``).

Every model implements the same interface, which the training loop, ``testoptim``, ``eval``,
``render``, the viewer and the checkpoints use:

* attributes: ``kind``, ``sync``, ``max_rays``, ``offsets`` (a :class:`.offsets.TimeOffsets`);
* ``sample_batch(source, rng, n, step, cameras=None, uniform=False) -> batch`` (a dict whose
  ``"sampling"`` names how its rays were drawn) and ``train_on(batch, step, lr_scale,
  offsets_frozen, offsets_only=False) -> stats`` (``stats["mse"]``, ``stats["loss"]``, ...);
* ``load_rays(origins, dirs, view_dirs, times, cams) -> n`` and ``render_rays(n) -> (n, 3)``;
* ``state_arrays()`` / ``load_state_arrays(arrays, where, optimizer=True)``;
* ``current_lrs()`` and ``prepare_testoptim(test_index, lr)``.
"""
from __future__ import annotations

import numpy as np

from taichi_syncnerf.errors import ConfigError


def model_class(kind: str):
    if kind == "sync-kplanes":
        from taichi_syncnerf.models.kplanes.model import SyncKPlanes

        return SyncKPlanes
    if kind == "sync-mixvoxels":
        from taichi_syncnerf.models.mixvoxels.model import SyncMixVoxels

        return SyncMixVoxels
    raise ConfigError(f"model.kind {kind!r} is not one of sync-kplanes, sync-mixvoxels")


def box_warning(model_bbox, ndc: bool, data_bbox) -> str | None:
    """Why ``model.bbox`` does not fit a world-space dataset (its scene box reaches outside), or None.

    A box given in a preset for a forward-facing rig is in normalised device coordinates; on a
    world-space dataset (Blender layout) it would cut the scene.
    """
    if model_bbox is None or ndc:
        return None
    m, d = np.asarray(model_bbox, float).reshape(2, 3), np.asarray(data_bbox, float).reshape(2, 3)
    if np.all(m[0] <= d[0] + 1e-9) and np.all(m[1] >= d[1] - 1e-9):
        return None
    return (f"model.bbox {m.tolist()} does not contain the dataset's scene box {d.tolist()}: the scene "
            f"outside it is cut (use -o model.bbox=null for the dataset's box)")


def build_model(cfg: dict, source):
    """The model of ``cfg["model"]["kind"]`` sized for the dataset ``source`` (a RaySource)."""
    cls = model_class(cfg["model"]["kind"])
    message = box_warning(cfg["model"].get("bbox"), source.ndc, source.bbox)
    if message:
        from taichi_syncnerf.data.loaders import warn

        warn(message)
    return cls(cfg, source.n_cameras, source.n_frames, source.test_index, source.ndc, source.near, source.far,
               source.bbox, source.background, max_rays=int(cfg["train"]["batch_rays"]))
