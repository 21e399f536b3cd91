"""Image losses of the Gaussian family, with hand-written gradients (numpy, float64).

``image_loss(pred, gt, ssim_weight)`` = ``(1 - w) L1 + w (1 - SSIM)`` (3DGS: w = 0.2; 4DGaussians:
w = 0, plain L1). L1 = mean |pred - gt| over pixels and channels (its gradient at 0 is taken as 0).
SSIM is 3DGS's: per channel, an 11 x 11 Gaussian window of sigma 1.5 applied as a convolution with
zero padding (the output keeps the image size), ``C1 = 0.01^2``, ``C2 = 0.03^2``, the mean of the
SSIM map over pixels and channels. The window is separable and symmetric, so the transpose of the
padded convolution is the convolution itself: the backward is three more convolutions.

Example::

    value, grad = image_loss(pred, gt, ssim_weight=0.2)    # grad: dL/dpred, (H, W, 3)
"""
from __future__ import annotations

import numpy as np

WINDOW, SIGMA, C1, C2 = 11, 1.5, 0.01 ** 2, 0.03 ** 2


def _taps() -> np.ndarray:
    x = np.arange(WINDOW) - WINDOW // 2
    g = np.exp(-(x ** 2) / (2.0 * SIGMA ** 2))
    return g / g.sum()


def blur(img: np.ndarray) -> np.ndarray:
    """Separable Gaussian window over the first two axes of (H, W, ...) with zero padding."""
    taps, r = _taps(), WINDOW // 2
    out = img
    for axis in (0, 1):
        padded = np.pad(out, [(r, r) if a == axis else (0, 0) for a in range(out.ndim)])
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for k, w in enumerate(taps):
            acc += w * np.take(padded, np.arange(k, k + n), axis=axis)
        out = acc
    return out


def ssim(pred: np.ndarray, gt: np.ndarray, grad: bool = False):
    """Mean SSIM of two (H, W, C) images, and (``grad``) its gradient with respect to ``pred``."""
    x, y = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    a1, a2 = 2.0 * mx * my + C1, 2.0 * sxy + C2
    b1, b2 = mx * mx + my * my + C1, sxx + syy + C2
    smap = a1 * a2 / (b1 * b2)
    value = float(smap.mean())
    if not grad:
        return value
    g = 1.0 / smap.size                                  # dmean / dsmap
    d_a1, d_a2 = g * a2 / (b1 * b2), g * a1 / (b1 * b2)
    d_b1, d_b2 = -g * smap / b1, -g * smap / b2
    d_mx = 2.0 * my * d_a1 + 2.0 * mx * d_b1            # direct dependencies on mx
    d_sxx, d_sxy = d_b2, 2.0 * d_a2
    d_mx = d_mx - 2.0 * mx * d_sxx - my * d_sxy         # through sxx = E[x^2] - mx^2, sxy = E[xy] - mx my
    dx = blur(d_mx) + 2.0 * x * blur(d_sxx) + y * blur(d_sxy)
    return value, dx


def image_loss(pred: np.ndarray, gt: np.ndarray, ssim_weight: float = 0.0):
    """``(loss, dloss/dpred)`` of (H, W, 3) images (see the module docstring)."""
    pred = np.asarray(pred, np.float64)
    diff = pred - np.asarray(gt, np.float64)
    w = float(ssim_weight)
    loss = (1.0 - w) * float(np.abs(diff).mean())
    grad = (1.0 - w) * np.sign(diff) / diff.size
    if w > 0.0:
        s, ds = ssim(pred, gt, grad=True)
        loss += w * (1.0 - s)
        grad -= w * ds
    return loss, grad
