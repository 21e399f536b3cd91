"""Epipolar synchronisation: the fundamental matrix, and the lag of a moving ball seen by two
cameras, against the truth."""
import numpy as np

from taichi_syncnerf.capture.visual_sync import (foreground_masks, fundamental, intrinsic_matrix,
                                                 pair_lag)


def _camera(centre, target=(0.0, 0.0, 5.0)):
    """OpenCV camera-to-world (3, 4) at ``centre`` looking at ``target`` (y down)."""
    z = np.asarray(target, float) - centre
    z /= np.linalg.norm(z)
    x = np.cross([0.0, -1.0, 0.0], z)
    x /= np.linalg.norm(x)
    return np.concatenate([np.stack([x, np.cross(z, x), z], axis=1), np.asarray(centre, float)[:, None]], 1)


def _project(k, c2w, p):
    r, c = c2w[:, :3], c2w[:, 3]
    q = k @ (r.T @ (p - c))
    return q[:2] / q[2]


def test_fundamental_matrix_relates_projections(rng):
    k = intrinsic_matrix(100.0, 160, 120)
    a, b = _camera(np.array([0.0, 0.0, 0.0])), _camera(np.array([0.8, -0.3, 0.1]))
    f = fundamental(k, a, k, b)
    for p in rng.uniform([-1, -1, 4], [1, 1, 6], size=(10, 3)):
        xa, xb = np.append(_project(k, a, p), 1.0), np.append(_project(k, b, p), 1.0)
        line = f @ xa
        assert abs(xb @ line) / np.linalg.norm(line[:2]) < 1e-9   # pixel distance to the line


def _ball_video(k, c2w, times, w=160, h=120, radius=6.0):
    """Grey frames (F, h, w) of a bright ball moving on a 3-D curve over a dark, noisy wall."""
    rng = np.random.default_rng(0)
    wall = rng.uniform(20, 60, size=(h, w)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    frames = []
    for t in times:
        p = np.array([1.2 * np.sin(0.9 * t), 0.8 * np.cos(1.3 * t), 5.0 + 0.5 * np.sin(0.5 * t)])
        u, v = _project(k, c2w, p)
        img = wall.copy()
        img[(xx - u) ** 2 + (yy - v) ** 2 < radius ** 2] = 220.0
        frames.append(img)
    return np.stack(frames)


def test_pair_lag_finds_the_offset_of_a_moving_ball():
    k = intrinsic_matrix(110.0, 160, 120)
    a, b = _camera(np.array([0.0, 0.0, 0.0])), _camera(np.array([0.9, 0.4, 0.0]))
    fps, frames = 10.0, 40
    off_a, off_b = 0.0, 6.0            # frame f of camera k shows scene time f + off_k
    ma = foreground_masks(_ball_video(k, a, (np.arange(frames) + off_a) / fps))
    mb = foreground_masks(_ball_video(k, b, (np.arange(frames) + off_b) / fps))
    d, prominence = pair_lag(ma, mb, fundamental(k, a, k, b), max_lag=15)
    assert abs(d - (off_a - off_b)) < 0.5, d
    assert prominence > 1.5
    # frames of camera b out of order: no time shift explains them (the test can fail)
    shuffled = mb[np.random.default_rng(1).permutation(frames)]
    d_bad, prominence_bad = pair_lag(ma, shuffled, fundamental(k, a, k, b), max_lag=15)
    assert abs(d_bad - (off_a - off_b)) > 0.5 or prominence_bad < prominence / 2
