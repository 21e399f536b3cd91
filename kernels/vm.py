"""Vector-matrix (TensoRF) factorised grid encoder over 3-D points, and its upsampling.

Three pairs, each a plane times a line along the remaining axis, named and ordered
``xy*z, xz*y, yz*x`` (plane ``ab`` has columns along axis ``a`` and rows along axis ``b``; the line
runs along axis ``w``). Pair ``p`` has ``comps[p]`` components; output column ``m`` (pair 0's
components first, then pair 1's, then pair 2's) is the product of component ``c`` of the pair's
plane (bilinear lookup) and line (linear lookup)::

    feat[n, m] = plane_p[c](x_a, x_b) * line_p[c](x_w)

so the output width is ``sum(comps)``. Resolutions are per axis: ``res = (rx, ry, rz)``.
Lookups use the project's corner-aligned convention (docs/ARCHITECTURE.md): ``pos = (x + 1) / 2 *
(res - 1)`` clamped to ``[0, res - 1]``, ``i0 = min(floor(pos), res - 2)``, ``w = pos - i0``;
outside [-1, 1] the lookup clamps and the coordinate gradient there is 0.

Parameters: ONE flat field ``params`` (``needs_grad``). Pair ``p``'s plane block starts at
``plane_base[p]`` (row-major texels, components contiguous: ``(row * width + col) * C + c``),
its line block at ``line_base[p]`` (``i * C + c``). :func:`vm_layout` gives the offsets.

Backward (hand-written, one thread per (point, column), atomic adds): reads ``feat.grad``,
ACCUMULATES into ``params.grad`` and OVERWRITES ``x.grad`` rows ``< n`` with dL/dx.

Upsampling (:func:`resample`): every plane and line is resampled bilinearly (corner-aligned) to
new per-axis resolutions, as when the reference grows its grids during training.

Example::

    enc = VMEncoder(comps=(16, 4, 4), res=(64, 64, 64), max_points=N)
    enc.forward(x, feat, n)          # feat (N, 24)
    ... feat.grad = dL/dfeat ...
    enc.backward(x, feat, n)         # params.grad += ; x.grad = dL/dx
"""

import numpy as np
import taichi as ti

from taichi_syncnerf import runtime

PAIRS = (("xy*z", 0, 1, 2), ("xz*y", 0, 2, 1), ("yz*x", 1, 2, 0))  # (name, a, b, w)


def vm_layout(comps, res):
    """``(plane_base, line_base, n_params)`` of the flat storage for ``comps`` (3,) and ``res`` (3,)."""
    plane_base, line_base, off = [], [], 0
    for p, (_, a, b, w) in enumerate(PAIRS):
        plane_base.append(off)
        off += res[a] * res[b] * comps[p]
        line_base.append(off)
        off += res[w] * comps[p]
    return plane_base, line_base, off


@ti.func
def _axis(xv, r):
    pos = ti.min(ti.max((xv + 1.0) * 0.5 * (r - 1), 0.0), r - 1.0)
    dpos = 0.0
    if -1.0 <= xv <= 1.0:
        dpos = 0.5 * (r - 1)
    i0 = ti.min(ti.cast(ti.floor(pos), ti.i32), r - 2)
    return i0, pos - i0, dpos


@ti.data_oriented
class VMEncoder:
    """``comps``: components per pair (3 ints); ``res``: per-axis resolution (3 ints >= 2)."""

    def __init__(self, comps, res, max_points: int, seed: int = 0, init_std: float = 0.1):
        comps = [int(c) for c in comps]
        res = [int(r) for r in res]
        if len(comps) != 3 or min(comps) < 1 or len(res) != 3 or min(res) < 2:
            raise ValueError(f"VM comps {comps} must be 3 ints >= 1 and res {res} 3 ints >= 2")
        self.comps, self.res = comps, res
        self.output_dim = sum(comps)
        self.max_points = int(max_points)
        self.plane_base, self.line_base, self.n_params = vm_layout(comps, res)
        self.params = ti.field(float, shape=self.n_params, needs_grad=True)
        # per output column: pair, component, plane base, line base, a, b, w, C
        self.meta = ti.field(ti.i32, shape=(self.output_dim, 8))
        rows = []
        for p, (_, a, b, w) in enumerate(PAIRS):
            for c in range(comps[p]):
                rows.append([p, c, self.plane_base[p], self.line_base[p], a, b, w, comps[p]])
        self.meta.from_numpy(np.array(rows, np.int32))
        self.res_f = ti.field(ti.i32, shape=3)
        self.res_f.from_numpy(np.array(res, np.int32))
        if init_std != 0.0:
            rng = np.random.default_rng(seed)
            self.set_params(rng.normal(0.0, init_std, self.n_params))
        else:  # zeros without a full-size float64 draw of them (0.3 GB per appearance grid at 640^3)
            self.params.fill(0.0)

    def get_params(self) -> np.ndarray:
        return self.params.to_numpy()

    def set_params(self, values) -> None:
        values = np.asarray(values)
        if values.shape != (self.n_params,):
            raise ValueError(f"expected {self.n_params} VM parameters, got shape {values.shape}")
        self.params.from_numpy(values.astype(runtime.np_float(), copy=False))

    def _check(self, x, feat, n):
        if not 0 <= n <= min(self.max_points, x.shape[0], feat.shape[0]):
            raise ValueError(f"n={n} outside the encoder's / fields' capacity")
        if x.shape[1] < 3 or feat.shape[1] != self.output_dim:
            raise ValueError(f"x needs >= 3 columns and feat {self.output_dim}, got {x.shape}, {feat.shape}")

    def forward(self, x, feat, n: int) -> None:
        """``feat[i, m]`` for rows ``i < n`` from ``x[i, 0:3]`` (other columns ignored)."""
        self._check(x, feat, int(n))
        _forward(self.params, self.meta, self.res_f, x, feat, int(n), self.output_dim)

    def backward(self, x, feat, n: int, coord_grad: bool = True) -> None:
        """``params.grad += dL/dparams``; with ``coord_grad``, ``x.grad[:n, 0:3] = dL/dx``."""
        n = int(n)
        self._check(x, feat, n)
        if coord_grad:
            _zero_coord_grad(x, n)
        _backward(self.params, self.meta, self.res_f, x, feat, n, self.output_dim, bool(coord_grad))


@ti.func
def _corners(meta: ti.template(), res: ti.template(), x: ti.template(), i, m):
    a, b, w = meta[m, 4], meta[m, 5], meta[m, 6]
    ra, rb, rw = res[a], res[b], res[w]
    ia, wa, da = _axis(x[i, a], ra)
    ib, wb, db = _axis(x[i, b], rb)
    iw, ww, dw = _axis(x[i, w], rw)
    C = meta[m, 7]
    c = meta[m, 1]
    p00 = meta[m, 2] + (ib * ra + ia) * C + c
    l0 = meta[m, 3] + iw * C + c
    return a, b, w, ra, C, p00, l0, wa, wb, ww, da, db, dw


@ti.kernel
def _forward(params: ti.template(), meta: ti.template(), res: ti.template(), x: ti.template(),
             feat: ti.template(), n: int, M: int):
    for i, m in ti.ndrange(n, M):
        a, b, w, ra, C, p00, l0, wa, wb, ww, da, db, dw = _corners(meta, res, x, i, m)
        pv = ((1.0 - wa) * (1.0 - wb) * params[p00] + wa * (1.0 - wb) * params[p00 + C]
              + (1.0 - wa) * wb * params[p00 + ra * C] + wa * wb * params[p00 + ra * C + C])
        lv = (1.0 - ww) * params[l0] + ww * params[l0 + C]
        feat[i, m] = pv * lv


@ti.kernel
def _zero_coord_grad(x: ti.template(), n: int):
    for i, a in ti.ndrange(n, 3):
        x.grad[i, a] = 0.0


@ti.kernel
def _backward(params: ti.template(), meta: ti.template(), res: ti.template(), x: ti.template(),
              feat: ti.template(), n: int, M: int, coord_grad: ti.template()):
    for i, m in ti.ndrange(n, M):
        g = feat.grad[i, m]
        if g != 0.0:
            a, b, w, ra, C, p00, l0, wa, wb, ww, da, db, dw = _corners(meta, res, x, i, m)
            v00, v01 = params[p00], params[p00 + C]
            v10, v11 = params[p00 + ra * C], params[p00 + ra * C + C]
            pv = (1.0 - wa) * (1.0 - wb) * v00 + wa * (1.0 - wb) * v01 + (1.0 - wa) * wb * v10 + wa * wb * v11
            lv = (1.0 - ww) * params[l0] + ww * params[l0 + C]
            gp = g * lv
            ti.atomic_add(params.grad[p00], gp * (1.0 - wa) * (1.0 - wb))
            ti.atomic_add(params.grad[p00 + C], gp * wa * (1.0 - wb))
            ti.atomic_add(params.grad[p00 + ra * C], gp * (1.0 - wa) * wb)
            ti.atomic_add(params.grad[p00 + ra * C + C], gp * wa * wb)
            gl = g * pv
            ti.atomic_add(params.grad[l0], gl * (1.0 - ww))
            ti.atomic_add(params.grad[l0 + C], gl * ww)
            if ti.static(coord_grad):
                ti.atomic_add(x.grad[i, a], gp * ((1.0 - wb) * (v01 - v00) + wb * (v11 - v10)) * da)
                ti.atomic_add(x.grad[i, b], gp * ((1.0 - wa) * (v10 - v00) + wa * (v11 - v01)) * db)
                ti.atomic_add(x.grad[i, w], gl * (params[l0 + C] - params[l0]) * dw)


@ti.kernel
def _resample_grid(src: ti.template(), dst: ti.template(), s0: int, h0: int, w0: int, d0: int,
                   h1: int, w1: int, C: int):
    """Bilinear, corner-aligned resampling of the (h0, w0, C) grid at src[s0:] into (h1, w1, C) at dst[d0:]."""
    for r, q, c in ti.ndrange(h1, w1, C):
        py = 0.0
        if h1 > 1:
            py = r * (h0 - 1) / (h1 - 1.0)
        px = 0.0
        if w1 > 1:
            px = q * (w0 - 1) / (w1 - 1.0)
        y0 = ti.min(ti.cast(ti.floor(py), ti.i32), ti.max(h0 - 2, 0))
        x0 = ti.min(ti.cast(ti.floor(px), ti.i32), ti.max(w0 - 2, 0))
        fy, fx = py - y0, px - x0
        y1, x1 = ti.min(y0 + 1, h0 - 1), ti.min(x0 + 1, w0 - 1)
        v = ((1.0 - fy) * ((1.0 - fx) * src[s0 + (y0 * w0 + x0) * C + c] + fx * src[s0 + (y0 * w0 + x1) * C + c])
             + fy * ((1.0 - fx) * src[s0 + (y1 * w0 + x0) * C + c] + fx * src[s0 + (y1 * w0 + x1) * C + c]))
        dst[d0 + (r * w1 + q) * C + c] = v


def resample(old: VMEncoder, new: VMEncoder) -> None:
    """Fill ``new.params`` with ``old``'s planes and lines resampled to ``new.res`` (same comps)."""
    if old.comps != new.comps:
        raise ValueError(f"resample needs the same components, got {old.comps} and {new.comps}")
    for p, (_, a, b, w) in enumerate(PAIRS):
        C = old.comps[p]
        _resample_grid(old.params, new.params, old.plane_base[p], old.res[b], old.res[a], new.plane_base[p],
                       new.res[b], new.res[a], C)
        _resample_grid(old.params, new.params, old.line_base[p], old.res[w], 1, new.line_base[p],
                       new.res[w], 1, C)
