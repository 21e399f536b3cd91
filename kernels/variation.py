"""Variation (dynamic-ness) field heads: per-ray maximum logit, the positively weighted BCE, and
the static/dynamic routing of samples (MixVoxels).

* :func:`ray_max_logit`: ``ray_logit[r] = max_k logit[s_k]`` over ray r's packed samples and
  ``argmax[r]`` the sample that holds it (a ray without samples gets logit 0 and argmax -1).
  :func:`ray_max_logit_backward` OVERWRITES ``logit.grad`` of every sample of rays ``< n``: the
  ray's gradient goes to its argmax sample, 0 elsewhere.
* :func:`weighted_bce`: ``mean_r [ -w y log sigmoid(x) - (1 - y) log(1 - sigmoid(x)) ]`` with
  ``x = ray_logit[r]``, ``y = label[r]`` in {0, 1}, ``w = pos_weight``; OVERWRITES
  ``ray_logit.grad`` with ``scale * dmean/dx`` (``w y (sigmoid(x) - 1) + (1 - y) sigmoid(x)``, over n).
* :func:`route_samples`: ``dynamic[s] = 1`` when sigmoid of the maximum logit within
  ``+- half_window`` samples of s along its ray exceeds ``threshold`` (the reference's
  max-pooling along the ray), for the rays with ``ray_dynamic[r] = 1``; 0 otherwise.
"""
import taichi as ti

from .losses import softplus


@ti.kernel
def ray_max_logit(logit: ti.template(), start: ti.template(), count: ti.template(), ray_logit: ti.template(),
                  argmax: ti.template(), n: int):
    for r in range(n):
        best = 0.0
        arg = -1
        for s in range(start[r], start[r] + count[r]):
            if arg < 0 or logit[s] > best:
                best = logit[s]
                arg = s
        ray_logit[r] = best
        argmax[r] = arg


@ti.kernel
def ray_max_logit_backward(logit: ti.template(), start: ti.template(), count: ti.template(),
                           ray_logit: ti.template(), argmax: ti.template(), n: int):
    for r in range(n):
        for s in range(start[r], start[r] + count[r]):
            logit.grad[s] = 0.0
        if argmax[r] >= 0:
            logit.grad[argmax[r]] = ray_logit.grad[r]


@ti.kernel
def _bce(x: ti.template(), label: ti.template(), n: int, pos_weight: float, grad_scale: float) -> float:
    total = 0.0
    for r in range(n):
        v = x[r]
        y = label[r]
        total += pos_weight * y * softplus(-v) + (1.0 - y) * softplus(v)
        sg = 1.0 / (1.0 + ti.exp(-v))
        x.grad[r] = grad_scale * (pos_weight * y * (sg - 1.0) + (1.0 - y) * sg)
    return total


def weighted_bce(ray_logit, label, n: int, pos_weight: float, weight: float = 1.0) -> float:
    """Mean weighted BCE over rays ``< n`` (returned unweighted); ``ray_logit.grad = weight * d/dx``."""
    n = int(n)
    if n == 0:
        return 0.0
    return _bce(ray_logit, label, n, float(pos_weight), float(weight) / n) / n


@ti.kernel
def route_samples(logit: ti.template(), start: ti.template(), count: ti.template(), ray_dynamic: ti.template(),
                  dynamic: ti.template(), n: int, half_window: int, threshold: float):
    for r in range(n):
        a, c = start[r], count[r]
        for k in range(c):
            flag = 0
            if ray_dynamic[r] != 0:
                best = logit[a + k]
                for j in range(ti.max(k - half_window, 0), ti.min(k + half_window + 1, c)):
                    best = ti.max(best, logit[a + j])
                if 1.0 / (1.0 + ti.exp(-best)) > threshold:
                    flag = 1
            dynamic[a + k] = flag
