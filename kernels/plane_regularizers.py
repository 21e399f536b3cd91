"""K-Planes regularisers on a :class:`~taichi_syncnerf.kernels.planes.PlaneEncoder`'s planes.

Each function returns the weighted value as a Python float and ACCUMULATES the weighted gradient
into ``encoder.params.grad``. With ``weight == 0`` nothing runs and 0.0 is returned. Definitions
follow K-Planes (``regularization.py``); a plane is viewed as ``(H, W, F)`` = rows along its second
axis, columns along its first (time planes ``xt, yt, zt`` have time along the rows):

* :func:`plane_tv`: ``tv(P) = 2 * (mean((P[1:] - P[:-1])**2) + mean((P[:, 1:] - P[:, :-1])**2))``,
  means over all elements and features. Like K-Planes' ``PlaneTV`` the space planes (``xy, xz, yz``)
  are added twice and the time planes once: it sums the space planes' TV, then every plane's TV.
  For a 3-D encoder every plane is a space plane, so every plane counts twice.
* :func:`time_smoothness`: per time plane, ``mean((P[2:] - 2 P[1:-1] + P[:-2])**2)`` (second
  difference along time), summed over time planes and scales. 0 for a 3-D encoder.
* :func:`time_l1`: per time plane, ``mean(|1 - P|)``, summed. Its gradient is
  ``sign(P - 1) / size`` (0 where ``P == 1``, so it is 0 at the initialisation). 0 for 3-D.

Gradients are computed in gather form (every element reads its neighbours), so there are no
atomic adds and the kernels are race-free on any backend. Planes need at least 2 rows and
columns (3 time rows for :func:`time_smoothness`).

Example::

    loss_reg = (plane_tv(enc, 2e-4) + time_smoothness(enc, 1e-3) + time_l1(enc, 1e-4))
"""
import taichi as ti


@ti.kernel
def _tv_plane(params: ti.template(), off: ti.i32, h: ti.i32, w: ti.i32, nf: ti.i32,
              ch: float, cw: float) -> float:
    """sum ch * (row differences)^2 + cw * (column differences)^2 over one plane."""
    total = 0.0
    row_stride = w * nf
    for k in range(h * row_stride):
        row = k // row_stride
        col = (k // nf) % w
        v = params[off + k]
        g = 0.0
        if row + 1 < h:
            d = params[off + k + row_stride] - v
            total += ch * d * d
            g -= 2.0 * ch * d
        if row > 0:
            g += 2.0 * ch * (v - params[off + k - row_stride])
        if col + 1 < w:
            d = params[off + k + nf] - v
            total += cw * d * d
            g -= 2.0 * cw * d
        if col > 0:
            g += 2.0 * cw * (v - params[off + k - nf])
        params.grad[off + k] = params.grad[off + k] + g
    return total


@ti.kernel
def _smooth_plane(params: ti.template(), off: ti.i32, h: ti.i32, w: ti.i32, nf: ti.i32,
                  c: float) -> float:
    """sum c * (second difference along the rows)^2 over one plane."""
    total = 0.0
    rs = w * nf
    for k in range(h * rs):
        row = k // rs
        g = 0.0
        if row + 2 < h:  # this element is the first of d[row]
            d = params[off + k + 2 * rs] - 2.0 * params[off + k + rs] + params[off + k]
            total += c * d * d
            g += 2.0 * c * d
        if row >= 1 and row + 1 < h:  # the middle of d[row - 1]
            d = params[off + k + rs] - 2.0 * params[off + k] + params[off + k - rs]
            g -= 4.0 * c * d
        if row >= 2:  # the last of d[row - 2]
            d = params[off + k] - 2.0 * params[off + k - rs] + params[off + k - 2 * rs]
            g += 2.0 * c * d
        params.grad[off + k] = params.grad[off + k] + g
    return total


@ti.kernel
def _l1_plane(params: ti.template(), off: ti.i32, size: ti.i32, c: float) -> float:
    """sum c * |params - 1| over one plane."""
    total = 0.0
    for k in range(size):
        d = params[off + k] - 1.0
        total += c * ti.abs(d)
        g = 0.0
        if d > 0.0:
            g = c
        elif d < 0.0:
            g = -c
        params.grad[off + k] = params.grad[off + k] + g
    return total


def plane_tv(encoder, weight: float) -> float:
    """Weighted plane total variation of every plane; accumulates its gradient. See module doc."""
    if weight == 0.0:
        return 0.0
    total = 0.0
    for spec in encoder.layout:
        h, w, nf = spec.height, spec.width, spec.n_features
        scale = 2.0 * (1.0 if spec.is_time else 2.0) * float(weight)
        total += _tv_plane(encoder.params, spec.offset, h, w, nf,
                           scale / (nf * (h - 1) * w), scale / (nf * h * (w - 1)))
    return float(total)


def time_smoothness(encoder, weight: float) -> float:
    """Weighted mean squared second time difference of the time planes; accumulates its gradient."""
    if weight == 0.0:
        return 0.0
    total = 0.0
    for spec in encoder.layout:
        if spec.is_time:
            if spec.height < 3:
                raise ValueError("time_smoothness needs time_res >= 3")
            h, w, nf = spec.height, spec.width, spec.n_features
            total += _smooth_plane(encoder.params, spec.offset, h, w, nf,
                                   float(weight) / (nf * (h - 2) * w))
    return float(total)


def time_l1(encoder, weight: float) -> float:
    """Weighted mean |1 - value| of the time planes; accumulates its gradient."""
    if weight == 0.0:
        return 0.0
    total = 0.0
    for spec in encoder.layout:
        if spec.is_time:
            total += _l1_plane(encoder.params, spec.offset, spec.size, float(weight) / spec.size)
    return float(total)
