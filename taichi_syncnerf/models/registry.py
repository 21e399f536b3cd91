"""The one place that maps ``model.kind`` to a model family.

A family is a class implementing :class:`taichi_syncnerf.models.base.SyncModel`, the sampler its
training batches come from (:mod:`taichi_syncnerf.data.samplers`) and the config sections that
belong to it (a key set in another family's section is refused by the config loader).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from taichi_syncnerf.errors import ConfigError


@dataclass(frozen=True)
class Family:
    kind: str
    module: str            # where the class lives (imported only when the family is built)
    class_name: str
    sampler: str           # a key of taichi_syncnerf.data.samplers.SAMPLERS
    sections: tuple        # config sections of this family only
    description: str


FAMILIES = {f.kind: f for f in (
    Family("sync-kplanes", "taichi_syncnerf.models.kplanes.model", "SyncKPlanes", "pixels",
           ("kplanes", "sampling"), "K-Planes space-time planes with proposal samplers (hybrid or explicit decoder)"),
    Family("sync-mixvoxels", "taichi_syncnerf.models.mixvoxels.model", "SyncMixVoxels", "pixel-videos",
           ("mixvoxels",), "MixVoxels static/dynamic VM grids with a variation field and an implicit time function"),
    Family("sync-4dgs", "taichi_syncnerf.models.gaussians.model", "SyncGaussians", "images",
           ("gaussians",), "3D Gaussians deformed by the 4DGaussians space-time planes and MLPs, rasterized by tiles"),
)}


def family(kind: str) -> Family:
    if kind not in FAMILIES:
        raise ConfigError(f"model.kind {kind!r} is not one of {', '.join(FAMILIES)}")
    return FAMILIES[kind]


def model_class(kind: str):
    f = family(kind)
    return getattr(importlib.import_module(f.module), f.class_name)


def make_sampler(cfg: dict, source):
    """The training sampler of ``cfg``'s model family over the dataset ``source``."""
    from taichi_syncnerf.data.samplers import make_sampler as make

    return make(family(cfg["model"]["kind"]).sampler, source, cfg)


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
    need, why = cls.min_frames(cfg)
    if source.n_frames < need:
        from taichi_syncnerf.errors import DataError

        root = getattr(getattr(source, "ds", None), "root", "the dataset")
        raise DataError(f"{root}: {source.n_frames} frame{'s' if source.n_frames != 1 else ''} per camera "
                        f"kept, {cfg['model']['kind']} needs at least {need} ({why})")
    message = box_warning(cfg["model"].get("bbox"), source.ndc, source.bbox)
    if message:
        from taichi_syncnerf.data.loaders import warn

        warn(message)
    return cls.build(cfg, source)
