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

:func:`plane_regularizers` computes any of the three in ONE kernel launch over every plane and
scale (each texel read once, its gradient updated once) and returns the three values; the single
functions are that call with the other weights 0. Gradients are computed in gather form (every
element reads its neighbours), so the gradient updates need no atomic adds and the kernel is
race-free on any backend. Planes need at least 2 rows and columns (3 time rows for
:func:`time_smoothness`).

Example::

    loss_reg = (plane_tv(enc, 2e-4) + time_smoothness(enc, 1e-3) + time_l1(enc, 1e-4))
    values = plane_regularizers(enc, 2e-4, 1e-3, 1e-4)   # the same, one launch
    # {"plane_tv": ..., "time_smoothness": ..., "time_l1": ...}
"""
import weakref

import numpy as np
import taichi as ti

from taichi_syncnerf import runtime

# The kernel loops over (scale, plane, row) and walks a row's texels with the features innermost
# and unrolled. Neighbour offsets are set to 0 past a border, which makes the difference 0 there:
# no branch inside the feature loop, so LLVM vectorises it.
# coef[s, p, :] = (row TV weight, column TV weight, time smoothness weight, time L1 weight),
# already divided by the element counts of the means; a term with weight 0 adds exactly 0 (the
# planes are finite). Planes without time terms take a TV-only loop; planes whose four weights
# are 0 are skipped.


@ti.func
def _tv(params: ti.template(), k, v, down, up, right, left, ch, cw):
    """Texel k's TV term ``ch dd^2 + cw dr^2`` (differences to the next row and column) and the
    gradient of the plane's TV sum with respect to it (offsets 0 past a border)."""
    dd = params[k + down] - v
    du = v - params[k - up]
    dr = params[k + right] - v
    dl = v - params[k - left]
    return ch * dd * dd + cw * dr * dr, 2.0 * (ch * (du - dd) + cw * (dl - dr))


@ti.kernel
def _regularize(params: ti.template(), meta: ti.template(), coef: ti.template(), acc: ti.template(),
                max_h: ti.i32, nf: ti.template()):
    """acc = (sum of ch * (row differences)^2 + cw * (column differences)^2,
    sum of cs * (second differences along the rows)^2, sum of cl * |params - 1|) over every
    plane, with that plane's coefficients coef; adds the gradient of the three sums to
    params.grad. Second differences d[r] = P[r + 2] - 2 P[r + 1] + P[r] for r < h - 2: element
    r appears in d[r], d[r - 1] and d[r - 2] with weights 1, -2 and 1."""
    for k in ti.static(range(3)):
        acc[k] = 0.0
    for s, p, r in ti.ndrange(meta.shape[0], meta.shape[1], max_h):
        h, w = meta[s, p, 2], meta[s, p, 1]
        if r < h:
            ch, cw, cs, cl = coef[s, p, 0], coef[s, p, 1], coef[s, p, 2], coef[s, p, 3]
            rs = w * nf
            down = rs if r + 1 < h else 0
            up = rs if r > 0 else 0
            first = rs if r + 2 < h else 0  # d[r] exists
            middle = rs if r >= 1 and r + 1 < h else 0  # d[r - 1] exists
            last = rs if r >= 2 else 0  # d[r - 2] exists
            # per-feature partial sums: independent chains, vectorised across the features
            tv = ti.Vector([0.0] * nf)
            sm = ti.Vector([0.0] * nf)
            l1 = ti.Vector([0.0] * nf)
            row0 = meta[s, p, 0] + r * w
            if cs != 0.0 or cl != 0.0:
                for c in range(w):
                    k0 = (row0 + c) * nf  # "* nf" last: consecutive features, SIMD loads
                    right = nf if c + 1 < w else 0
                    left = nf if c > 0 else 0
                    for f in ti.static(range(nf)):
                        k = k0 + f
                        v = params[k]
                        t, gt = _tv(params, k, v, down, up, right, left, ch, cw)
                        d0 = params[k + 2 * first] - 2.0 * params[k + first] + v
                        d1 = params[k + middle] - 2.0 * v + params[k - middle]
                        d2 = v - 2.0 * params[k - last] + params[k - 2 * last]
                        d = v - 1.0
                        tv[f] += t
                        sm[f] += cs * d0 * d0
                        l1[f] += cl * ti.abs(d)
                        params.grad[k] = params.grad[k] + (gt + 2.0 * cs * (d0 - 2.0 * d1 + d2)
                                                           + cl * (ti.select(d > 0.0, 1.0, 0.0)
                                                                   - ti.select(d < 0.0, 1.0, 0.0)))
            elif ch != 0.0 or cw != 0.0:
                for c in range(w):
                    k0 = (row0 + c) * nf
                    right = nf if c + 1 < w else 0
                    left = nf if c > 0 else 0
                    for f in ti.static(range(nf)):
                        k = k0 + f
                        t, gt = _tv(params, k, params[k], down, up, right, left, ch, cw)
                        tv[f] += t
                        params.grad[k] = params.grad[k] + gt
            acc[0] += tv.sum()
            acc[1] += sm.sum()
            acc[2] += l1.sum()


class _Setup:
    """Per-encoder coefficient table and accumulator of the regulariser kernel."""

    def __init__(self, encoder):
        self.coef = ti.field(float, shape=(encoder.n_scales, encoder.n_planes, 4))
        self.acc = ti.field(float, shape=3)
        self.max_h = max(spec.height for spec in encoder.layout)
        self.weights = None

    def set_weights(self, encoder, weights) -> None:
        if weights == self.weights:
            return
        tv, smooth, l1 = weights
        coef = np.zeros((encoder.n_scales, encoder.n_planes, 4))
        for spec in encoder.layout:
            h, w, nf = spec.height, spec.width, spec.n_features
            scale = 2.0 * (1.0 if spec.is_time else 2.0) * tv
            row = coef[spec.scale, spec.plane]
            if tv:
                row[0], row[1] = scale / (nf * (h - 1) * w), scale / (nf * h * (w - 1))
            if spec.is_time and smooth:
                row[2] = smooth / (nf * (h - 2) * w)
            if spec.is_time and l1:
                row[3] = l1 / spec.size
        self.coef.from_numpy(coef.astype(runtime.np_float()))
        self.weights = weights


_SETUPS = weakref.WeakKeyDictionary()


def plane_regularizers(encoder, tv: float, smooth: float, l1: float) -> dict:
    """Weighted plane TV, time smoothness and time L1 in one kernel launch; accumulates their
    gradients. Returns ``{"plane_tv", "time_smoothness", "time_l1"}`` (Python floats; a term
    with weight 0 is 0.0 and adds nothing). The same values as the three single functions."""
    tv, smooth, l1 = float(tv), float(smooth), float(l1)
    if encoder.dims == 3:
        smooth, l1 = 0.0, 0.0
    if smooth and encoder.time_res < 3:
        raise ValueError("time_smoothness needs time_res >= 3")
    out = {"plane_tv": 0.0, "time_smoothness": 0.0, "time_l1": 0.0}
    if not (tv or smooth or l1):
        return out
    setup = _SETUPS.get(encoder)
    if setup is None:
        setup = _SETUPS[encoder] = _Setup(encoder)
    setup.set_weights(encoder, (tv, smooth, l1))
    _regularize(encoder.params, encoder.meta, setup.coef, setup.acc, setup.max_h, encoder.n_features)
    values = setup.acc.to_numpy()
    out["plane_tv"], out["time_smoothness"], out["time_l1"] = (float(values[k]) for k in range(3))
    return out


def plane_tv(encoder, weight: float) -> float:
    """Weighted plane total variation of every plane; accumulates its gradient. See module doc."""
    return plane_regularizers(encoder, weight, 0.0, 0.0)["plane_tv"]


def time_smoothness(encoder, weight: float) -> float:
    """Weighted mean squared second time difference of the time planes; accumulates its gradient."""
    return plane_regularizers(encoder, 0.0, weight, 0.0)["time_smoothness"]


def time_l1(encoder, weight: float) -> float:
    """Weighted mean |1 - value| of the time planes; accumulates its gradient."""
    return plane_regularizers(encoder, 0.0, 0.0, weight)["time_l1"]
