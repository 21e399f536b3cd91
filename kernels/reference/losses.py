"""float64 numpy twins of kernels/losses.py: each returns values and gradients as arrays."""
import numpy as np

EXP_CLAMP = 15.0


def offset_l1(d, weight, mask=None):
    """(weight * sum mask |d|, gradient weight * sign(d) * mask)."""
    m = np.ones_like(d) if mask is None else (np.asarray(mask) != 0).astype(np.float64)
    return weight * np.sum(m * np.abs(d)), weight * np.sign(d) * m


def l2_penalty(p, weight):
    """(weight * sum p^2, gradient 2 weight p)."""
    return weight * np.sum(p * p), 2.0 * weight * p


def trunc_exp_forward(x, bias=-1.0):
    return np.exp(np.minimum(x + bias, EXP_CLAMP))


def trunc_exp_backward(x, dy, bias=-1.0):
    return dy * np.exp(np.clip(x + bias, -EXP_CLAMP, EXP_CLAMP))


def sigmoid_forward(x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(x >= 0, 1.0 / (1.0 + np.exp(-x)), np.exp(x) / (1.0 + np.exp(x)))


def sigmoid_backward(x, dy):
    s = sigmoid_forward(x)
    return dy * s * (1.0 - s)
