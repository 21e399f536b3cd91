"""float64 numpy twins of kernels/ray_losses.py: each returns (value, gradient) of ``scale * loss``.

Written the slow, obvious way (O(n^2) pairs, O(n m) overlaps) to check the O(n) kernels.
"""
import numpy as np


def mse(pred, target, scale=1.0):
    """Mean over rays and channels of (pred - target)^2; pred, target (R, 3)."""
    diff = np.asarray(pred, np.float64) - target
    if diff.size == 0:
        return 0.0, np.zeros_like(diff)
    return scale * np.mean(diff**2), scale * 2.0 * diff / diff.size


def distortion(weights, s0, s1, ray_start, ray_count, scale=1.0):
    """mip-NeRF 360 distortion: mean over rays of
    sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s1_i - s0_i), m = (s0 + s1) / 2."""
    R = len(ray_count)
    grad = np.zeros(len(weights))
    total = 0.0
    for r in range(R):
        sl = slice(ray_start[r], ray_start[r] + ray_count[r])
        w, m, ds = weights[sl], 0.5 * (s0[sl] + s1[sl]), s1[sl] - s0[sl]
        dist = np.abs(m[:, None] - m[None, :])
        total += w @ dist @ w + np.sum(w**2 * ds) / 3.0
        grad[sl] = 2.0 * dist @ w + 2.0 / 3.0 * w * ds
    if R == 0:
        return 0.0, grad
    return scale * total / R, scale * grad / R


def interlevel(t0_f, t1_f, w_f, start_f, count_f, t0_p, t1_p, w_p, start_p, count_p, scale=1.0,
               eps=1e-7):
    """mip-NeRF 360 proposal loss: mean over rays of sum_i max(0, w_i - bound_i)^2 / (w_i + eps),
    bound_i = sum of proposal weights whose interval overlaps fine interval i (positive overlap,
    or containing a zero-length fine interval). Gradient w.r.t. the proposal weights w_p."""
    R = len(count_f)
    grad = np.zeros(len(w_p))
    total = 0.0
    for r in range(R):
        pf = range(start_f[r], start_f[r] + count_f[r])
        pp = np.arange(start_p[r], start_p[r] + count_p[r], dtype=np.int64)
        for i in pf:
            over = pp[(t0_p[pp] < t1_f[i]) & (t1_p[pp] > t0_f[i])]
            excess = w_f[i] - np.sum(w_p[over])
            if excess > 0:
                total += excess**2 / (w_f[i] + eps)
                grad[over] += -2.0 * excess / (w_f[i] + eps)
    if R == 0:
        return 0.0, grad
    return scale * total / R, scale * grad / R
