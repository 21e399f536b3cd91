"""Camera model (intrinsics, rays, NDC, paths) and LLFF pose processing."""
import numpy as np
import pytest

from taichi_syncnerf.data import llff
from taichi_syncnerf.data.cameras import (Intrinsics, camera_directions, generate_rays, look_at,
                                          ndc_rays, orbit_path, pixel_grid)


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def project(intr, c2w, pts):
    """World points (N, 3) -> continuous image coordinates (N, 2), pixel edges at integers."""
    pc = (pts - c2w[:, 3]) @ c2w[:, :3]
    return np.stack([intr.cx + intr.fx * pc[:, 0] / -pc[:, 2],
                     intr.cy - intr.fy * pc[:, 1] / -pc[:, 2]], -1)


def assert_rotation(m, atol=1e-10):
    r = m[:3, :3]
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=atol)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=atol)


def test_intrinsics_from_fov_and_resize():
    k = Intrinsics.from_fov(0.8, width=100, height=60)
    assert k.fx == pytest.approx(50.0 / np.tan(0.4)) and k.fy == k.fx
    assert (k.cx, k.cy) == (50.0, 30.0)
    half = k.downsampled(2)
    assert (half.width, half.height) == (50, 30)
    assert half.fx == pytest.approx(k.fx / 2) and half.cx == pytest.approx(25.0)
    odd = Intrinsics(40.0, 41.0, 20.5, 15.25, 41, 31).downsampled(2)  # 41x31 -> 20x15
    assert odd.fx == pytest.approx(40.0 * 20 / 41) and odd.fy == pytest.approx(41.0 * 15 / 31)
    with pytest.raises(ValueError):
        k.downsampled(0)


def test_resize_scales_projections(rng):
    k = Intrinsics(70.0, 65.0, 33.0, 21.0, 64, 48)
    c2w = np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], 1)
    pts = c2w[:, 3] + (rng.normal(size=(20, 3)) * 0.3 - [0, 0, 3.0]) @ c2w[:, :3].T
    uv = project(k, c2w, pts)
    uv2 = project(k.resized(40, 36), c2w, pts)
    np.testing.assert_allclose(uv2, uv * [40 / 64, 36 / 48], rtol=1e-12)


def test_rays_pass_through_projected_points(rng):
    k = Intrinsics(80.0, 75.0, 31.0, 25.0, 64, 48)
    c2w = np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], 1)
    pts = c2w[:, 3] + (rng.normal(size=(50, 3)) * [0.5, 0.5, 0.2] - [0, 0, 4.0]) @ c2w[:, :3].T
    uv = project(k, c2w, pts)
    o, d = generate_rays(k, c2w, uv[:, 0] - 0.5, uv[:, 1] - 0.5)  # centre of "pixel" u-0.5 is u
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(o, np.broadcast_to(c2w[:, 3], o.shape))
    to_pt = pts - o
    np.testing.assert_allclose(np.cross(d, to_pt), 0.0, atol=1e-10)
    assert np.all(np.sum(d * to_pt, axis=1) > 0)


def test_pixel_centres_and_raw_directions():
    k = Intrinsics(10.0, 10.0, 2.0, 1.0, 4, 2)
    d = camera_directions(k, np.array([1, 0]), np.array([0, 1]))
    np.testing.assert_allclose(d, [[-0.05, 0.05, -1.0], [-0.15, -0.05, -1.0]])
    _, raw = generate_rays(k, np.eye(4)[:3], [1], [0], normalize=False)
    np.testing.assert_allclose(raw, [[-0.05, 0.05, -1.0]])


def test_per_ray_cameras_match_single_camera(rng):
    k = Intrinsics(30.0, 30.0, 8.0, 6.0, 16, 12)
    c2ws = np.stack([np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], 1)
                     for _ in range(3)])
    cam = rng.integers(0, 3, 40)
    x, y = rng.integers(0, 16, 40), rng.integers(0, 12, 40)
    o, d = generate_rays(k, c2ws[cam], x, y)
    for c in range(3):
        sel = cam == c
        o1, d1 = generate_rays(k, c2ws[c], x[sel], y[sel])
        np.testing.assert_allclose(o[sel], o1)
        np.testing.assert_allclose(d[sel], d1)


def ndc_point(k, near, p):
    return np.stack([-2 * k.fx / k.width * p[:, 0] / p[:, 2], -2 * k.fy / k.height * p[:, 1] / p[:, 2],
                     1 + 2 * near / p[:, 2]], -1)


def test_ndc_rays_map_world_points_onto_ndc_rays(rng):
    k = Intrinsics(50.0, 48.0, 20.0, 15.0, 40, 30)
    c2w = np.concatenate([np.eye(3), [[0.1], [-0.05], [0.2]]], 1)
    x, y = rng.integers(0, 40, 30), rng.integers(0, 30, 30)
    o, d = generate_rays(k, c2w, x, y, normalize=False)
    on, dn = ndc_rays(k, 1.0, o, d)
    np.testing.assert_allclose(on[:, 2], -1.0)
    np.testing.assert_allclose(np.linalg.norm(dn, axis=1), 1.0)
    t_near = (-1.0 - o[:, 2]) / d[:, 2]
    np.testing.assert_allclose(on, ndc_point(k, 1.0, o + t_near[:, None] * d), atol=1e-12)
    zs = []
    for t in (1.5, 3.0, 20.0):
        q = ndc_point(k, 1.0, o + (t_near + t)[:, None] * d)
        np.testing.assert_allclose(np.cross(q - on, dn), 0.0, atol=1e-10)
        zs.append(q[:, 2])
    assert np.all(np.diff(np.stack(zs), axis=0) > 0) and np.all(zs[-1] < 1.0)
    _, draw = ndc_rays(k, 1.0, o, d, normalize=False)
    far = o + (t_near + 1e9)[:, None] * d
    np.testing.assert_allclose(on + draw, ndc_point(k, 1.0, far), atol=1e-6)  # t = 1 reaches z' = 1


def test_pixel_grid_row_major():
    x, y = pixel_grid(3, 2)
    np.testing.assert_array_equal(x, [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1])


def test_look_at_and_orbit():
    m = look_at([0.0, -4.0, 1.0], [0.0, 0.0, 0.0], np.array([0.0, 0.0, 1.0]))
    assert_rotation(m)
    fwd = -m[:, 2]
    np.testing.assert_allclose(fwd, -m[:, 3] / np.linalg.norm(m[:, 3]))
    cams = np.stack([look_at([4 * np.cos(a), 4 * np.sin(a), 2.0], [0, 0, 0], np.array([0, 0, 1.0]))
                     for a in np.linspace(0, 3, 5)])
    path = orbit_path(cams, 12)
    assert path.shape == (12, 3, 4)
    for p in path:
        assert_rotation(p)
        assert np.linalg.norm(p[:2, 3]) == pytest.approx(4.0) and p[2, 3] == pytest.approx(2.0)
        np.testing.assert_allclose(np.cross(-p[:, 2], -p[:, 3]), 0.0, atol=1e-12)


# ----------------------------------------------------------------- LLFF

def llff_rows(c2w_gl, bounds, hwf):
    """Write OpenGL poses as poses_bounds rows: columns [down, right, back, centre, hwf]."""
    rows = []
    for m, b in zip(c2w_gl, bounds):
        mat = np.stack([-m[:, 1], m[:, 0], m[:, 2], m[:, 3], np.asarray(hwf, float)], 1)
        rows.append(np.concatenate([mat.ravel(), b]))
    return np.array(rows)


def test_axis_swap_inverts_the_llff_columns(rng):
    gl = np.stack([np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], 1) for _ in range(4)])
    rows = llff_rows(gl, np.ones((4, 2)) * [1, 2], (48, 64, 50))
    np.testing.assert_allclose(llff.llff_to_opengl(rows[:, :15].reshape(-1, 3, 5)[:, :, :4]), gl)


def test_load_poses_bounds_recentres_and_scales(tmp_path, rng):
    rot = random_rotation(rng)
    offsets = np.array([[-1, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0]], float) * 0.5
    centre = np.array([3.0, -2.0, 1.0])
    gl = np.stack([np.concatenate([rot, (centre + rot @ o)[:, None]], 1) for o in offsets])
    bounds = np.array([[2.0, 9.0], [2.5, 8.0], [3.0, 10.0], [2.2, 7.0]])
    np.save(tmp_path / "poses_bounds.npy", llff_rows(gl, bounds, (48, 64, 55.0)))
    res = llff.load_poses_bounds(tmp_path / "poses_bounds.npy", near_scaling=0.8)
    scale = 2.0 * 0.8
    assert res.scale == pytest.approx(scale)
    np.testing.assert_allclose(res.bounds, bounds / scale)
    assert res.bounds.min() == pytest.approx(1 / 0.8)
    for m, o in zip(res.c2w, offsets):  # all rotations equal the average -> identity after recentring
        np.testing.assert_allclose(m[:, :3], np.eye(3), atol=1e-12)
        np.testing.assert_allclose(m[:, 3], o / scale, atol=1e-12)
    np.testing.assert_allclose(res.pose_avg[:3, :3], rot, atol=1e-12)
    k = res.intrinsics
    assert (k.width, k.height, k.fx, k.cx, k.cy) == (64, 48, 55.0, 32.0, 24.0)


def test_recentred_average_is_identity(rng):
    gl = []
    for _ in range(6):
        r = random_rotation(rng) if not gl else gl[0][:, :3] @ _small_rotation(rng)
        gl.append(np.concatenate([r, rng.normal(size=(3, 1))], 1))
    out, avg = llff.recenter_poses(np.stack(gl))
    np.testing.assert_allclose(llff.average_pose(out), np.eye(4)[:3], atol=1e-10)
    np.testing.assert_allclose((avg @ np.vstack([out[0], [0, 0, 0, 1]]))[:3], gl[0], atol=1e-12)


def _small_rotation(rng):
    a = rng.normal(size=3) * 0.1
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    q, r = np.linalg.qr(np.eye(3) + k)
    return q * np.sign(np.diag(r))


def test_spiral_path_is_proper_and_looks_at_focus():
    xs = np.linspace(-0.5, 0.5, 5)
    c2w = np.stack([np.concatenate([np.eye(3), [[x], [0.1 * x], [0.0]]], 1) for x in xs])
    bounds = np.tile([[1.2, 5.0]], (5, 1))
    path = llff.spiral_path(c2w, bounds, n_frames=16, dt=0.75, percentile=70)
    assert path.shape == (16, 3, 4)
    focal = 1.0 / (0.25 / 1.2 + 0.75 / 25.0)
    for p in path:
        assert_rotation(p)
        fwd = -p[:, 2]
        to_focus = np.array([0.0, 0.0, -focal]) - p[:, 3]
        np.testing.assert_allclose(np.cross(fwd, to_focus), 0.0, atol=1e-10)
        assert p[1, 1] > 0.9  # up stays up
    radii = np.percentile(np.abs(c2w[:, :, 3]), 70, axis=0)
    assert np.all(np.abs(path[:, :, 3]) <= radii + 1e-12)
