"""Ray-level losses with their gradients: photometric MSE, distortion and interlevel (mip-NeRF 360).

Each function returns the value of ``scale * loss`` (a Python float; the kernel's reduction) and,
unless ``grad=False``, writes the gradient of ``scale * loss`` into the ``.grad`` of the
differentiated field: OVERWRITING it (entries of rays < n_rays), or adding to it with
``accumulate=True`` (when several losses act on the same field). With ``grad=False`` the field
needs no gradient storage. Losses are means over the ``n_rays`` rays (rays with no samples count
and contribute 0).

Composition with the renderer (kernels/render.py): the weights gradients land in
``renderer.weights.grad``, consumed by ``renderer.backward(..., d_weights=True)``::

    fine_ren.forward(fine, sigma, rgb, n)
    loss = ray_losses.mse(fine_ren.colour, target, n)                         # colour.grad
    fine.normalized_coords(near, far)
    loss += ray_losses.distortion(fine_ren.weights, fine, n, scale=1e-3)       # weights.grad
    fine_ren.backward(fine, sigma, rgb, n, d_colour=True, d_weights=True)
    loss += ray_losses.interlevel(fine, fine_ren.weights, prop, prop_ren.weights, n)
    prop_ren.backward(prop, prop_sigma, None, n, d_weights=True)              # prop_sigma.grad
"""
import taichi as ti


def _mode(grad, accumulate):
    return 0 if not grad else (2 if accumulate else 1)


def mse(pred, target, n_rays: int, *, scale: float = 1.0, grad: bool = True,
        accumulate: bool = False) -> float:
    """Mean over rays and the 3 channels of ``(pred - target)^2``.

    pred, target: fields (R, 3) (e.g. ``renderer.colour`` and the batch's pixel colours).
    Gradient: ``pred.grad[r, c] = scale * 2 (pred - target) / (3 n_rays)``.
    """
    if n_rays <= 0:
        return 0.0
    return float(_mse(pred, target, int(n_rays), float(scale) / (3.0 * n_rays),
                      _mode(grad, accumulate)))


def distortion(weights, samples, n_rays: int | None = None, *, scale: float = 1.0,
               grad: bool = True, accumulate: bool = False) -> float:
    """mip-NeRF 360 distortion loss, mean over rays of
    ``sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s1_i - s0_i)``, ``m = (s0 + s1) / 2``.

    weights: field (S,) (e.g. ``renderer.weights``); samples: packed set whose ``s0``, ``s1``
    hold normalised interval coordinates in [0, 1] (``RaySampler.normalized_coords``), sorted
    within each ray. O(n) per ray with running sums. Gradient into ``weights.grad``.
    """
    n_rays = samples.n_rays if n_rays is None else int(n_rays)
    if n_rays <= 0:
        return 0.0
    return float(_distortion(weights, samples.s0, samples.s1, samples.ray_start,
                             samples.ray_count, n_rays, float(scale) / n_rays,
                             _mode(grad, accumulate)))


def interlevel(fine, fine_weights, prop, prop_weights, n_rays: int | None = None, *,
               scale: float = 1.0, eps: float = 1e-7, grad: bool = True,
               accumulate: bool = False) -> float:
    """mip-NeRF 360 proposal loss for one proposal level, mean over rays of
    ``sum_i max(0, w_i - bound_i)^2 / (w_i + eps)``.

    fine, prop: packed sets (``t0``, ``t1``, ``ray_start``, ``ray_count``; the same rays, each
    level with its own layout); fine_weights (S_fine,) are constants; prop_weights (S_prop,)
    get the gradient (``prop_weights.grad``). ``bound_i`` sums the proposal weights of the
    proposal intervals that overlap fine interval i with positive length (a proposal interval that
    only touches it at an end does not count; a zero-length fine interval counts the one containing
    it). Both levels are walked together: O(n_fine + n_prop) per ray.
    """
    n_rays = fine.n_rays if n_rays is None else int(n_rays)
    if n_rays > prop.n_rays:
        raise ValueError(f"n_rays {n_rays} exceeds the proposal level's {prop.n_rays} rays")
    if n_rays <= 0:
        return 0.0
    return float(_interlevel(fine.t0, fine.t1, fine_weights, fine.ray_start, fine.ray_count,
                             prop.t0, prop.t1, prop_weights, prop.ray_start, prop.ray_count,
                             n_rays, float(scale) / n_rays, float(eps), _mode(grad, accumulate)))


@ti.kernel
def _mse(pred: ti.template(), target: ti.template(), n: int, coef: float,
         mode: ti.template()) -> float:
    total = 0.0
    for r, c in ti.ndrange(n, 3):
        d = pred[r, c] - target[r, c]
        total += d * d
        if ti.static(mode == 1):
            pred.grad[r, c] = 2.0 * coef * d
        if ti.static(mode == 2):
            pred.grad[r, c] += 2.0 * coef * d
    return total * coef


@ti.kernel
def _distortion(weights: ti.template(), s0: ti.template(), s1: ti.template(),
                start: ti.template(), count: ti.template(), n_rays: int, coef: float,
                mode: ti.template()) -> float:
    total = 0.0
    for r in range(n_rays):
        a, c = start[r], count[r]
        w_sum, wm_sum, loss = 0.0, 0.0, 0.0
        for k in range(c):  # pairs j < k: w_k sum_j w_j (m_k - m_j), counted twice
            w, m = weights[a + k], 0.5 * (s0[a + k] + s1[a + k])
            loss += 2.0 * w * (m * w_sum - wm_sum) + w * w * (s1[a + k] - s0[a + k]) / 3.0
            w_sum += w
            wm_sum += w * m
        total += loss
        if ti.static(mode > 0):
            w_before, wm_before = 0.0, 0.0
            for k in range(c):  # d/dw_k = 2 sum_j w_j |m_k - m_j| + 2/3 w_k (s1 - s0)
                w, m = weights[a + k], 0.5 * (s0[a + k] + s1[a + k])
                g = 2.0 * (m * (2.0 * w_before - w_sum) + wm_sum - 2.0 * wm_before)
                g += 2.0 / 3.0 * w * (s1[a + k] - s0[a + k])
                if ti.static(mode == 1):
                    weights.grad[a + k] = coef * g
                else:
                    weights.grad[a + k] += coef * g
                w_before += w
                wm_before += w * m
    return total * coef


@ti.kernel
def _interlevel(ft0: ti.template(), ft1: ti.template(), fw: ti.template(), fstart: ti.template(),
                fcount: ti.template(), pt0: ti.template(), pt1: ti.template(),
                pw: ti.template(), pstart: ti.template(), pcount: ti.template(), n_rays: int,
                coef: float, eps: float, mode: ti.template()) -> float:
    total = 0.0
    for r in range(n_rays):
        fa, fc, pa, pc = fstart[r], fcount[r], pstart[r], pcount[r]
        if ti.static(mode == 1):
            for j in range(pc):
                pw.grad[pa + j] = 0.0
        lo = 0
        loss = 0.0
        for i in range(fc):
            f0, f1 = ft0[fa + i], ft1[fa + i]
            while lo < pc:  # first proposal interval ending after f0
                if pt1[pa + lo] > f0:
                    break
                lo += 1
            bound = 0.0
            hi = lo
            while hi < pc:  # ... up to the last one starting before f1
                if pt0[pa + hi] >= f1:
                    break
                bound += pw[pa + hi]
                hi += 1
            w = fw[fa + i]
            excess = w - bound
            if excess > 0.0:
                loss += excess * excess / (w + eps)
                if ti.static(mode > 0):
                    g = -2.0 * coef * excess / (w + eps)
                    for j in range(lo, hi):
                        pw.grad[pa + j] += g
        total += loss
    return total * coef
