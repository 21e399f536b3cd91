"""Float64 numpy twins of kernels/vm.py (slow, obvious; own layout code)."""
from __future__ import annotations

import numpy as np

_PAIRS = [(0, 1, 2), (0, 2, 1), (1, 2, 0)]  # plane axes (a = columns, b = rows), line axis w


def split(params, comps, res):
    """Planes ``[(res[b], res[a], C_p)]`` and lines ``[(res[w], C_p)]`` views of the flat vector."""
    params = np.asarray(params, np.float64)
    planes, lines, off = [], [], 0
    for p, (a, b, w) in enumerate(_PAIRS):
        size = res[a] * res[b] * comps[p]
        planes.append(params[off:off + size].reshape(res[b], res[a], comps[p]))
        off += size
        lines.append(params[off:off + res[w] * comps[p]].reshape(res[w], comps[p]))
        off += res[w] * comps[p]
    return planes, lines


def _interp1(grid, xv):
    """Linear lookup along axis 0 of ``grid`` (R, C) at normalised coordinates (N,): values (N, C)
    and their derivative w.r.t. the coordinate."""
    r = grid.shape[0]
    pos = (xv + 1) / 2 * (r - 1)
    dpos = np.where((xv >= -1) & (xv <= 1), (r - 1) / 2, 0.0)
    pos = np.clip(pos, 0, r - 1)
    i0 = np.minimum(np.floor(pos).astype(int), r - 2)
    f = (pos - i0)[:, None]
    return (1 - f) * grid[i0] + f * grid[i0 + 1], (grid[i0 + 1] - grid[i0]) * dpos[:, None]


def forward(params, x, comps, res):
    """Features (N, sum(comps)) of points ``x`` (N, >= 3)."""
    x = np.asarray(x, np.float64)
    planes, lines = split(params, comps, res)
    out = []
    for p, (a, b, w) in enumerate(_PAIRS):
        pl, ln = planes[p], lines[p]
        # bilinear = linear along rows of the column-interpolated plane, done point by point
        vals = np.empty((len(x), comps[p]))
        for i in range(len(x)):
            cols, _ = _interp1(np.transpose(pl, (1, 0, 2)).reshape(res[a], -1), x[i:i + 1, a])
            col = cols.reshape(res[b], comps[p])
            pv, _ = _interp1(col, x[i:i + 1, b])
            vals[i] = pv[0]
        lv, _ = _interp1(ln, x[:, w])
        out.append(vals * lv)
    return np.concatenate(out, axis=1)


def resample_grid(grid, h1, w1):
    """Corner-aligned bilinear resampling of ``grid`` (h0, w0, C) to (h1, w1, C)."""
    h0, w0, _ = grid.shape
    ys = np.linspace(0, h0 - 1, h1) if h1 > 1 else np.zeros(1)
    xs = np.linspace(0, w0 - 1, w1) if w1 > 1 else np.zeros(1)
    out = np.empty((h1, w1, grid.shape[2]))
    for r, py in enumerate(ys):
        y0 = min(int(np.floor(py)), max(h0 - 2, 0))
        y1, fy = min(y0 + 1, h0 - 1), py - y0
        for q, px in enumerate(xs):
            x0 = min(int(np.floor(px)), max(w0 - 2, 0))
            x1, fx = min(x0 + 1, w0 - 1), px - x0
            out[r, q] = ((1 - fy) * ((1 - fx) * grid[y0, x0] + fx * grid[y0, x1])
                         + fy * ((1 - fx) * grid[y1, x0] + fx * grid[y1, x1]))
    return out


def resample(params, comps, res, new_res):
    """The flat vector of the same VM resampled to ``new_res``."""
    planes, lines = split(params, comps, res)
    out = []
    for p, (a, b, w) in enumerate(_PAIRS):
        out.append(resample_grid(planes[p], new_res[b], new_res[a]).ravel())
        out.append(resample_grid(lines[p][:, None, :], new_res[w], 1).ravel())
    return np.concatenate(out)


def _axis_weights(xv, r):
    """Vectorised corner-aligned lookup along one axis: (i0, w, dpos)."""
    pos = np.clip((xv + 1) / 2 * (r - 1), 0, r - 1)
    dpos = np.where((xv >= -1) & (xv <= 1), (r - 1) / 2, 0.0)
    i0 = np.minimum(np.floor(pos).astype(int), r - 2)
    return i0, pos - i0, dpos


def backward(params, x, g, comps, res):
    """Gradients ``(dL/dparams (n_params,), dL/dx (N, 3))`` of ``L = sum(forward(params, x) * g)``."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    planes, lines = split(params, comps, res)
    gplanes = [np.zeros_like(p) for p in planes]
    glines = [np.zeros_like(ln) for ln in lines]
    dx = np.zeros((len(x), 3))
    col = 0
    for p, (a, b, w) in enumerate(_PAIRS):
        C = comps[p]
        gp_ = g[:, col:col + C]
        col += C
        ia, wa, da = _axis_weights(x[:, a], res[a])
        ib, wb, db = _axis_weights(x[:, b], res[b])
        iw, ww, dw = _axis_weights(x[:, w], res[w])
        pl, ln = planes[p], lines[p]
        v00, v01, v10, v11 = pl[ib, ia], pl[ib, ia + 1], pl[ib + 1, ia], pl[ib + 1, ia + 1]  # (N, C)
        wa_, wb_, ww_ = wa[:, None], wb[:, None], ww[:, None]
        pv = (1 - wa_) * (1 - wb_) * v00 + wa_ * (1 - wb_) * v01 + (1 - wa_) * wb_ * v10 + wa_ * wb_ * v11
        lv = (1 - ww_) * ln[iw] + ww_ * ln[iw + 1]
        gpl, gln = gp_ * lv, gp_ * pv
        for (rb, ra), wt in (((ib, ia), (1 - wa_) * (1 - wb_)), ((ib, ia + 1), wa_ * (1 - wb_)),
                             ((ib + 1, ia), (1 - wa_) * wb_), ((ib + 1, ia + 1), wa_ * wb_)):
            np.add.at(gplanes[p], (rb, ra), gpl * wt)
        np.add.at(glines[p], iw, gln * (1 - ww_))
        np.add.at(glines[p], iw + 1, gln * ww_)
        dx[:, a] += np.sum(gpl * ((1 - wb_) * (v01 - v00) + wb_ * (v11 - v10)), 1) * da
        dx[:, b] += np.sum(gpl * ((1 - wa_) * (v10 - v00) + wa_ * (v11 - v01)), 1) * db
        dx[:, w] += np.sum(gln * (ln[iw + 1] - ln[iw]), 1) * dw
    flat = []
    for p in range(3):
        flat += [gplanes[p].ravel(), glines[p].ravel()]
    return np.concatenate(flat), dx
