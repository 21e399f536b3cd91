"""Float64 numpy twins of kernels/variation.py."""
import numpy as np


def ray_max_logit(logit, ray_start, ray_count):
    out = np.zeros(len(ray_start))
    for r, (a, c) in enumerate(zip(ray_start, ray_count)):
        if c > 0:
            out[r] = np.max(logit[a:a + c])
    return out


def weighted_bce(x, label, pos_weight):
    x, y = np.asarray(x, np.float64), np.asarray(label, np.float64)
    p = 1.0 / (1.0 + np.exp(-x))
    return float(np.mean(-pos_weight * y * np.log(p) - (1 - y) * np.log(1 - p)))


def weighted_bce_grad(x, label, pos_weight):
    """d weighted_bce / dx."""
    x, y = np.asarray(x, np.float64), np.asarray(label, np.float64)
    p = 1.0 / (1.0 + np.exp(-x))
    return (p * (pos_weight * y + 1 - y) - pos_weight * y) / len(x)


def route_samples(logit, ray_start, ray_count, ray_dynamic, half_window, threshold):
    out = np.zeros(len(logit), np.int64)
    for r, (a, c) in enumerate(zip(ray_start, ray_count)):
        if not ray_dynamic[r]:
            continue
        for k in range(c):
            lo, hi = max(k - half_window, 0), min(k + half_window + 1, c)
            out[a + k] = 1.0 / (1.0 + np.exp(-np.max(logit[a + lo:a + hi]))) > threshold
    return out
