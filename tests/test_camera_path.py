"""camera_path.py: interpolation of keyframes, world coordinates, and the camera_path.json file (pure numpy)."""
import json

import numpy as np
import pytest

from taichi_syncnerf.camera_path import (CameraPath, Keyframe, entry_intrinsics, interpolate, keyframes_in_model,
                                         make_path, matrix_to_quat, quat_to_matrix, read_path, slerp, to_dataset,
                                         to_model, write_path)
from taichi_syncnerf.data.cameras import look_at
from taichi_syncnerf.errors import UserError


def rotation_angle(A, B) -> float:
    return float(np.arccos(np.clip((np.trace(A.T @ B) - 1.0) / 2.0, -1.0, 1.0)))


def key(pos, target, time, fov=50.0):
    return Keyframe(look_at(np.asarray(pos, float), np.asarray(target, float), np.array([0.0, 1.0, 0.0])), fov, time)


def test_slerp_is_constant_speed_on_the_shorter_arc():
    R0 = np.eye(3)
    a = np.radians(120.0)
    R1 = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    q0, q1 = matrix_to_quat(R0), matrix_to_quat(R1)
    for u in (0.0, 0.25, 0.5, 1.0):
        R = quat_to_matrix(slerp(q0, q1, u))
        assert rotation_angle(R0, R) == pytest.approx(u * a, abs=1e-9)
    # the same rotation written with the opposite sign goes the short way too
    assert rotation_angle(R0, quat_to_matrix(slerp(q0, -q1, 0.5))) == pytest.approx(0.5 * a, abs=1e-9)


def test_interpolation_passes_through_the_keyframes():
    keys = [key([0, 0, 4], [0, 0, 0], 0.0), key([3, 1, 3], [0, 0, 0], 10.0, 40.0), key([4, 0, 0], [0, 0, 0], 4.0)]
    for smooth in ("spline", "linear"):
        c2w, fov, time = interpolate(keys, 9, smooth)
        assert c2w.shape == (9, 3, 4)
        for j, k in zip((0, 4, 8), keys):                 # frames 0, 4 and 8 are the keyframes
            np.testing.assert_allclose(c2w[j], k.c2w, atol=1e-9)
            assert fov[j] == pytest.approx(k.fov) and time[j] == pytest.approx(k.time)
        for R in c2w[:, :, :3]:
            np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    # time is free of the camera: linear between keyframes, backwards where they go back (reverse)
    _, _, time = interpolate(keys, 9, "linear")
    np.testing.assert_allclose(time, [0, 2.5, 5, 7.5, 10, 8.5, 7, 5.5, 4])
    lin, _, _ = interpolate(keys, 9, "linear")
    spl, _, _ = interpolate(keys, 9, "spline")
    np.testing.assert_allclose(lin[2, :, 3], [1.5, 0.5, 3.5])              # the straight line's midpoint
    assert np.linalg.norm(spl[2, :, 3] - lin[2, :, 3]) > 1e-3               # the spline curves


def test_bullet_time_and_a_single_keyframe():
    keys = [key([0, 0, 4], [0, 0, 0], 5.0), key([4, 0, 0], [0, 0, 0], 5.0)]
    c2w, _, time = interpolate(keys, 30)
    np.testing.assert_allclose(time, 5.0)                                  # the scene frozen
    assert np.linalg.norm(c2w[0, :, 3] - c2w[-1, :, 3]) > 5.0              # the camera moves
    one, fov, t = interpolate(keys[:1], 4)
    assert one.shape == (4, 3, 4) and np.allclose(one, keys[0].c2w) and np.allclose(t, 5.0)
    with pytest.raises(ValueError):
        interpolate([], 4)


def test_loop_returns_to_the_first_keyframe():
    keys = [key([0, 0, 4], [0, 0, 0], 0.0), key([4, 0, 0], [0, 0, 0], 4.0), key([0, 0, -4], [0, 0, 0], 8.0)]
    c2w, _, time = interpolate(keys, 12, "spline", loop=True)
    np.testing.assert_allclose(c2w[0], keys[0].c2w, atol=1e-9)
    np.testing.assert_allclose(c2w[4], keys[1].c2w, atol=1e-9)
    np.testing.assert_allclose(c2w[8], keys[2].c2w, atol=1e-9)
    assert time[10] == pytest.approx(4.0)           # back from 8 towards 0: 8 + (0 - 8) * 2/4
    # four keyframes round a circle: the step from the last frame back to the first is like the others
    ring = [key([4 * np.cos(a), 0, 4 * np.sin(a)], [0, 0, 0], 0.0) for a in np.arange(4) * np.pi / 2]
    c2w, _, _ = interpolate(ring, 16, "spline", loop=True)
    steps = np.linalg.norm(np.diff(np.concatenate([c2w[:, :, 3], c2w[:1, :, 3]]), axis=0), axis=1)
    np.testing.assert_allclose(steps, np.roll(steps, 4), rtol=1e-9)      # every quarter alike, the wrap too


def similarity(rng, scale):
    R = quat_to_matrix(rng.normal(size=4))
    W = np.eye(4)
    W[:3, :3] = R / scale
    W[:3, 3] = rng.normal(size=3)
    return W


def test_world_conversion_round_trip(rng):
    W = similarity(rng, 7.5)
    c2w = look_at(np.array([1.0, 2.0, 3.0]), np.zeros(3), np.array([0.0, 1.0, 0.0]))
    ds = to_dataset(c2w, W)
    assert ds.shape == (4, 4) and np.allclose(ds[3], [0, 0, 0, 1])
    np.testing.assert_allclose(ds[:3, :3].T @ ds[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(to_model(ds, W), c2w, atol=1e-12)
    # the centre moves as a point does; the viewing direction turns with the rotation only
    centre = np.linalg.inv(W) @ np.r_[c2w[:, 3], 1.0]
    np.testing.assert_allclose(ds[:3, 3], centre[:3], atol=1e-12)
    np.testing.assert_allclose(ds[:3, 2], np.linalg.inv(W[:3, :3] * 7.5) @ c2w[:, 2], atol=1e-12)


def test_file_round_trip_and_layout(tmp_path, rng):
    W = similarity(rng, 3.0)
    keys = [key([0, 0, 4], [0, 0, 0], 0.0), key([3, 1, 3], [0, 0, 0], 2.5, 35.0)]
    cp = make_path(keys, W, width=64, height=48, fps=10.0, seconds=1.5)
    f = write_path(tmp_path / "camera_path.json", cp)
    doc = json.loads(f.read_text())
    assert doc["camera_type"] == "perspective" and doc["render_width"] == 64 and doc["render_height"] == 48
    assert doc["fps"] == 10.0 and doc["seconds"] == 1.5 and len(doc["camera_path"]) == 15
    e = doc["camera_path"][0]
    assert set(e) == {"camera_to_world", "fov", "aspect", "time"} and len(e["camera_to_world"]) == 16
    assert e["aspect"] == pytest.approx(64 / 48) and e["fov"] == 50.0
    m = np.asarray(e["camera_to_world"]).reshape(4, 4)                  # row-major, dataset world
    np.testing.assert_allclose(to_model(m, W), keys[0].c2w, atol=1e-12)
    back = read_path(f)
    assert (back.width, back.height, back.fps, len(back)) == (64, 48, 10.0, 15)
    np.testing.assert_allclose(back.c2w, cp.c2w)
    np.testing.assert_allclose(back.time, cp.time)
    model_keys = keyframes_in_model(back, W)
    for a, b in zip(model_keys, keys):
        np.testing.assert_allclose(a.c2w, b.c2w, atol=1e-12)
        assert (a.fov, a.time) == (b.fov, b.time)
    # a file without our keyframes (nerfstudio's): keyframes are taken from its entries
    del doc["keyframes_syncnerf"]
    (tmp_path / "ns.json").write_text(json.dumps(doc))
    assert len(keyframes_in_model(read_path(tmp_path / "ns.json"), W, most=4)) == 4


def test_entry_intrinsics_are_nerfstudios():
    intr = entry_intrinsics(90.0, 200, 100)
    assert (intr.width, intr.height, intr.cx, intr.cy) == (200, 100, 100.0, 50.0)
    assert intr.fx == intr.fy == pytest.approx(50.0)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("render_width"), "missing 'render_width'"),
    (lambda d: d.update(camera_path=[]), "must be a non-empty list"),
    (lambda d: d["camera_path"][1].update(camera_to_world=[1, 2]), r"camera_path\[1\].camera_to_world must be 16"),
    (lambda d: d["camera_path"][0].update(camera_to_world=[2.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]),
     "not a rotation"),
    (lambda d: d["camera_path"][0].update(fov="wide"), r"camera_path\[0\].fov must be a finite number"),
    (lambda d: d.update(camera_type="fisheye"), "only 'perspective'"),
])
def test_bad_files_are_one_line_errors(tmp_path, change, message):
    doc = CameraPath(np.stack([np.eye(4)] * 2), np.array([50.0, 50.0]), np.zeros(2), 8, 6, 4.0).to_json()
    change(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=message):
        read_path(p)
    p.write_text("{not json")
    with pytest.raises(UserError, match="malformed JSON at line 1"):
        read_path(p)
