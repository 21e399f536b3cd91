"""``taichi-syncnerf inspect`` on generated scenes of both layouts."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from taichi_syncnerf.cli.inspect_cmd import inspect
from taichi_syncnerf.data.synthetic import make_scene

KEYS = {"layout", "cameras", "frames", "width", "height", "test_camera"}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    base = tmp_path_factory.mktemp("inspect")
    out = {}
    for layout in ("n3dv", "blender"):
        out[layout] = base / layout
        make_scene(out[layout], layout=layout, cameras=3, frames=5, size=(24, 16), progress=False,
                   png=layout == "blender")
    return out


def last_json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_human_readable_summary(scenes):
    res = CliRunner().invoke(inspect, [str(scenes["n3dv"])])
    assert res.exit_code == 0, res.output
    out = res.stdout
    for needle in ("layout       n3dv", "cameras      3: cam00, cam01, cam02", "test camera  cam00",
                   "frames       5", "size         24x16", "at 30 fps", "near/far     0 .. 2.6 (NDC)",
                   "not built yet"):
        assert needle in out, (needle, out)
    gt = json.loads((scenes["n3dv"] / "offsets_gt.json").read_text())["offsets_frames"]
    assert f"{gt[1]:+.2f}" in out


def test_json_and_options(scenes):
    info = last_json(CliRunner().invoke(inspect, [str(scenes["blender"]), "--json"]))
    assert KEYS <= set(info)
    assert info["layout"] == "blender" and info["cameras"] == ["cam00", "cam01", "cam02"]
    assert (info["frames"], info["width"], info["height"], info["test_camera"]) == (5, 24, 16, "cam00")
    assert info["source"] == "png" and info["near"] == 2.0 and not info["ndc"]
    assert not info["cache_built"]
    info = last_json(CliRunner().invoke(inspect, [
        str(scenes["n3dv"]), "--json", "--downsample", "2", "--test-camera", "cam02",
        "--max-frames", "3"]))
    assert (info["width"], info["height"], info["frames"], info["test_camera"]) == (12, 8, 3, "cam02")


def test_build_cache_reports_its_file(scenes, tmp_path):
    args = [str(scenes["n3dv"]), "--json", "--build-cache", "--cache-dir", str(tmp_path / "c")]
    info = last_json(CliRunner().invoke(inspect, args))
    assert info["cache_built"] and info["cache_path"].startswith(str(tmp_path / "c"))
    data = np.fromfile(info["cache_path"], np.uint8)
    assert data.size == info["cache_bytes"] == 3 * 5 * 16 * 24 * 3
    res = CliRunner().invoke(inspect, args[:1] + args[2:])
    assert "KiB, built)" in res.stdout


def test_registered_in_the_main_command(scenes):
    pytest.importorskip("taichi_syncnerf.cli.data_cmds")
    from taichi_syncnerf.cli.main import main

    info = last_json(CliRunner().invoke(main, ["inspect", str(scenes["n3dv"]), "--json"]))
    assert info["layout"] == "n3dv"
