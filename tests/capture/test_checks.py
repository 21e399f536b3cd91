"""Degenerate reconstructions are refused with one line; alignment helpers recover a known map."""
import dataclasses

import numpy as np
import pytest

from taichi_syncnerf.capture.checks import align_rig, check_reconstruction, similarity_align
from taichi_syncnerf.capture.sfm import CameraResult, Reconstruction
from taichi_syncnerf.errors import DataError

W, H = 512, 384
GOOD_FOCAL = 0.5 * W / np.tan(np.radians(55.0) / 2)
NAMES = [f"v{k}.mp4" for k in range(6)]


def _rig(focal=GOOD_FOCAL, centres=None, n_points=400, spread=(0.0, 0.0), error=0.3):
    if centres is None:
        a = np.arange(6) * 2.4
        centres = np.stack([0.6 * np.cos(a), np.full(6, -3.0), 0.35 * np.sin(a)], 1)
    cams = [CameraResult(c2w=np.concatenate([np.eye(3), c[:, None]], 1), focal=focal,
                         frames_registered=2, reprojection_error=error,
                         depths=np.full(n_points, 5.0), centre_spread=spread[0],
                         rotation_spread_deg=spread[1]) for c in centres]
    return Reconstruction(cams, 1000, error, W, H)


def test_a_good_rig_passes():
    check_reconstruction(_rig(), NAMES)
    check_reconstruction(_rig(), NAMES, fov=55.0)


@pytest.mark.parametrize("rec, kwargs, needle", [
    (_rig(focal=0.5 * W / np.tan(np.radians(150.0) / 2)), {}, "field of view"),
    (_rig(focal=205.0), {"fov": 55.0}, "--fov"),
    (_rig(n_points=12), {}, "only 12 points"),
    (_rig(spread=(0.0, 3.0)), {}, "disagree on its pose"),
    (_rig(error=5.0), {}, "reprojection error"),
])
def test_degenerate_rigs_are_refused(rec, kwargs, needle):
    with pytest.raises(DataError, match="degenerate rig") as e:
        check_reconstruction(rec, NAMES, **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_cameras_collapsed_into_clusters_are_refused():
    centres = np.array([[0, 0, 0], [0.01, 0, 0], [1, 0, 0], [1.01, 0, 0], [0, 1, 0], [0.01, 1, 0.0]])
    with pytest.raises(DataError, match="collapsed onto one spot"):
        check_reconstruction(_rig(centres=centres), NAMES)


def test_focal_lengths_that_disagree_are_refused():
    rec = _rig()
    rec.cameras[3] = dataclasses.replace(rec.cameras[3], focal=GOOD_FOCAL * 1.6)
    with pytest.raises(DataError, match="focal lengths disagree"):
        check_reconstruction(rec, NAMES)


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_alignments_recover_a_known_similarity(rng):
    rot, s, t = _random_rotation(rng), 2.5, rng.normal(size=3)
    src = rng.normal(size=(7, 3))
    dst = s * src @ rot.T + t
    s1, r1, t1 = similarity_align(src, dst)
    np.testing.assert_allclose([s1], [s])
    np.testing.assert_allclose(r1, rot, atol=1e-10)
    np.testing.assert_allclose(t1, t, atol=1e-10)
    r_src = np.stack([_random_rotation(rng) for _ in range(7)])
    s2, r2, t2 = align_rig(r_src, src, rot @ r_src, dst)
    np.testing.assert_allclose([s2], [s])
    np.testing.assert_allclose(r2, rot, atol=1e-10)
    np.testing.assert_allclose(t2, t, atol=1e-10)
