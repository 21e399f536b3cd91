"""Float64 numpy twins of kernels/planes.py and kernels/plane_regularizers.py (slow, obvious).

Written independently of the Taichi module (own layout code) so that tests catch layout slips.
Every function takes the flat parameter vector and the encoder's shape arguments
``(dims, n_features, space_res, time_res)``.
"""
from __future__ import annotations

import numpy as np

_PLANES = {3: [(0, 1), (0, 2), (1, 2)],
           4: [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]}


def layout(dims, n_features, space_res, time_res):
    """List of ``(scale, axis_a, axis_b, height, width, offset)`` in storage order."""
    out, offset = [], 0
    for s, r in enumerate(space_res):
        res = [r, r, r, time_res]
        for a, b in _PLANES[dims]:
            out.append((s, a, b, res[b], res[a], offset))
            offset += res[a] * res[b] * n_features
    return out, offset


def _plane(params, entry, n_features):
    _, _, _, h, w, off = entry
    return params[off: off + h * w * n_features].reshape(h, w, n_features)


def _axis(xa, res):
    """Cell index, weight and d(pos)/dx of coordinates ``xa`` (N,) on an axis of ``res`` texels."""
    pos = (xa + 1.0) / 2.0 * (res - 1)
    dpos = np.where((pos >= 0) & (pos <= res - 1), (res - 1) / 2.0, 0.0)
    pos = np.clip(pos, 0, res - 1)
    i0 = np.minimum(np.floor(pos).astype(np.int64), res - 2)
    return i0, pos - i0, dpos


def _lookup(plane, xa, xb):
    """Bilinear lookup of ``plane`` (H, W, F); returns values (N, F), dvalue/dxa, dvalue/dxb,
    and per corner the (row, col, weight)."""
    h, w, _ = plane.shape
    ia, wa, da = _axis(xa, w)
    ib, wb, db = _axis(xb, h)
    c00, c01 = plane[ib, ia], plane[ib, ia + 1]
    c10, c11 = plane[ib + 1, ia], plane[ib + 1, ia + 1]
    wa_, wb_ = wa[:, None], wb[:, None]
    val = (1 - wa_) * (1 - wb_) * c00 + wa_ * (1 - wb_) * c01 + (1 - wa_) * wb_ * c10 + wa_ * wb_ * c11
    dxa = ((1 - wb_) * (c01 - c00) + wb_ * (c11 - c10)) * da[:, None]
    dxb = ((1 - wa_) * (c10 - c00) + wa_ * (c11 - c01)) * db[:, None]
    corners = [(ib, ia, (1 - wa) * (1 - wb)), (ib, ia + 1, wa * (1 - wb)),
               (ib + 1, ia, (1 - wa) * wb), (ib + 1, ia + 1, wa * wb)]
    return val, dxa, dxb, corners


def forward(params, x, dims, n_features, space_res, time_res):
    """Features ``(N, n_scales * F)`` at points ``x`` ``(N, dims)``."""
    params, x = np.asarray(params, np.float64), np.asarray(x, np.float64)
    entries, _ = layout(dims, n_features, space_res, time_res)
    out = np.ones((x.shape[0], len(space_res) * n_features))
    for e in entries:
        s, a, b = e[:3]
        val = _lookup(_plane(params, e, n_features), x[:, a], x[:, b])[0]
        out[:, s * n_features: (s + 1) * n_features] *= val
    return out


def backward(params, x, feat_grad, dims, n_features, space_res, time_res):
    """Gradients ``(dL/dparams (P,), dL/dx (N, dims))`` given ``feat_grad`` = dL/dfeat."""
    params, x = np.asarray(params, np.float64), np.asarray(x, np.float64)
    entries, total = layout(dims, n_features, space_res, time_res)
    F = n_features
    gp, gx = np.zeros(total), np.zeros_like(x)
    for s in range(len(space_res)):
        mine = [e for e in entries if e[0] == s]
        looks = [_lookup(_plane(params, e, F), x[:, e[1]], x[:, e[2]]) for e in mine]
        g = np.asarray(feat_grad, np.float64)[:, s * F: (s + 1) * F]
        for k, e in enumerate(mine):
            others = np.prod([lk[0] for j, lk in enumerate(looks) if j != k], axis=0)
            gv = g * others  # dL/d(value of this plane), (N, F)
            gplane = np.zeros((e[3], e[4], F))
            for row, col, wgt in looks[k][3]:
                np.add.at(gplane, (row, col), gv * wgt[:, None])
            gp[e[5]: e[5] + gplane.size] += gplane.ravel()
            gx[:, e[1]] += (gv * looks[k][1]).sum(1)
            gx[:, e[2]] += (gv * looks[k][2]).sum(1)
    return gp, gx


# ---------------------------------------------------------------- regularisers


def _tv_one(p):
    """K-Planes compute_plane_tv of a (H, W, F) plane: value and gradient."""
    h, w, f = p.shape
    dh = p[1:] - p[:-1]
    dw = p[:, 1:] - p[:, :-1]
    nh, nw = f * (h - 1) * w, f * h * (w - 1)
    value = 2.0 * ((dh**2).sum() / nh + (dw**2).sum() / nw)
    g = np.zeros_like(p)
    g[1:] += 4.0 * dh / nh
    g[:-1] -= 4.0 * dh / nh
    g[:, 1:] += 4.0 * dw / nw
    g[:, :-1] -= 4.0 * dw / nw
    return value, g


def plane_tv(params, dims, n_features, space_res, time_res, weight=1.0):
    """Plane total variation (K-Planes PlaneTV): every plane's TV, plus the space planes' TV a
    second time (for 3-D every plane is a space plane, so all count twice)."""
    return _sum_over(params, dims, n_features, space_res, time_res, weight, _tv_one,
                     lambda b: 1.0 if b == 3 else 2.0)


def _smooth_one(p):
    """Mean squared second difference along the rows (time) of a (H, W, F) plane."""
    d2 = p[2:] - 2.0 * p[1:-1] + p[:-2]
    n = d2.size
    g = np.zeros_like(p)
    g[2:] += 2.0 * d2 / n
    g[1:-1] -= 4.0 * d2 / n
    g[:-2] += 2.0 * d2 / n
    return (d2**2).sum() / n, g


def time_smoothness(params, dims, n_features, space_res, time_res, weight=1.0):
    """Sum over time planes (xt, yt, zt) of every scale of the mean squared second time difference."""
    return _sum_over(params, dims, n_features, space_res, time_res, weight, _smooth_one,
                     lambda b: 1.0 if b == 3 else 0.0)


def _l1_one(p):
    """Mean of |1 - p|; gradient sign(p - 1) / size (0 at p == 1)."""
    return np.abs(1.0 - p).mean(), np.sign(p - 1.0) / p.size


def time_l1(params, dims, n_features, space_res, time_res, weight=1.0):
    """Sum over time planes of every scale of mean |1 - value|."""
    return _sum_over(params, dims, n_features, space_res, time_res, weight, _l1_one,
                     lambda b: 1.0 if b == 3 else 0.0)


def _sum_over(params, dims, n_features, space_res, time_res, weight, one, count):
    params = np.asarray(params, np.float64)
    entries, total = layout(dims, n_features, space_res, time_res)
    value, grad = 0.0, np.zeros(total)
    for e in entries:
        c = count(e[2])
        if c == 0.0:
            continue
        v, g = one(_plane(params, e, n_features))
        value += c * v
        grad[e[5]: e[5] + g.size] += c * g.ravel()
    return weight * value, weight * grad
