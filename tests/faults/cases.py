"""The fuzz of broken datasets, configs and run folders: every case must end in one line
``error: ...`` naming the file (or key) and the problem, a non-zero exit status and no traceback.

Each case is ``(id, what was broken, needles the error line must hold, build)`` where ``build(tmp,
templates)`` makes the broken input under ``tmp`` and returns the command line's arguments.
docs/FAULTS.md lists every case (``python -m tests.faults.table --write``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tests.faults.builders import RT, Templates, config_file, pose_table


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    needles: tuple
    build: Callable[[Path, Templates], list]
    group: str


CASES: list[Case] = []


def case(group: str, id: str, what: str, *needles: str):
    def deco(fn):
        assert id not in {c.id for c in CASES}, id
        CASES.append(Case(id, what, needles, fn, group))
        return fn
    return deco


def _inspect(root: Path, *more) -> list:
    return ["inspect", str(root), *map(str, more)]


def _train(tmp: Path, data: Path, *extra: str) -> list:
    cfg = config_file(tmp, [])
    out = ["train", str(cfg), "--data", str(data), "--out", str(tmp / "run"), "--no-eval", *RT]
    for o in extra:
        out += ["-o", o]
    return out


def _n3dv_with_table(tmp, t, table, **save):
    root = t.copy("n3dv", tmp / "d")
    np.save(root / "poses_bounds.npy", table, **save)
    return _inspect(root)


# ---------------------------------------------------------------- poses_bounds.npy
@case("n3dv", "pb-columns", "poses_bounds.npy with 10 columns instead of 17", "poses_bounds.npy", "(N, 17)")
def _(tmp, t):
    return _n3dv_with_table(tmp, t, np.zeros((3, 10)))


@case("n3dv", "pb-1d", "poses_bounds.npy a flat vector of 51 numbers", "poses_bounds.npy", "(N, 17)")
def _(tmp, t):
    return _n3dv_with_table(tmp, t, pose_table(3).ravel())


@case("n3dv", "pb-3d", "poses_bounds.npy of shape (3, 3, 5) (bounds missing)", "poses_bounds.npy", "(N, 17)")
def _(tmp, t):
    return _n3dv_with_table(tmp, t, pose_table(3)[:, :15].reshape(3, 3, 5))


@case("n3dv", "pb-nan", "a NaN in a pose", "poses_bounds.npy", "NaN")
def _(tmp, t):
    table = pose_table(3)
    table[1, 3] = np.nan
    return _n3dv_with_table(tmp, t, table)


@case("n3dv", "pb-inf", "an infinite far bound", "poses_bounds.npy", "infinite")
def _(tmp, t):
    table = pose_table(3)
    table[2, 16] = np.inf
    return _n3dv_with_table(tmp, t, table)


@case("n3dv", "pb-negative-near", "a negative near bound", "poses_bounds.npy", "row 0", "near=-1")
def _(tmp, t):
    table = pose_table(3)
    table[0, 15] = -1.0
    return _n3dv_with_table(tmp, t, table)


@case("n3dv", "pb-reversed-bounds", "near and far swapped", "poses_bounds.npy", "row 1", "near < far")
def _(tmp, t):
    table = pose_table(3)
    table[1, 15:] = [6.0, 1.0]
    return _n3dv_with_table(tmp, t, table)


@case("n3dv", "pb-zero-focal", "a focal length of 0", "poses_bounds.npy", "(H, W, focal)")
def _(tmp, t):
    table = pose_table(3)
    table[:, 14] = 0.0
    return _n3dv_with_table(tmp, t, table)


@case("n3dv", "pb-strings", "an array of strings", "poses_bounds.npy", "expected numbers")
def _(tmp, t):
    return _n3dv_with_table(tmp, t, np.full((3, 17), "x"))


@case("n3dv", "pb-pickle", "an object array (needs pickle)", "poses_bounds.npy", "not a readable .npy")
def _(tmp, t):
    return _n3dv_with_table(tmp, t, np.array([[{"a": 1}] * 17] * 3, dtype=object), allow_pickle=True)


@case("n3dv", "pb-zero-bytes", "a zero-byte poses_bounds.npy", "poses_bounds.npy", "not a readable .npy")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    (root / "poses_bounds.npy").write_bytes(b"")
    return _inspect(root)


@case("n3dv", "pb-directory", "poses_bounds.npy is a directory (unreadable as a file)", "poses_bounds.npy",
      "not a file")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    (root / "poses_bounds.npy").unlink()
    (root / "poses_bounds.npy").mkdir()
    return _inspect(root)


@case("n3dv", "pb-rows", "2 pose rows for 3 videos", "poses_bounds.npy", "2 pose rows", "3 videos")
def _(tmp, t):
    return _n3dv_with_table(tmp, t, pose_table(2))


# ---------------------------------------------------------------- videos
@case("video", "mp4-text", "a text file named cam01.mp4", "cam01.mp4", "unreadable video")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    (root / "cam01.mp4").write_text("this is not a video\n" * 20)
    return _inspect(root)


@case("video", "mp4-zero-bytes", "a zero-byte cam02.mp4", "cam02.mp4", "empty file (0 bytes)")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    (root / "cam02.mp4").write_bytes(b"")
    return _inspect(root)


@case("video", "mp4-directory", "cam01.mp4 is a directory", "cam01.mp4", "not a file")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    (root / "cam01.mp4").unlink()
    (root / "cam01.mp4").mkdir()
    return _inspect(root)


@case("video", "mp4-png-inside", "a PNG image renamed cam01.mp4", "cam01.mp4", "still image", "not a video")
def _(tmp, t):
    import imageio.v3 as iio

    root = t.copy("n3dv", tmp / "d")
    (root / "cam01.mp4").unlink()
    iio.imwrite(root / "cam01.png", np.zeros((12, 16, 3), np.uint8))
    (root / "cam01.png").rename(root / "cam01.mp4")
    return _inspect(root)


@case("video", "mp4-truncated", "cam01.mp4 cut at 40 % of its bytes", "cam01.mp4")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    t.write_video(root / "cam01.mp4", n=30, size=(64, 48))
    for c in (0, 2):
        t.write_video(root / f"cam{c:02d}.mp4", n=30, size=(64, 48), seed=c)
    table = pose_table(3)
    table[:, 4], table[:, 9] = 48, 64
    np.save(root / "poses_bounds.npy", table)
    data = (root / "cam01.mp4").read_bytes()
    (root / "cam01.mp4").write_bytes(data[: int(len(data) * 0.4)])
    return _inspect(root, "--build-cache")


@case("video", "fps-mismatch", "cam02.mp4 at 15 fps, the others at 30", "cam02.mp4", "15 fps", "one frame rate")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    t.write_video(root / "cam02.mp4", fps=15.0)
    return _inspect(root)


@case("video", "size-mismatch", "cam01.mp4 at 32x24, the others 16x12", "cam01.mp4", "32x24", "same size")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    t.write_video(root / "cam01.mp4", size=(32, 24))
    return _inspect(root)


@case("video", "short-test-camera", "the test camera has 1 frame, the others 6", "cam00.mp4", "test camera cam00",
      "data.test_camera=cam01")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    t.write_video(root / "cam00.mp4", n=1)
    return _train(tmp, root)


@case("video", "short-refused", "a 1-frame camera with data.short_cameras: refuse", "cam01.mp4 has 1 frame",
      "data.short_cameras: refuse")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    t.write_video(root / "cam01.mp4", n=1)
    return _train(tmp, root, "data.short_cameras=refuse")


@case("video", "too-few-frames", "3 frames per camera for Sync-K-Planes with time_res auto", "needs at least 5",
      "time_res >= 3")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    return _train(tmp, root, "data.max_frames=3", "kplanes.time_res=auto", "kplanes.proposal.time_res=auto")


# ---------------------------------------------------------------- offsets files
def _with_file(tmp, t, name, text, kind="n3dv"):
    root = t.copy(kind, tmp / "d")
    (root / name).write_text(text) if isinstance(text, str) else (root / name).write_bytes(text)
    return _inspect(root)


@case("offsets", "init-absurd", "offsets_init.json with an offset of 1e9 frames", "offsets_init.json",
      "offsets span 1e+09 frames")
def _(tmp, t):
    return _with_file(tmp, t, "offsets_init.json", json.dumps(
        {"offsets_frames": [0, 1e9, 2], "cameras": ["cam00", "cam01", "cam02"]}))


@case("offsets", "init-wrong-cameras", "offsets_init.json for cameras the dataset does not have",
      "offsets_init.json", "no offset for camera cam01")
def _(tmp, t):
    return _with_file(tmp, t, "offsets_init.json", json.dumps(
        {"offsets_frames": [0, 1, 2], "cameras": ["cam00", "camA", "camB"]}))


@case("offsets", "init-duplicate-cameras", "offsets_init.json naming one camera twice", "offsets_init.json",
      "cam00 is listed more than once")
def _(tmp, t):
    return _with_file(tmp, t, "offsets_init.json", json.dumps(
        {"offsets_frames": [0, 1, 2], "cameras": ["cam00", "cam00", "cam02"]}))


@case("offsets", "init-count", "offsets_init.json with 2 values for 3 cameras", "offsets_init.json", "2 values",
      "3 cameras")
def _(tmp, t):
    return _with_file(tmp, t, "offsets_init.json", json.dumps({"offsets_frames": [0, 1]}))


@case("offsets", "init-nan", "offsets_init.json holding NaN", "offsets_init.json", "NaN")
def _(tmp, t):
    return _with_file(tmp, t, "offsets_init.json", '{"offsets_frames": [0, NaN, 1]}')


@case("offsets", "init-strings", "offsets_init.json with strings for numbers", "offsets_init.json",
      "list of numbers")
def _(tmp, t):
    return _with_file(tmp, t, "offsets_init.json", json.dumps({"offsets_frames": ["0", "1", "2"]}))


@case("offsets", "init-zero-bytes", "a zero-byte offsets_init.json", "offsets_init.json", "malformed JSON")
def _(tmp, t):
    return _with_file(tmp, t, "offsets_init.json", "")


@case("offsets", "init-list", "offsets_init.json is a JSON list", "offsets_init.json", "expected an object")
def _(tmp, t):
    return _with_file(tmp, t, "offsets_init.json", "[0, 1, 2]")


@case("offsets", "gt-binary", "offsets_gt.json of random bytes", "offsets_gt.json")
def _(tmp, t):
    return _with_file(tmp, t, "offsets_gt.json", bytes(range(256)) * 4)


# ---------------------------------------------------------------- transforms.json
def _transforms(tmp, t, doc, kind="blender", *more):
    root = t.copy(kind, tmp / "d")
    (root / "transforms.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return _inspect(root, *more)


EYE = np.eye(4).tolist()


@case("blender", "tf-malformed", "transforms.json cut in the middle", "transforms.json", "malformed JSON")
def _(tmp, t):
    return _transforms(tmp, t, '{"camera_angle_x": 0.7, "frames": [')


@case("blender", "tf-zero-bytes", "a zero-byte transforms.json", "transforms.json", "malformed JSON")
def _(tmp, t):
    return _transforms(tmp, t, "")


@case("blender", "tf-not-utf8", "transforms.json in Latin-1 bytes", "transforms.json", "cannot read")
def _(tmp, t):
    root = t.copy("blender", tmp / "d")
    (root / "transforms.json").write_bytes(b'{"camera_angle_x": 0.7, "name": "\xe9t\xe9"}')
    return _inspect(root)


@case("blender", "tf-list", "transforms.json is a list", "transforms.json", "expected a JSON object")
def _(tmp, t):
    return _transforms(tmp, t, [1, 2])


@case("blender", "tf-no-fov", "no camera_angle_x", "transforms.json", "camera_angle_x")
def _(tmp, t):
    return _transforms(tmp, t, {"frames": [{"transform_matrix": EYE}] * 2})


@case("blender", "tf-fov-string", "camera_angle_x is a string", "transforms.json", "'camera_angle_x' must be")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": "wide", "frames": [{"transform_matrix": EYE}] * 2})


@case("blender", "tf-fov-zero", "camera_angle_x of 0", "transforms.json", "camera_angle_x", "between 0 and pi")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 0, "frames": [{"transform_matrix": EYE}] * 2})


@case("blender", "tf-fov-huge", "camera_angle_x of 4 radians (over 180 degrees)", "transforms.json",
      "between 0 and pi")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 4.0, "frames": [{"transform_matrix": EYE}] * 2})


@case("blender", "tf-frames-dict", "'frames' is an object", "transforms.json", "'frames'")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 0.7, "frames": {"0": EYE}})


@case("blender", "tf-frames-empty", "'frames' is empty", "transforms.json", "missing or empty 'frames'")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 0.7, "frames": []})


@case("blender", "tf-matrix-shape", "a 2x2 transform_matrix", "transforms.json", "frames[0].transform_matrix")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 0.7, "frames": [{"transform_matrix": [[1, 0], [0, 1]]}, {}]})


@case("blender", "tf-matrix-nan", "a NaN in a transform_matrix", "transforms.json", "frames[1].transform_matrix")
def _(tmp, t):
    return _transforms(tmp, t, '{"camera_angle_x": 0.7, "frames": [{"transform_matrix": %s}, '
                                '{"transform_matrix": [[NaN, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}'
                       % json.dumps(EYE))


@case("blender", "tf-count", "3 'frames' entries for 2 cameras", "transforms.json", "3 entries", "2 cameras")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 0.7, "frames": [{"transform_matrix": EYE}] * 3})


@case("blender", "tf-near-far", "near 6 and far 2 (reversed)", "transforms.json", "near < far")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 0.7, "near": 6, "far": 2, "frames": [{"transform_matrix": EYE}] * 2})


@case("blender", "tf-bbox", "scene_bbox of the wrong shape", "transforms.json", "scene_bbox")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 0.7, "scene_bbox": [1, 2, 3],
                                "frames": [{"transform_matrix": EYE}] * 2})


@case("blender", "tf-width-negative", "width -16", "transforms.json", "'width'", "positive")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 0.7, "width": -16, "height": 12,
                                "frames": [{"transform_matrix": EYE}] * 2})


@case("blender", "tf-fps-negative", "fps -30", "transforms.json", "'fps'", "positive")
def _(tmp, t):
    return _transforms(tmp, t, {"camera_angle_x": 0.7, "fps": -30, "frames": [{"transform_matrix": EYE}] * 2})


@case("blender", "png-broken", "a PNG frame of garbage bytes", "cam01/0003.png", "unreadable image")
def _(tmp, t):
    root = t.copy("png", tmp / "d")
    (root / "frames_1" / "cam01" / "0003.png").write_bytes(b"broken")
    return _inspect(root, "--build-cache")


@case("blender", "png-empty-camera", "a camera folder without PNGs", "cam01", "no PNG frames")
def _(tmp, t):
    root = t.copy("png", tmp / "d")
    for p in (root / "frames_1" / "cam01").iterdir():
        p.unlink()
    return _inspect(root)


@case("blender", "png-size-change", "one PNG frame of another size", "cam00", "8x8")
def _(tmp, t):
    import imageio.v3 as iio

    root = t.copy("png", tmp / "d")
    iio.imwrite(root / "frames_1" / "cam00" / "0002.png", np.zeros((8, 8, 4), np.uint8))
    return _inspect(root, "--build-cache")


# ---------------------------------------------------------------- configs
def _config(tmp, t, text, *more):
    root = t.copy("n3dv", tmp / "d")
    cfg = tmp / "bad.yaml"
    cfg.write_text(text) if isinstance(text, str) else None
    return ["train", str(cfg), "--data", str(root), "--out", str(tmp / "run"), "--no-eval", *RT, *more]


@case("config", "cfg-int-string", "train.steps: many", "train.steps", "positive integer")
def _(tmp, t):
    return _config(tmp, t, "train:\n  steps: many\n")


@case("config", "cfg-negative-lr", "train.lr: -1", "train.lr")
def _(tmp, t):
    return _config(tmp, t, "train:\n  lr: -1\n")


@case("config", "cfg-list-type", "kplanes.space_res: abc", "kplanes.space_res")
def _(tmp, t):
    return _config(tmp, t, "kplanes:\n  space_res: abc\n")


@case("config", "cfg-unknown-key", "a misspelt key train.stpes", "unknown key", "train.stpes")
def _(tmp, t):
    return _config(tmp, t, "train:\n  stpes: 10\n")


@case("config", "cfg-yaml-syntax", "a YAML syntax error", "bad.yaml")
def _(tmp, t):
    return _config(tmp, t, "train: {steps: 10\n")


@case("config", "cfg-top-list", "a config that is a YAML list", "bad.yaml")
def _(tmp, t):
    return _config(tmp, t, "- 1\n- 2\n")


@case("config", "cfg-directory", "the config file is a directory", "bad.yaml")
def _(tmp, t):
    args = _config(tmp, t, None)
    (tmp / "bad.yaml").mkdir()
    return args


@case("config", "cfg-section-scalar", "the train section is a number", "train")
def _(tmp, t):
    return _config(tmp, t, "train: 5\n")


@case("config", "cfg-override-inf", "-o train.lr=.inf", "train.lr")
def _(tmp, t):
    return _config(tmp, t, "name: x\n", "-o", "train.lr=.inf")


@case("config", "cfg-bbox-shape", "-o model.bbox=[[1, 2]]", "model.bbox")
def _(tmp, t):
    return _config(tmp, t, "name: x\n", "-o", "model.bbox=[[1, 2]]")


@case("config", "cfg-short-cameras", "data.short_cameras: sometimes", "data.short_cameras", "drop")
def _(tmp, t):
    return _config(tmp, t, "data:\n  short_cameras: sometimes\n")


@case("config", "cfg-base-missing", "base: names a file that does not exist", "nowhere.yaml")
def _(tmp, t):
    return _config(tmp, t, "base: nowhere.yaml\n")


@case("config", "cfg-time-res-2", "kplanes.time_res: 2 with time smoothness on", "time_res >= 3", "got 2")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    return _train(tmp, root, "kplanes.time_res=2")


# ---------------------------------------------------------------- run folders
def _run_folder(tmp, t):
    """A run folder (on a copy of the n3dv template) with config.yaml and run.json but nothing trained."""
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.run_folder import RunFolder

    cfg = load_config(config_file(tmp, []))
    return RunFolder.create(tmp / "run", cfg, t.copy("n3dv", tmp / "d")).path


@case("run", "run-json-corrupt", "run.json of garbage", "run.json", "corrupt run metadata")
def _(tmp, t):
    run = _run_folder(tmp, t)
    (run / "run.json").write_text("{{{")
    return ["eval", str(run), *RT]


@case("run", "run-config-corrupt", "config.yaml of the run is not YAML", "config.yaml")
def _(tmp, t):
    run = _run_folder(tmp, t)
    (run / "config.yaml").write_text("train: [\n")
    return ["eval", str(run), *RT]


@case("run", "run-only-broken-checkpoints", "every checkpoint truncated", "no readable checkpoint")
def _(tmp, t):
    run = _run_folder(tmp, t)
    (run / "checkpoints").mkdir()
    for s in (10, 20):
        (run / "checkpoints" / f"step-{s:08d}.npz").write_bytes(b"PK\x03\x04 truncated")
    return ["eval", str(run), *RT]


@case("run", "run-dataset-gone", "the run's dataset was deleted", "is not there any more")
def _(tmp, t):
    run = _run_folder(tmp, t)
    doc = json.loads((run / "run.json").read_text())
    doc["data"] = str(tmp / "deleted")
    (run / "run.json").write_text(json.dumps(doc))
    from taichi_syncnerf.checkpoint import write_checkpoint

    write_checkpoint(run / "checkpoints" / "step-00000010.npz", 10, {}, {})
    return ["render", str(run), *RT]


@case("run", "run-lock-other-host", "a lock held by a process on another host", "locked by process",
      "other-host")
def _(tmp, t):
    run = _run_folder(tmp, t)
    (run / ".lock").write_text(json.dumps({"pid": 4242, "host": "other-host", "command": "train"}))
    return ["eval", str(run), *RT]


# ---------------------------------------------------------------- capture
@case("capture", "prepare-not-video", "prepare: a text file named b.mp4 among the videos", "b.mp4",
      "not a readable video")
def _(tmp, t):
    import shutil

    vids = tmp / "videos"
    vids.mkdir()
    shutil.copy(t.video, vids / "a.mp4")
    (vids / "b.mp4").write_text("not a video")
    return ["prepare", str(vids), str(tmp / "out"), "--quiet"]


@case("capture", "prepare-zero-bytes", "prepare: a zero-byte c.mov", "c.mov")
def _(tmp, t):
    import shutil

    vids = tmp / "videos"
    vids.mkdir()
    shutil.copy(t.video, vids / "a.mp4")
    shutil.copy(t.video, vids / "b.mp4")
    (vids / "c.mov").write_bytes(b"")
    return ["prepare", str(vids), str(tmp / "out"), "--quiet"]


@case("capture", "sync-estimate-broken-poses", "sync-estimate on a dataset whose poses hold NaN",
      "poses_bounds.npy", "NaN")
def _(tmp, t):
    root = t.copy("n3dv", tmp / "d")
    table = pose_table(3)
    table[0, 0] = np.nan
    np.save(root / "poses_bounds.npy", table)
    return ["sync-estimate", str(root), "--quiet"]


@case("capture", "sync-estimate-png-audio", "sync-estimate --sync audio on PNG frames", "PNG frames", "no sound")
def _(tmp, t):
    root = t.copy("png", tmp / "d")
    return ["sync-estimate", str(root), "--sync", "audio", "--quiet"]


def cases(group: str | None = None) -> list[Case]:
    return [c for c in CASES if group is None or c.group == group]
