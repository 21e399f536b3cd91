"""Tiny datasets and configs for the fault tests, built once per session and copied per case."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

SIZE = (16, 12)          # width, height of the fuzz datasets' videos
FRAMES = 6

# A model small enough that a training step takes a few milliseconds on 2 cores (Sync-K-Planes).
TINY = [
    "kplanes.features=4", "kplanes.space_res=[8, 16]", "kplanes.time_res=6", "kplanes.density_hidden=16",
    "kplanes.geo_features=7", "kplanes.color_hidden=[16]", "kplanes.sh_degree=2", "kplanes.n_samples=12",
    "kplanes.proposal.samples=[16]", "kplanes.proposal.features=4", "kplanes.proposal.space_res=[16]",
    "kplanes.proposal.time_res=6", "kplanes.proposal.hidden=8", "train.batch_rays=256", "train.warmup_steps=5",
    "train.log_every=5", "train.val_every=null", "eval.max_frames=2", "eval.lpips=false",
    "testoptim.batch_rays=256", "testoptim.steps=3", "offsets.freeze_step=null", "train.lr=0.02",
    "data.path=null", "data.generate=null",
]
RT = ["--arch", "cpu", "--threads", "2", "--precision", "f64", "--quiet"]
# Taichi's own log lines (e.g. "[W 12/06/26 16:37:50.132 30747] [offline_cache.h:run@187] Lock ... failed"
# while another process holds its kernel cache) and banner: not the program's messages
TAICHI_LOG = re.compile(r"^(\[[IWE] \d\d/\d\d/\d\d |\[Taichi\] )")


def config_file(folder: Path, extra: list[str] = (), name: str = "tiny") -> Path:
    """A YAML config: the synthetic Sync-K-Planes preset with :data:`TINY` (and ``extra``) set."""
    import yaml

    from taichi_syncnerf.config import resolve_config_path

    doc: dict = {"base": str(resolve_config_path("synthetic/sync-kplanes")), "name": name}
    for item in list(TINY) + list(extra):
        key, value = item.split("=", 1)
        node = doc
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _frames(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = SIZE
    return rng.integers(0, 255, (n, h, w, 3), np.uint8)


def pose_table(n: int) -> np.ndarray:
    w, h = SIZE
    pose = np.stack([[0, -1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [h, w, 20.0]], 1)
    table = np.array([np.r_[pose.ravel(), 1.0, 6.0]] * n)
    table[:, 3] += np.arange(n) * 0.1                      # distinct centres
    return table


class Templates:
    """Valid tiny datasets (made once) that each case copies and breaks."""

    def __init__(self, root: Path):
        from taichi_syncnerf.data.video import write_video

        self.root = Path(root)
        n3 = self.root / "n3dv"
        n3.mkdir(parents=True)
        for c in range(3):
            write_video(n3 / f"cam{c:02d}.mp4", _frames(FRAMES, c), 30.0)
        np.save(n3 / "poses_bounds.npy", pose_table(3))
        bl = self.root / "blender"
        bl.mkdir()
        for c in range(2):
            shutil.copy(n3 / f"cam{c:02d}.mp4", bl / f"cam{c:02d}.mp4")
        (bl / "transforms.json").write_text(json.dumps(
            {"camera_angle_x": 0.7, "frames": [{"transform_matrix": np.eye(4).tolist()}] * 2}))
        png = self.root / "png"
        import imageio.v3 as iio

        for c in range(2):
            d = png / "frames_1" / f"cam{c:02d}"
            d.mkdir(parents=True)
            for f, img in enumerate(_frames(FRAMES, 10 + c)):
                rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
                iio.imwrite(d / f"{f:04d}.png", rgba)
        shutil.copy(bl / "transforms.json", png / "transforms.json")
        self.video = n3 / "cam00.mp4"

    def copy(self, kind: str, dst: Path) -> Path:
        shutil.copytree(self.root / kind, dst)
        return dst

    def write_video(self, path: Path, n: int = FRAMES, fps: float = 30.0, size=SIZE, seed: int = 7) -> None:
        from taichi_syncnerf.data.video import write_video

        rng = np.random.default_rng(seed)
        write_video(path, rng.integers(0, 255, (n, size[1], size[0], 3), np.uint8), fps)
