"""poses_bounds.npy rows written by prepare read back as the same cameras."""
import numpy as np

from taichi_syncnerf.capture.layout import llff_row, write_poses_bounds
from taichi_syncnerf.data import llff


def test_rows_read_back_as_the_same_cameras(tmp_path, rng):
    rows, c2w_cv, depths = [], [], []
    for k in range(3):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        m = np.concatenate([q, rng.normal(size=(3, 1))], 1)
        c2w_cv.append(m)
        depths.append(rng.uniform(2.0, 9.0, size=500))
        rows.append(llff_row(m, 384, 512, 450.0 + k, np.append(depths[-1], [-1.0, 0.0])))
    write_poses_bounds(tmp_path / "poses_bounds.npy", rows)
    arr = llff.read_poses_bounds(tmp_path / "poses_bounds.npy")
    gl = llff.llff_to_opengl(arr[:, :15].reshape(-1, 3, 5)[:, :, :4])
    # OpenGL axes are OpenCV's with y and z flipped
    flip = np.diag([1.0, -1.0, -1.0])
    for k in range(3):
        np.testing.assert_allclose(gl[k, :, :3], c2w_cv[k][:, :3] @ flip, atol=1e-12)
        np.testing.assert_allclose(gl[k, :, 3], c2w_cv[k][:, 3], atol=1e-12)
    np.testing.assert_allclose(arr[:, 14], [450.0, 451.0, 452.0])   # (H, W, focal) column
    # near/far: 0.1 / 99.9 percentiles of the positive depths, widened by 20 %
    np.testing.assert_allclose(arr[:, 15], [0.8 * np.percentile(d, 0.1) for d in depths])
    np.testing.assert_allclose(arr[:, 16], [1.2 * np.percentile(d, 99.9) for d in depths])
    np.testing.assert_array_equal(arr[:, [4, 9]], [[384.0, 512.0]] * 3)
