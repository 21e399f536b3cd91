"""train starts the offsets from the dataset's offsets_init.json (offsets.init_from_dataset)."""
import json

import numpy as np
import pytest

from tests.test_end_to_end import TINY, cfg_file

INIT = [0.0, 2.5, -1.25, 4.0]          # frames, relative to cam00 (as prepare / sync-estimate write)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from taichi_syncnerf.data.synthetic import make_scene

    out = tmp_path_factory.mktemp("init") / "scene"
    make_scene(out, cameras=4, frames=10, size=(32, 24), offset_sigma=2.0, seed=1, progress=False)
    (out / "offsets_init.json").write_text(json.dumps({"offsets_frames": INIT}))
    return out


def _offsets_after_two_held_steps(scene, tmp_path, *extra):
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.train import train

    # offsets.start_step=100: the offsets are held, so what the run reports is where they started
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = load_config(cfg_file(tmp_path), TINY + ["train.steps=2", "offsets.start_step=100",
                                                  *extra])
    train(cfg, scene, tmp_path / "run", progress=False)
    doc = json.loads((tmp_path / "run" / "offsets.json").read_text())
    return np.array([c["offset_frames"] for c in doc["cameras"]])


def test_a_new_run_starts_from_the_file_relative_to_the_test_camera(scene, tmp_path):
    got = _offsets_after_two_held_steps(scene, tmp_path, "data.test_camera=cam01")
    want = np.array(INIT) - INIT[1]             # the test camera's offset stays 0
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_the_key_turns_it_off(scene, tmp_path):
    got = _offsets_after_two_held_steps(scene, tmp_path, "offsets.init_from_dataset=false")
    assert np.abs(got).max() < 0.5                # init_mean / init_std: a small fraction of a frame


def test_a_malformed_file_is_a_one_line_error(scene, tmp_path):
    import shutil

    from tests.cli import assert_one_line_error, run

    data = tmp_path / "data"
    shutil.copytree(scene, data, ignore=shutil.ignore_patterns(".cache"))
    (data / "offsets_init.json").write_text(json.dumps({"offsets_frames": [0.0, 1.0]}))
    res = run("inspect", data)
    assert_one_line_error(res, "offsets_init.json", "2 values", "4 cameras")
