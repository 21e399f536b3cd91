"""Multiresolution hash-grid encoder (Instant-NGP) over 3-D or 4-D coordinates.

Level ``l`` is a grid of ``res[l] + 1`` vertices per axis, ``res[l] = floor(base_res * b**l)``
(``b`` is ``per_level_scale``, or derived from ``max_res`` so that the finest level has
``max_res``). A level whose ``(res + 1) ** dims`` vertices fit in the table is indexed densely
(``sum_d c_d * (res + 1) ** d``, x fastest) and stores only those vertices; a finer level uses the
spatial hash ``xor_d (c_d * prime_d) mod 2**log2_table_size`` (uint32 arithmetic, primes
1, 2654435761, 805459861, 3674653429). Each vertex holds ``n_features`` values; a point's feature
at a level is the n-linear interpolation of the ``2**dims`` corners of its cell.

Coordinates are normalised to [-1, 1] per axis (x, y, z[, t]); they map to ``u = (x + 1) / 2`` in
[0, 1], cell position ``pos = u * res``. Outside [-1, 1] the lookup clamps to the border and the
coordinate gradient is 0 there.

Parameters live in ONE flat field ``params`` (shape ``(n_params,)``, ``needs_grad=True``), level
major, then vertex, then feature: ``params[offset[l] + vertex * F + f]``.

The backward pass is written by hand (no ``kernel.grad()``): it reads ``feat.grad``, leaves it as
the caller set it, ACCUMULATES into ``params.grad`` and OVERWRITES ``x.grad`` (rows ``< n``,
columns ``< dims``) with the gradient with respect to the normalised coordinates, time included.

Example::

    enc = HashGridEncoder(dims=4, n_levels=16, n_features=2, log2_table_size=19,
                          base_res=16, max_res=2048, max_points=N)
    x = ti.field(float, shape=(N, 4), needs_grad=True)
    feat = ti.field(float, shape=(N, enc.output_dim), needs_grad=True)
    enc.forward(x, feat, n)
    # ... caller writes dL/dfeat into feat.grad ...
    enc.backward(x, feat, n)     # params.grad += dL/dparams ; x.grad = dL/dx
"""

import math

import numpy as np
import taichi as ti

PRIMES = (1, 2654435761, 805459861, 3674653429)
INIT_SCALE = 1e-4


def level_resolutions(n_levels: int, base_res: int, max_res: int | None = None,
                      per_level_scale: float | None = None) -> list[int]:
    """Grid resolution (cells per axis) of every level: ``floor(base_res * b**l)``.

    Exactly one of ``max_res`` (finest resolution; ``b = (max_res / base_res) ** (1 / (L - 1))``)
    and ``per_level_scale`` (``b`` itself) must be given.
    """
    if (max_res is None) == (per_level_scale is None):
        raise ValueError("give exactly one of max_res and per_level_scale")
    if n_levels < 1 or base_res < 1:
        raise ValueError("n_levels and base_res must be >= 1")
    if per_level_scale is None:
        if max_res < base_res:
            raise ValueError(f"max_res ({max_res}) must be >= base_res ({base_res})")
        b = math.exp((math.log(max_res) - math.log(base_res)) / (n_levels - 1)) if n_levels > 1 else 1.0
    else:
        b = float(per_level_scale)
        if b < 1.0:
            raise ValueError("per_level_scale must be >= 1")
    # The tiny relative epsilon keeps e.g. 16 * (128)**(1) from landing on 2047.9999.
    return [int(math.floor(base_res * b**l * (1.0 + 1e-9))) for l in range(n_levels)]


def level_layout(dims: int, resolutions, log2_table_size: int, n_features: int):
    """Per-level storage ``(offsets, sizes, hashed, n_params)``: ``offsets[l]`` counts parameters
    (vertex slots times features), ``sizes[l]`` vertex slots, ``hashed[l]`` is 0 (dense) or 1."""
    table = 1 << log2_table_size
    offsets, sizes, hashed = [], [], []
    total = 0
    for res in resolutions:
        vertices = (res + 1) ** dims
        dense = vertices <= table
        size = vertices if dense else table
        offsets.append(total)
        sizes.append(size)
        hashed.append(0 if dense else 1)
        total += size * n_features
    return offsets, sizes, hashed, total


@ti.data_oriented
class HashGridEncoder:
    """Instant-NGP hash-grid encoder.

    Args:
        dims: 3 (x, y, z) or 4 (x, y, z, t).
        n_levels: number of resolution levels L.
        n_features: features per level F; the output has ``L * F`` columns (level major).
        log2_table_size: log2 of the per-level table size T (vertex slots), 4..26.
        base_res: coarsest resolution (cells per axis).
        max_res / per_level_scale: finest resolution, or the growth factor per level (one of them).
        max_points: the largest ``n`` accepted (callers size their buffers to it).
        seed: seed of the uniform(-1e-4, 1e-4) initialisation (numpy ``default_rng``).
    """

    def __init__(self, dims: int, n_levels: int, n_features: int, log2_table_size: int, base_res: int,
                 max_res: int | None = None, per_level_scale: float | None = None,
                 max_points: int = 1 << 18, seed: int = 0):
        if dims not in (3, 4):
            raise ValueError(f"dims must be 3 or 4, got {dims}")
        if not 1 <= n_features <= 8:
            raise ValueError(f"n_features must be in 1..8, got {n_features}")
        if not 4 <= log2_table_size <= 26:
            raise ValueError(f"log2_table_size must be in 4..26, got {log2_table_size}")
        if max_points < 1:
            raise ValueError("max_points must be >= 1")
        self.dims = int(dims)
        self.n_levels = int(n_levels)
        self.n_features = int(n_features)
        self.log2_table_size = int(log2_table_size)
        self.table_size = 1 << self.log2_table_size
        self.max_points = int(max_points)
        self.resolutions = level_resolutions(n_levels, base_res, max_res, per_level_scale)
        self.offsets, self.sizes, self.hashed, self.n_params = level_layout(
            self.dims, self.resolutions, self.log2_table_size, self.n_features)
        if self.n_params >= 2**31 - 1:
            raise ValueError(f"hash grid too large: {self.n_params} parameters")
        self.output_dim = self.n_levels * self.n_features

        self.params = ti.field(float, shape=self.n_params, needs_grad=True)
        self.level_res = ti.field(ti.i32, shape=self.n_levels)
        self.level_offset = ti.field(ti.i32, shape=self.n_levels)
        self.level_hashed = ti.field(ti.i32, shape=self.n_levels)
        self.level_res.from_numpy(np.asarray(self.resolutions, dtype=np.int32))
        self.level_offset.from_numpy(np.asarray(self.offsets, dtype=np.int32))
        self.level_hashed.from_numpy(np.asarray(self.hashed, dtype=np.int32))
        self.init_params(seed)

    def init_params(self, seed: int = 0) -> None:
        """Fill ``params`` with uniform(-1e-4, 1e-4) from ``np.random.default_rng(seed)``."""
        values = np.random.default_rng(seed).uniform(-INIT_SCALE, INIT_SCALE, size=self.n_params)
        self.params.from_numpy(values.astype(_np_dtype(self.params)))

    # ------------------------------------------------------------------ checks
    def _check(self, x, feat, n: int) -> None:
        if not 0 <= n <= self.max_points:
            raise ValueError(f"n={n} outside [0, max_points={self.max_points}]")
        if len(x.shape) != 2 or x.shape[1] < self.dims or x.shape[0] < n:
            raise ValueError(f"x must be a field of shape (>= {n}, >= {self.dims}), got {x.shape}")
        if len(feat.shape) != 2 or feat.shape[1] < self.output_dim or feat.shape[0] < n:
            raise ValueError(
                f"feat must be a field of shape (>= {n}, >= {self.output_dim}), got {feat.shape}")

    # ------------------------------------------------------------------ public API
    def forward(self, x, feat, n: int) -> None:
        """Encode rows ``< n``.

        x: field (N, >= dims), normalised coordinates in [-1, 1] (columns beyond ``dims`` ignored).
        feat: field (N, >= L * F); columns ``l * F + f`` are written, others untouched.
        """
        self._check(x, feat, n)
        if n > 0:
            self._forward(x, feat, n)

    def backward(self, x, feat, n: int, coord_grad: bool = True) -> None:
        """Back-propagate ``feat.grad`` (rows ``< n``, columns ``< L * F``; not modified).

        ``params.grad`` += dL/dparams. With ``coord_grad`` (x must have ``needs_grad``),
        ``x.grad[i, d]`` (i < n, d < dims) is OVERWRITTEN with dL/dx; otherwise x.grad is untouched.
        """
        self._check(x, feat, n)
        if not _has_grad(feat) or (coord_grad and not _has_grad(x)):
            raise ValueError("backward needs feat (and x when coord_grad) created with needs_grad=True")
        if n == 0:
            return
        if coord_grad:
            self._zero_coord_grad(x, n)
            self._backward(x, feat, n, True)
        else:
            self._backward(x, feat, n, False)

    # ------------------------------------------------------------------ kernels
    @ti.func
    def _cell(self, x: ti.template(), i, res):
        """Cell corner (int vector), fractional position and inside mask of row ``i``."""
        cell = ti.Vector([0] * self.dims, dt=ti.i32)
        frac = ti.Vector([0.0] * self.dims, dt=float)
        inside = ti.Vector([0.0] * self.dims, dt=float)
        for d in ti.static(range(self.dims)):
            xd = x[i, d]
            u = ti.min(ti.max((xd + 1.0) * 0.5, 0.0), 1.0)
            pos = u * float(res)
            # The outer max also keeps a NaN coordinate inside the table.
            c = ti.max(ti.min(ti.cast(ti.floor(pos), ti.i32), res - 1), 0)
            cell[d] = c
            frac[d] = pos - float(c)
            inside[d] = ti.select((xd >= -1.0) & (xd <= 1.0), 1.0, 0.0)
        return cell, frac, inside

    @ti.func
    def _vertex(self, cell, corner: ti.template(), res, hashed):
        """Vertex slot of the given static corner (bit d set: +1 along axis d)."""
        idx = 0
        if hashed:
            h = ti.u32(0)
            for d in ti.static(range(self.dims)):
                c = cell[d] + ti.static((corner >> d) & 1)
                h ^= ti.cast(c, ti.u32) * ti.u32(PRIMES[d])
            idx = ti.cast(h & ti.u32(self.table_size - 1), ti.i32)
        else:
            stride = 1
            for d in ti.static(range(self.dims)):
                idx += (cell[d] + ti.static((corner >> d) & 1)) * stride
                stride *= res + 1
        return idx

    @ti.func
    def _weight(self, frac, corner: ti.template(), skip: ti.template()):
        """Product over axes (except ``skip``; -1 for none) of the corner's linear weights."""
        w = 1.0
        for d in ti.static(range(self.dims)):
            if ti.static(d != skip):
                if ti.static((corner >> d) & 1):
                    w *= frac[d]
                else:
                    w *= 1.0 - frac[d]
        return w

    @ti.kernel
    def _forward(self, x: ti.template(), feat: ti.template(), n: ti.i32):
        for l, i in ti.ndrange(self.n_levels, n):
            res = self.level_res[l]
            base = self.level_offset[l]
            hashed = self.level_hashed[l]
            cell, frac, _ = self._cell(x, i, res)
            acc = ti.Vector([0.0] * self.n_features, dt=float)
            for corner in ti.static(range(1 << self.dims)):
                w = self._weight(frac, corner, -1)
                p = base + self._vertex(cell, corner, res, hashed) * self.n_features
                for f in ti.static(range(self.n_features)):
                    acc[f] += w * self.params[p + f]
            for f in ti.static(range(self.n_features)):
                feat[i, l * self.n_features + f] = acc[f]

    @ti.kernel
    def _zero_coord_grad(self, x: ti.template(), n: ti.i32):
        for i, d in ti.ndrange(n, self.dims):
            x.grad[i, d] = 0.0

    @ti.kernel
    def _backward(self, x: ti.template(), feat: ti.template(), n: ti.i32, coord_grad: ti.template()):
        for l, i in ti.ndrange(self.n_levels, n):
            res = self.level_res[l]
            base = self.level_offset[l]
            hashed = self.level_hashed[l]
            cell, frac, inside = self._cell(x, i, res)
            g = ti.Vector([0.0] * self.n_features, dt=float)
            for f in ti.static(range(self.n_features)):
                g[f] = feat.grad[i, l * self.n_features + f]
            dpos = ti.Vector([0.0] * self.dims, dt=float)
            for corner in ti.static(range(1 << self.dims)):
                w = self._weight(frac, corner, -1)
                p = base + self._vertex(cell, corner, res, hashed) * self.n_features
                dot = 0.0
                for f in ti.static(range(self.n_features)):
                    ti.atomic_add(self.params.grad[p + f], w * g[f])
                    if ti.static(coord_grad):
                        dot += g[f] * self.params[p + f]
                if ti.static(coord_grad):
                    for d in ti.static(range(self.dims)):
                        sign = ti.static(1.0 if (corner >> d) & 1 else -1.0)
                        dpos[d] += sign * dot * self._weight(frac, corner, d)
            if ti.static(coord_grad):
                scale = 0.5 * float(res)
                for d in ti.static(range(self.dims)):
                    ti.atomic_add(x.grad[i, d], dpos[d] * scale * inside[d])


def _has_grad(field) -> bool:
    try:
        return bool(field.snode.ptr.has_adjoint())
    except AttributeError:
        return False


def _np_dtype(field):
    """The numpy float type matching a Taichi float field."""
    return np.float64 if field.dtype == ti.f64 else np.float32
