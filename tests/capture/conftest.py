"""A small real capture for the capture tests: a generated mostly-static scene (textured wall and
floor, two movers) at 512x384, whose videos get sound tracks carrying the same sound events
shifted by each camera's true offset, renamed to arbitrary names and containers."""
import json
from pathlib import Path

import numpy as np
import pytest

CAMERAS, FRAMES, SIZE, SIGMA, SEED = 6, 30, (512, 384), 3.0, 5
NAMES = ["IMG_4431.MOV", "gopro-b.mp4", "phone_c.mov", "DJI_0007.mp4", "back left.mp4", "z.mov"]


@pytest.fixture(scope="session")
def capture(tmp_path_factory):
    """(scene folder with the truth, folder of renamed videos with sound, name -> camera index)."""
    from taichi_syncnerf.capture.soundtrack import add_soundtracks
    from taichi_syncnerf.data.synthetic import make_scene

    root = tmp_path_factory.mktemp("capture")
    scene = root / "scene"
    make_scene(scene, family="static", cameras=CAMERAS, frames=FRAMES, size=SIZE,
               offset_sigma=SIGMA, seed=SEED, progress=False)
    videos = root / "videos"
    add_soundtracks(scene, videos, names=NAMES, seed=SEED)
    return scene, videos, {n: k for k, n in enumerate(NAMES)}


def true_offsets(scene: Path) -> np.ndarray:
    return np.asarray(json.loads((scene / "offsets_gt.json").read_text())["offsets_frames"])


def prepared_truth(scene: Path, prepared: Path, index: dict) -> np.ndarray:
    """True offsets of the prepared (trimmed) videos, relative to cam00, in camera order."""
    doc = json.loads((prepared / "prepare.json").read_text())
    gt = true_offsets(scene)
    shown = [i["start_frame"] + gt[index[i["file"]]] for i in doc["inputs"] if i["registered"]]
    return np.asarray(shown) - shown[0]
