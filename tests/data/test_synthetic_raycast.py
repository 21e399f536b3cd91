"""make-scene's Taichi renderer (kernels/raycast.py through render.KernelViewRenderer) against the
numpy renderer it replaces for large captures, in float32 as make-scene runs it.

Tolerance: the uint8 frames are equal but for at most 1 pixel in 10,000, by at most 1 level of
255 (the kernel repeats the numpy renderer's float32 operations in the same order; only sin/cos
and a float64 step of numpy's box texture may round differently). Measured: identical on every
frame here; 3 pixels of 13.7 million differ, by 1 level, at 1352x1014.
"""
import json
import subprocess
import sys

import numpy as np

from taichi_syncnerf.data.synthetic import make_scene
from taichi_syncnerf.data.synthetic.make import TAICHI_MIN_PIXELS, resolve_renderer
from taichi_syncnerf.data.video import read_video

SCRIPT = r"""
import json
import numpy as np
from taichi_syncnerf import runtime
runtime.init(arch="cpu", threads=2, precision="f32")
from taichi_syncnerf.kernels.raycast import RayCaster
from taichi_syncnerf.data.synthetic.render import KernelViewRenderer, ViewRenderer
from taichi_syncnerf.data.synthetic.make import scene_rig
from taichi_syncnerf.data.synthetic.scene import family_scene
W, H, S = 64, 48, 2
caster = RayCaster(W, H, S, 8)
out = {}
for layout in ("n3dv", "blender"):
    for family in ("default", "static", "busy"):
        scene = family_scene(family, background=layout == "n3dv", seed=0)
        differ, worst, total = 0, 0, 0
        for cam in scene_rig(layout, 3, W, H):
            new, old = KernelViewRenderer(scene, cam, S, caster), ViewRenderer(scene, cam, S)
            for t in np.linspace(-0.3, 2.1, 6):
                d = np.abs(new.render_uint8(t).astype(int) - old.render_uint8(t)).max(-1)
                differ += int((d > 0).sum()); worst = max(worst, int(d.max())); total += d.size
        out[f"{layout}/{family}"] = [differ, worst, total]
print(json.dumps(out))
"""


def test_kernel_frames_equal_numpy_frames_in_float32():
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(stats) == 6
    for key, (differ, worst, total) in stats.items():
        assert differ <= total / 10000 and worst <= 1, (key, differ, worst)


def test_make_scene_writes_the_same_dataset_with_either_renderer(tmp_path):
    """Same files, poses, ground truth and (decoded) videos; the Taichi renderer runs in its own
    float32 process although this suite's runtime is float64."""
    kw = dict(cameras=3, frames=5, size=(64, 48), progress=False, seed=3)
    for layout in ("n3dv", "blender"):
        a = make_scene(tmp_path / f"{layout}-numpy", layout=layout, renderer="numpy", **kw)
        b = make_scene(tmp_path / f"{layout}-taichi", layout=layout, renderer="taichi", **kw)
        a.pop("path"), b.pop("path")
        assert a == b
        names = sorted(p.name for p in (tmp_path / f"{layout}-numpy").iterdir())
        assert names == sorted(p.name for p in (tmp_path / f"{layout}-taichi").iterdir())
        for name in names:
            pa, pb = tmp_path / f"{layout}-numpy" / name, tmp_path / f"{layout}-taichi" / name
            if name.endswith(".mp4"):
                va, vb = read_video(pa).astype(int), read_video(pb).astype(int)
                assert va.shape == vb.shape == (5, 48, 64, 3)
                assert np.abs(va - vb).max() <= 2 and np.abs(va - vb).mean() < 0.01
            else:
                assert pa.read_bytes() == pb.read_bytes(), name


def test_auto_renderer_by_frame_size():
    assert resolve_renderer("auto", 128, 96, png=False) == "numpy"           # the presets' scenes: unchanged
    assert resolve_renderer("auto", 1352, 1014, png=False) == "taichi"
    assert TAICHI_MIN_PIXELS <= 512 * 512
    assert resolve_renderer("auto", 512, 512, png=True) == "numpy"           # PNG frames: numpy's float output
    assert resolve_renderer("taichi", 16, 12, png=False) == "taichi"
    import pytest

    from taichi_syncnerf.errors import UserError
    with pytest.raises(UserError, match="renderer"):
        resolve_renderer("opengl", 16, 12, png=False)
