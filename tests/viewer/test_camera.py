"""The browser camera becomes the project's rays exactly like a dataset camera."""
import numpy as np
import pytest

from taichi_syncnerf.data.cameras import Intrinsics, look_at
from taichi_syncnerf.viewer.camera import (c2w_from_viser, camera_fov, matrix_to_quat, quat_to_matrix,
                                           view_intrinsics, view_rays, viser_pose)


def random_rotation(rng):
    q = rng.normal(size=4)
    return quat_to_matrix(q / np.linalg.norm(q))


def test_quaternion_round_trip(rng):
    for _ in range(50):
        R = random_rotation(rng)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-12)
    # the four branches of Shepperd's method (trace > 0, and each diagonal entry largest)
    for R in (np.eye(3), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])):
        np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-12)


def test_viser_pose_is_opencv_axes_of_the_opengl_camera(rng):
    c2w = look_at(np.array([1.0, 2.0, 3.0]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
    wxyz, pos = viser_pose(c2w)
    R_cv = quat_to_matrix(wxyz)
    # viser: +z looks forward, +y points down; OpenGL: -z looks forward, +y up
    np.testing.assert_allclose(R_cv[:, 2], -c2w[:, 2], atol=1e-12)
    np.testing.assert_allclose(R_cv[:, 1], -c2w[:, 1], atol=1e-12)
    np.testing.assert_allclose(R_cv[:, 0], c2w[:, 0], atol=1e-12)
    np.testing.assert_allclose(pos, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(c2w_from_viser(wxyz, pos), c2w, atol=1e-12)


def test_view_intrinsics_match_a_dataset_camera():
    intr = Intrinsics.from_fov(0.9, 64, 48)
    fov, aspect = camera_fov(intr)
    v = view_intrinsics(fov, aspect, 48)
    assert (v.width, v.height) == (64, 48)
    np.testing.assert_allclose([v.fx, v.fy, v.cx, v.cy], [intr.fx, intr.fy, intr.cx, intr.cy], rtol=1e-12)
    half = view_intrinsics(fov, aspect, 24)        # a lower resolution sees the same frustum
    np.testing.assert_allclose([half.fx, half.fy, half.cx, half.cy], [intr.fx / 2, intr.fy / 2, 16, 12])


def _viewer_like_dataset_camera(source, cam):
    """The camera state viser would report with its camera on dataset camera ``cam``."""
    wxyz, pos = viser_pose(source.ds.c2w[cam])
    fov, aspect = camera_fov(source.ds.intrinsics[cam])
    return c2w_from_viser(wxyz, pos), view_intrinsics(fov, aspect, source.height)


def test_view_rays_equal_dataset_rays(tiny_run):
    from taichi_syncnerf.config import load_resolved
    from taichi_syncnerf.rays import RaySource

    run, scene = tiny_run
    source = RaySource.open(scene, load_resolved(run / "config.yaml"), progress=False)
    assert source.ndc
    offsets = np.array([0.0, 1.25, -0.5, 2.0])
    for cam in range(source.n_cameras):
        c2w, intr = _viewer_like_dataset_camera(source, cam)
        frame = 3.5
        rays, valid = view_rays(source, c2w, intr, frame + offsets[cam], cam, offsets)
        ref = source.image_rays(cam, frame)
        assert valid.all()
        for k in ("origins", "dirs", "view_dirs", "times"):
            np.testing.assert_allclose(rays[k], ref[k], rtol=0, atol=1e-12, err_msg=k)
        np.testing.assert_array_equal(rays["cams"], ref["cams"])


def test_ndc_view_looking_away_is_masked(tiny_run):
    from taichi_syncnerf.config import load_resolved
    from taichi_syncnerf.rays import RaySource

    run, scene = tiny_run
    source = RaySource.open(scene, load_resolved(run / "config.yaml"), progress=False)
    c2w = source.ds.c2w[0].copy()
    c2w[:, :3] = c2w[:, :3] @ np.diag([-1.0, 1.0, -1.0])      # turned round: looks along +z
    rays, valid = view_rays(source, c2w, view_intrinsics(0.8, 4 / 3, 12), 2.0, 0, np.zeros(4))
    assert not valid.any()
    assert np.isfinite(rays["origins"]).all() and np.isfinite(rays["dirs"]).all()


def test_viewer_render_equals_render_of_the_camera(kind_run):
    """Viewer camera on a training camera's pose and intrinsics: the image equals ``render``'s."""
    from taichi_syncnerf.evaluate import render_image

    rm = kind_run[1]
    src = rm.source
    learned = rm.offsets_frames()
    rm.model.offsets.set_frames([0.0, 1.3, -0.7, 2.1])     # offsets as large as a rig's can be
    offsets = rm.offsets_frames()
    try:
        for cam, frame in ((int(src.train_indices[1]), 4), (src.test_index, 7)):
            c2w, intr = _viewer_like_dataset_camera(src, cam)
            ref = render_image(rm.model, src.image_rays(cam, frame), src.height, src.width)
            for ref_cam in (cam, src.test_index, int(src.train_indices[0])):   # any camera's clock
                img = rm.render(c2w, intr, frame + offsets[cam], ref_cam=ref_cam)
                assert img.shape == ref.shape
                np.testing.assert_allclose(img, ref, rtol=0, atol=1e-6)
            # another scene time gives another image (the time reaches the model)
            other = rm.render(c2w, intr, frame + offsets[cam] + 3.0, ref_cam=cam)
            assert np.abs(other - ref).max() > 1e-3
            # the abandoned render: asked between batches of rays
            assert rm.render(c2w, intr, frame, cancel=lambda: True) is None
            np.testing.assert_array_equal(rm.render(c2w, intr, frame, cancel=lambda: False),
                                          rm.render(c2w, intr, frame))
    finally:
        rm.model.offsets.set_frames(learned)


@pytest.mark.parametrize("height", [12, 48])
def test_other_resolution_renders(kind_run, height):
    rm = kind_run[1]
    c2w, _ = _viewer_like_dataset_camera(rm.source, 1)
    fov, aspect = camera_fov(rm.source.ds.intrinsics[1])
    img = rm.render(c2w, view_intrinsics(fov, aspect, height), 5.0)
    assert img.shape == (height, round(height * aspect), 3)
    assert np.isfinite(img).all() and img.std() > 0.01
