"""sync-estimate on a Blender dataset of RGBA PNG frames (frames_1/camXX/, no videos): offsets from
the frames' motion, written by camera name; --sync audio says PNG frames have no sound."""
import json

import numpy as np
import pytest

from tests.cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def png_scene(tmp_path_factory):
    from taichi_syncnerf.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("png") / "scene"
    make_scene(out, layout="blender", family="static", cameras=4, frames=20, size=(96, 72), offset_sigma=2.0,
               seed=3, png=True, progress=False)
    for p in out.glob("*.mp4"):
        p.unlink()                    # only the PNG frames remain
    return out


def test_sync_estimate_reads_png_frames(png_scene):
    res = run("sync-estimate", png_scene, "--quiet")
    assert res.exit_code == 0, res.output
    doc = json.loads((png_scene / "offsets_init.json").read_text())
    assert doc["method"] == "visual" and doc["cameras"] == ["cam00", "cam01", "cam02", "cam03"]
    gt = np.asarray(json.loads((png_scene / "offsets_gt.json").read_text())["offsets_frames"])
    err = np.abs(np.asarray(doc["offsets_frames"]) - (gt - gt[0]))
    assert err.max() < 1.5, (doc["offsets_frames"], gt - gt[0])
    # train reads it back by camera name
    from taichi_syncnerf.data.dataset import load_dataset

    ds = load_dataset(png_scene, build_cache=False)
    np.testing.assert_allclose(ds.offsets_init_frames, doc["offsets_frames"])


def test_sync_audio_on_png_frames_is_one_line(png_scene):
    assert_one_line_error(run("sync-estimate", png_scene, "--sync", "audio"), "PNG frames", "no sound",
                          "--sync visual")


def test_prepare_on_a_dataset_points_to_sync_estimate(png_scene):
    assert_one_line_error(run("prepare", png_scene, png_scene.parent / "out", "--quiet"), "already a dataset",
                          "transforms.json with PNG frames", "sync-estimate")
