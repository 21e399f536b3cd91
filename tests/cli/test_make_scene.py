"""``taichi-syncnerf make-scene`` and ``desync``: outputs, summaries and one-line errors."""
import json

import pytest

from taichi_syncnerf.cli import data_cmds
from taichi_syncnerf.cli.main import main
from . import assert_one_line_error, run

TINY = ["--cameras", "3", "--frames", "4", "--size", "24x16", "--quiet"]


def test_commands_are_registered():
    names = {c.name for c in data_cmds.COMMANDS}
    assert {"make-scene", "desync"} <= names
    assert {"make-scene", "desync"} <= set(main.commands)


def test_make_scene_then_desync(tmp_path):
    out = tmp_path / "scene"
    res = run("make-scene", out, *TINY, "--layout", "blender", "--png", "--offset-sigma", "0",
              "--seed", "3", "--fps", "24")
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.stdout and "3 cameras x 4 frames" in res.stdout
    assert "24x16 at 24 fps" in res.stdout and "[+0.00, +0.00, +0.00]" in res.stdout
    gt = json.loads((out / "offsets_gt.json").read_text())
    assert gt["layout"] == "blender" and gt["fps"] == 24.0 and gt["seed"] == 3
    assert (out / "transforms.json").is_file()
    assert (out / "frames_1" / "cam02" / "0003.png").is_file()

    res = run("desync", out, tmp_path / "unsync", "--sigma", "1", "--seed", "2", "--keep", "2",
              "--quiet")
    assert res.exit_code == 0, res.output
    gt2 = json.loads((tmp_path / "unsync" / "offsets_gt.json").read_text())
    assert gt2["frames"] == 2 and gt2["sigma"] == 1.0 and gt2["source_frames"] == 4
    assert "x 2 frames (of 4)" in res.stdout


@pytest.mark.parametrize("args, needles", [
    (["--size", "24by16"], ["--size", "24by16"]),
    (["--size", "24x"], ["--size"]),
    (["--cameras", "1"], ["cameras", "at least 2"]),
    (["--frames", "0"], ["frames"]),
    (["--png"], ["blender"]),
    (["--offset-sigma", "-2"], ["sigma"]),
])
def test_make_scene_bad_arguments(tmp_path, args, needles):
    res = run("make-scene", tmp_path / "x", *TINY, *args)
    assert_one_line_error(res, *needles)
    assert not (tmp_path / "x").exists()


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "scene"
    assert run("make-scene", out, *TINY).exit_code == 0
    assert_one_line_error(run("make-scene", out, *TINY, "--seed", "4"), str(out), "--force")
    res = run("make-scene", out, *TINY, "--seed", "4", "--force")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "offsets_gt.json").read_text())["seed"] == 4
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("keep me")
    res = run("make-scene", notes, *TINY, "--force")
    assert_one_line_error(res, "does not look like a dataset")
    assert (notes / "a.txt").read_text() == "keep me"


def test_desync_errors(tmp_path):
    src = tmp_path / "scene"
    assert run("make-scene", src, *TINY, "--offset-sigma", "0").exit_code == 0
    res = run("desync", src, tmp_path / "a", "--sigma", "0", "--keep", "9", "--quiet")
    assert_one_line_error(res, "keep", "overlap")
    assert_one_line_error(run("desync", tmp_path / "nope", tmp_path / "b", "--quiet"),
                          "nope", "not found")
    (src / "poses_bounds.npy").write_bytes(b"garbage")
    assert_one_line_error(run("desync", src, tmp_path / "c", "--quiet"), "poses_bounds.npy")
