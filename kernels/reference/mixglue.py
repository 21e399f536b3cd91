"""Float64 numpy twins of kernels/mixglue.py (only the ``n`` touched rows, as arrays)."""
import numpy as np


def sum_activate(feat, scale, relu):
    """(N,) ``scale * relu(sum_m feat[i, m])`` (``relu``) or ``scale * sum_m feat[i, m]``."""
    a = np.asarray(feat, np.float64).sum(1)
    return scale * (np.maximum(a, 0.0) if relu else a)


def sum_activate_backward(feat, out_grad, scale, relu):
    """d (sum out_grad * sum_activate) / d feat (N, M); 0 where the pre-activation sum is <= 0."""
    feat = np.asarray(feat, np.float64)
    g = scale * np.asarray(out_grad, np.float64)
    if relu:
        g = np.where(feat.sum(1) > 0.0, g, 0.0)
    return np.repeat(g[:, None], feat.shape[1], 1)


def unit(d):
    """Rows of ``d`` (N, 3) divided by ``max(|d|, 1e-12)``."""
    d = np.asarray(d, np.float64)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def concat_dirs(feat, dirs, ray_of):
    """(N, M + 3) ``[feat[i], unit(dirs[ray_of[i]])]``."""
    return np.concatenate([np.asarray(feat, np.float64), unit(np.asarray(dirs)[ray_of, :3])], 1)


def concat_dirs_backward(out_grad, M):
    """d / d feat: the first ``M`` columns of the output gradient (directions are not learnt)."""
    return np.asarray(out_grad, np.float64)[:, :M].copy()


def sigmoid3(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def sigmoid3_backward(x, out_grad):
    """d (sum out_grad * sigmoid3(x)) / dx."""
    s = sigmoid3(x)
    return np.asarray(out_grad, np.float64) * s * (1.0 - s)


def box_points(origins, dirs, t0, t1, ray_id, lo, hi):
    """(N, 3) sample midpoints ``o + d (t0 + t1) / 2`` mapped from the box ``lo``-``hi`` to [-1, 1]."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    tm = 0.5 * (np.asarray(t0, np.float64) + np.asarray(t1, np.float64))
    p = np.asarray(origins, np.float64)[ray_id] + np.asarray(dirs, np.float64)[ray_id] * tm[:, None]
    return (p - lo) / (hi - lo) * 2.0 - 1.0


def gather_rows(src, index, M):
    return np.asarray(src)[index, :M].copy()


def gather_scalar(src, index):
    return np.asarray(src)[index].copy()


def pack_rows(src, C, D):
    """Flat (Q C (D + 1),) table: row ``q C + c`` is ``[src[q, c D:(c + 1) D], 0]``."""
    src = np.asarray(src, np.float64)
    Q = src.shape[0]
    rows = src[:, :C * D].reshape(Q * C, D)
    return np.concatenate([rows, np.zeros((Q * C, 1))], 1).ravel()


def pack_rows_backward(dst_grad, Q, C, D):
    """d / d src (Q, C D): the table gradient without its bias entries."""
    g = np.asarray(dst_grad, np.float64)[:Q * C * (D + 1)].reshape(Q * C, D + 1)
    return g[:, :D].reshape(Q, C * D).copy()


def occupancy(pts, occ, res):
    """(N,) int: ``occ`` (flat, x fastest, then y, then z) at the cell of each point in [-1, 1]^3;
    0 for points outside. ``res = (rx, ry, rz)``."""
    p = np.asarray(pts, np.float64)[:, :3]
    res = np.asarray(res)
    idx = np.clip(np.floor((p + 1.0) * 0.5 * res).astype(np.int64), 0, res - 1)
    inside = np.all((p >= -1.0) & (p <= 1.0), 1)
    flat = (idx[:, 2] * res[1] + idx[:, 1]) * res[0] + idx[:, 0]
    return np.where(inside, np.asarray(occ)[flat], 0).astype(np.int64)
