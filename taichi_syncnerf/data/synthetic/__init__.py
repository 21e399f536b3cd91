"""The synthetic scene generator: rig, scene families, renderer, layout writer, entry point.

A generated capture is written in the real layouts (Plenoptic / N3DV or Blender), so every real-data
path of the project runs on it, with the ground-truth offsets in ``offsets_gt.json``.

Example::

    from taichi_syncnerf.data.synthetic import make_scene
    gt = make_scene("data/toy", family="static", encoding="clean", cameras=6, frames=30, size=(128, 96))
"""
from taichi_syncnerf.data.synthetic.make import (ENCODINGS, LAYOUTS, dataset_for_config, draw_offsets,
                                                 make_scene, render_camera, scene_rig)
from taichi_syncnerf.data.synthetic.scene import FAMILIES

__all__ = ["ENCODINGS", "FAMILIES", "LAYOUTS", "dataset_for_config", "draw_offsets", "make_scene", "render_camera", "scene_rig"]
