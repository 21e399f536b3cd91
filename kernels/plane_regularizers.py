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
columns (3 time rows for :func:`time_smoothness`). Cost at the published hybrid size (23.6 M
parameters, f32, 2 CPU threads): plane_tv 40 ms, time_smoothness 12 ms, time_l1 7 ms.

Example::

    loss_reg = (plane_tv(enc, 2e-4) + time_smoothness(enc, 1e-3) + time_l1(enc, 1e-4))
"""
import taichi as ti


# The kernels loop over texels with the features innermost and unrolled. Neighbour offsets are
# set to 0 past a border, which makes the difference 0 there: no branch inside the feature loop,
# so LLVM vectorises it.


@ti.kernel
def _tv_plane(params: ti.template(), off: ti.i32, h: ti.i32, w: ti.i32, nf: ti.template(),
              ch: float, cw: float) -> float:
    """sum ch * (row differences)^2 + cw * (column differences)^2 over the plane of h x w texels
    of nf features starting at texel `off` of params; adds its gradient to params.grad."""
    total = 0.0
    rs = w * nf
    for r, c in ti.ndrange(h, w):
        k0 = (off + r * w + c) * nf  # "* nf" last: consecutive features, SIMD loads
        down = rs if r + 1 < h else 0
        up = rs if r > 0 else 0
        right = nf if c + 1 < w else 0
        left = nf if c > 0 else 0
        for f in ti.static(range(nf)):
            k = k0 + f
            v = params[k]
            dd = params[k + down] - v
            du = v - params[k - up]
            dr = params[k + right] - v
            dl = v - params[k - left]
            total += ch * dd * dd + cw * dr * dr
            params.grad[k] = params.grad[k] + 2.0 * (ch * (du - dd) + cw * (dl - dr))
    return total


@ti.kernel
def _smooth_plane(params: ti.template(), off: ti.i32, h: ti.i32, w: ti.i32, nf: ti.template(),
                  cs: float) -> float:
    """sum cs * (second difference along the rows)^2 over one plane; adds its gradient.
    d[r] = P[r + 2] - 2 P[r + 1] + P[r] for r < h - 2; element r appears in d[r], d[r - 1] and
    d[r - 2] with weights 1, -2 and 1."""
    total = 0.0
    rs = w * nf
    for r, c in ti.ndrange(h, w):
        k0 = (off + r * w + c) * nf
        first = rs if r + 2 < h else 0  # d[r] exists
        middle = rs if r >= 1 and r + 1 < h else 0  # d[r - 1] exists
        last = rs if r >= 2 else 0  # d[r - 2] exists
        for f in ti.static(range(nf)):
            k = k0 + f
            v = params[k]
            d0 = params[k + 2 * first] - 2.0 * params[k + first] + v
            d1 = params[k + middle] - 2.0 * v + params[k - middle]
            d2 = v - 2.0 * params[k - last] + params[k - 2 * last]
            total += cs * d0 * d0
            params.grad[k] = params.grad[k] + 2.0 * cs * (d0 - 2.0 * d1 + d2)
    return total


@ti.kernel
def _l1_plane(params: ti.template(), off: ti.i32, texels: ti.i32, nf: ti.template(),
              cl: float) -> float:
    """sum cl * |params - 1| over one plane; adds its gradient cl * sign(params - 1)."""
    total = 0.0
    for t in range(texels):
        k0 = (off + t) * nf
        for f in ti.static(range(nf)):
            k = k0 + f
            d = params[k] - 1.0
            total += cl * ti.abs(d)
            params.grad[k] = params.grad[k] + cl * (ti.select(d > 0.0, 1.0, 0.0) - ti.select(d < 0.0, 1.0, 0.0))
    return total


def plane_tv(encoder, weight: float) -> float:
    """Weighted plane total variation of every plane; accumulates its gradient. See module doc."""
    if weight == 0.0:
        return 0.0
    total = 0.0
    for spec in encoder.layout:
        h, w, nf = spec.height, spec.width, spec.n_features
        scale = 2.0 * (1.0 if spec.is_time else 2.0) * float(weight)
        total += _tv_plane(encoder.params, spec.offset // nf, h, w, nf,
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
            total += _smooth_plane(encoder.params, spec.offset // nf, h, w, nf,
                                   float(weight) / (nf * (h - 2) * w))
    return float(total)


def time_l1(encoder, weight: float) -> float:
    """Weighted mean |1 - value| of the time planes; accumulates its gradient."""
    if weight == 0.0:
        return 0.0
    total = 0.0
    for spec in encoder.layout:
        if spec.is_time:
            total += _l1_plane(encoder.params, spec.offset // spec.n_features,
                               spec.width * spec.height, spec.n_features, float(weight) / spec.size)
    return float(total)
