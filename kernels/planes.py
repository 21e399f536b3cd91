"""K-Planes plane-grid encoder over 3-D (x, y, z) or 4-D (x, y, z, t) coordinates.

Planes are named and ordered ``xy, xz, yz, xt, yt, zt`` (3-D input: ``xy, xz, yz``). Plane ``ab``
has columns along axis ``a`` (width ``res[a]``) and rows along axis ``b`` (height ``res[b]``).
Scale ``s`` has resolution ``space_res[s]`` on x, y, z and ``time_res`` on t (time is not
multiplied per scale). Each plane texel holds ``n_features`` (``F``) values.

A point's feature at a scale is the elementwise product over that scale's planes of bilinear
lookups (align_corners: ``pos = (x + 1) / 2 * (res - 1)`` clamped to ``[0, res - 1]``,
``i0 = min(floor(pos), res - 2)``, ``w = pos - i0``); the scales are concatenated, so the output
width is ``n_scales * F`` and output column ``s * F + f`` is feature ``f`` of scale ``s``.
Outside [-1, 1] the lookup clamps to the border and the coordinate gradient there is 0.

Parameters live in ONE flat field ``params`` (shape ``(n_params,)``, ``needs_grad=True``):
scale-major, then plane, then row, then column, features contiguous:
``params[base[s, p] + (row * width + col) * F + f]``. Space planes start uniform in
``init_range``, time planes at 1 (so the model starts static).

The backward pass is written by hand (no ``kernel.grad()``): it reads ``feat.grad`` and leaves it
as the caller set it, ACCUMULATES into ``params.grad`` and OVERWRITES ``x.grad`` (rows ``< n``)
with the gradient with respect to the normalised coordinates, time included (Sync-NeRF's time
offsets learn only through it). Two implementations give the same gradients:

* ``"owner"`` (CPU default): the work is split into ``n_scales * feature_groups`` tasks; task
  ``(s, g)`` walks all samples serially and alone owns features ``g`` of every plane of scale ``s``,
  so it adds into ``params.grad`` with plain (non-atomic) read-modify-writes. Race-free on any
  backend, deterministic (fixed summation order), and about 4x faster than atomics on CPU. Each
  task writes its partial coordinate gradient to a buffer that a second loop sums into ``x.grad``.
* ``"atomic"`` (GPU default): one thread per (sample, scale), atomic adds.

Example::

    enc = PlaneEncoder(dims=4, n_features=16, space_res=[64, 128, 256, 512], time_res=150,
                       max_points=N)
    x = ti.field(float, shape=(N, 4), needs_grad=True)
    feat = ti.field(float, shape=(N, enc.output_dim), needs_grad=True)
    enc.forward(x, feat, n)
    # ... caller writes dL/dfeat into feat.grad ...
    enc.backward(x, feat, n)     # params.grad += dL/dparams ; x.grad = dL/dx
"""
import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import taichi as ti

from taichi_syncnerf import runtime

AXES = "xyzt"
# (name, column axis a, row axis b) in the order of the flat storage.
PLANES = (("xy", 0, 1), ("xz", 0, 2), ("yz", 1, 2), ("xt", 0, 3), ("yt", 1, 3), ("zt", 2, 3))
BACKWARD_MODES = ("auto", "owner", "atomic")


def plane_names(dims: int) -> List[str]:
    """Plane names in storage order: ``['xy', 'xz', 'yz']`` for 3-D, plus ``'xt', 'yt', 'zt'``."""
    if dims not in (3, 4):
        raise ValueError(f"dims must be 3 or 4, got {dims}")
    return [name for name, _, _ in PLANES[: 3 if dims == 3 else 6]]


@dataclass(frozen=True)
class PlaneSpec:
    """Where one (scale, plane) lives in the flat parameter field."""

    scale: int
    plane: int  # index in plane_names(dims)
    name: str
    axis_a: int  # column axis (0..3 for x, y, z, t)
    axis_b: int  # row axis
    width: int  # res[axis_a]
    height: int  # res[axis_b]
    n_features: int
    offset: int  # first flat index

    @property
    def size(self) -> int:
        return self.width * self.height * self.n_features

    @property
    def is_time(self) -> bool:
        return self.axis_b == 3


def plane_layout(dims: int, n_features: int, space_res, time_res: int) -> List[PlaneSpec]:
    """Every (scale, plane) of an encoder in storage order (scale-major, then plane)."""
    out, offset = [], 0
    for s, r in enumerate(space_res):
        res = [int(r)] * 3 + [int(time_res)]
        for p, (name, a, b) in enumerate(PLANES[: 3 if dims == 3 else 6]):
            spec = PlaneSpec(s, p, name, a, b, res[a], res[b], int(n_features), offset)
            out.append(spec)
            offset += spec.size
    return out


def _default_threads() -> int:
    threads = runtime.info().threads
    return int(threads) if threads else (os.cpu_count() or 1)


@ti.data_oriented
class PlaneEncoder:
    """Multi-scale K-Planes encoder with a hand-written backward pass.

    Args:
        dims: 3 (x, y, z) or 4 (x, y, z, t).
        n_features: features per plane texel and per scale (``F``).
        space_res: spatial resolution of each scale, e.g. ``[64, 128, 256, 512]`` (each >= 2).
        time_res: resolution of the time axis, the same at every scale (>= 2; unused for 3-D).
        max_points: largest batch ``n`` that ``forward``/``backward`` will be given.
        seed: seed of the uniform initialisation of the space planes.
        init_range: ``(low, high)`` of that initialisation.
        backward_mode: ``"auto"`` (``"owner"`` on CPU, ``"atomic"`` on a GPU), ``"owner"`` or
            ``"atomic"``; see the module docstring.
        feature_groups: for ``"owner"``: split each scale's F features into this many tasks
            (a divisor of F). Default: the fewest that give ``n_scales * groups >= threads``.
    """

    def __init__(self, dims: int, n_features: int, space_res, time_res: int, max_points: int,
                 seed: int = 0, init_range=(0.1, 0.5), backward_mode: str = "auto",
                 feature_groups: Optional[int] = None):
        space_res = [int(r) for r in space_res]
        if dims not in (3, 4):
            raise ValueError(f"dims must be 3 or 4, got {dims}")
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        if not space_res or min(space_res) < 2:
            raise ValueError(f"space_res must be a non-empty list of resolutions >= 2, got {space_res}")
        if dims == 4 and int(time_res) < 2:
            raise ValueError(f"time_res must be >= 2, got {time_res}")
        if max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {max_points}")
        if backward_mode not in BACKWARD_MODES:
            raise ValueError(f"backward_mode must be one of {BACKWARD_MODES}, got {backward_mode!r}")
        self.probe = {}
        self.dims = int(dims)
        self.n_features = int(n_features)
        self.space_res = space_res
        self.time_res = int(time_res) if dims == 4 else 0
        self.n_scales = len(space_res)
        self.n_planes = 3 if dims == 3 else 6
        self.max_points = int(max_points)
        self.output_dim = self.n_scales * self.n_features
        self.layout = plane_layout(self.dims, self.n_features, space_res, max(self.time_res, 2))
        self.n_params = sum(spec.size for spec in self.layout)
        if self.n_params >= 2**31:
            raise ValueError(f"{self.n_params} parameters do not fit 32-bit indices")

        arch = runtime.info().arch
        if backward_mode == "auto":
            backward_mode = "owner" if arch == "cpu" else "atomic"
        self.backward_mode = backward_mode
        # Samples of look-ahead for the software prefetch of plane texels (CPU only).
        self.prefetch = 8 if arch == "cpu" else 0
        if feature_groups is None:
            threads = _default_threads()
            feature_groups = next(g for g in range(1, self.n_features + 1)
                                  if self.n_features % g == 0
                                  and (self.n_scales * g >= threads or g == self.n_features))
        if feature_groups < 1 or self.n_features % feature_groups:
            raise ValueError(f"feature_groups ({feature_groups}) must divide n_features ({n_features})")
        self.feature_groups = int(feature_groups)
        self.n_tasks = self.n_scales * self.feature_groups

        self.params = ti.field(float, shape=self.n_params, needs_grad=True)
        self.base = ti.field(ti.i32, shape=(self.n_scales, self.n_planes))
        self.res = ti.field(ti.i32, shape=(self.n_scales, self.dims))
        self.axes = ti.field(ti.i32, shape=(self.n_planes, 2))
        # Partial coordinate gradients, one slot per backward task (>= n_scales).
        self._sink = ti.field(float, shape=())
        self._coord_part = ti.field(float, shape=(self.max_points, self.n_tasks, self.dims))

        self.base.from_numpy(np.array([spec.offset // self.n_features for spec in self.layout], np.int32)
                             .reshape(self.n_scales, self.n_planes))
        res = np.array([[r] * 3 + [self.time_res] for r in space_res], np.int32)[:, : self.dims]
        self.res.from_numpy(res)
        self.axes.from_numpy(np.array([[a, b] for _, a, b in PLANES[: self.n_planes]], np.int32))
        self.set_params(self.initial_params(seed, init_range))

    # ------------------------------------------------------------------ parameters

    def plane_names(self) -> List[str]:
        return plane_names(self.dims)

    def initial_params(self, seed: int = 0, init_range=(0.1, 0.5)) -> np.ndarray:
        """The initial flat parameters (float64): space planes uniform, time planes 1."""
        rng = np.random.default_rng(seed)
        out = np.empty(self.n_params, np.float64)
        lo, hi = float(init_range[0]), float(init_range[1])
        for spec in self.layout:
            view = out[spec.offset: spec.offset + spec.size]
            view[:] = 1.0 if spec.is_time else rng.uniform(lo, hi, spec.size)
        return out

    def get_params(self) -> np.ndarray:
        """Flat parameters as numpy, shape ``(n_params,)``."""
        return self.params.to_numpy()

    def set_params(self, values: np.ndarray) -> None:
        """Load flat parameters, shape ``(n_params,)``."""
        values = np.asarray(values)
        if values.shape != (self.n_params,):
            raise ValueError(f"expected shape ({self.n_params},), got {values.shape}")
        self.params.from_numpy(values.astype(runtime.np_float()))

    def get_grad(self) -> np.ndarray:
        """Flat parameter gradient as numpy, shape ``(n_params,)``."""
        return self.params.grad.to_numpy()

    def zero_grad(self) -> None:
        self.params.grad.fill(0.0)

    def plane_spec(self, scale: int, plane) -> PlaneSpec:
        """The :class:`PlaneSpec` of ``plane`` (a name such as ``"xt"`` or an index) at ``scale``."""
        names = self.plane_names()
        p = names.index(plane) if isinstance(plane, str) else int(plane)
        if not 0 <= scale < self.n_scales or not 0 <= p < self.n_planes:
            raise IndexError(f"no plane {plane!r} at scale {scale}")
        return self.layout[scale * self.n_planes + p]

    def plane_array(self, scale: int, plane, params: Optional[np.ndarray] = None) -> np.ndarray:
        """One plane as numpy, shape ``(height, width, F)`` = ``(res_b, res_a, F)``.

        ``params``: flat array to slice (e.g. a gradient); default the current parameters.
        """
        spec = self.plane_spec(scale, plane)
        flat = self.get_params() if params is None else np.asarray(params)
        return flat[spec.offset: spec.offset + spec.size].reshape(spec.height, spec.width, self.n_features)

    # ------------------------------------------------------------------ public passes

    def _check(self, x, feat, n: int, coord_grad: bool = False) -> None:
        if not 0 <= n <= self.max_points:
            raise ValueError(f"n={n} outside [0, max_points={self.max_points}]")
        if len(x.shape) != 2 or x.shape[1] != self.dims or x.shape[0] < n:
            raise ValueError(f"x must have shape (>= {n}, {self.dims}), got {x.shape}")
        if len(feat.shape) != 2 or feat.shape[1] != self.output_dim or feat.shape[0] < n:
            raise ValueError(f"feat must have shape (>= {n}, {self.output_dim}), got {feat.shape}")
        if coord_grad and x.grad is None:
            raise ValueError("coord_grad=True needs x created with needs_grad=True")

    def forward(self, x, feat, n: int) -> None:
        """``feat[i, s*F + f]`` = feature f of scale s at point ``x[i]``, for rows ``i < n``.

        x: field ``(N_max, dims)`` of normalised coordinates in [-1, 1] (clamped outside).
        feat: field ``(N_max, n_scales * F)``.
        """
        self._check(x, feat, n)
        if n:
            self._forward(x, feat, n)

    def backward(self, x, feat, n: int, coord_grad: bool = True, mode: Optional[str] = None) -> None:
        """Back-propagate ``feat.grad`` (rows ``< n``, left unchanged).

        ``params.grad`` += dL/dparams; when ``coord_grad``, ``x.grad[i, :]`` = dL/dx[i] for
        ``i < n`` (x needs ``needs_grad=True``). ``mode`` overrides the encoder's backward mode
        (``"owner"`` or ``"atomic"``) for this call.
        """
        self._check(x, feat, n, coord_grad)
        mode = mode or self.backward_mode
        if mode not in ("owner", "atomic"):
            raise ValueError(f"mode must be 'owner' or 'atomic', got {mode!r}")
        if not n:
            return
        if mode == "owner":
            self._backward_owner(x, feat, n, bool(coord_grad))
        else:
            self._backward_atomic(x, feat, n, bool(coord_grad))

    # ------------------------------------------------------------------ kernels

    @ti.func
    def _axis(self, xv, r):
        """Cell index, weight in the cell and d(pos)/dx (0 when clamped) of coordinate xv on an
        axis of r texels."""
        top = ti.cast(r - 1, float)
        pos = (xv + 1.0) * 0.5 * top
        dpos = 0.0
        if 0.0 <= pos <= top:
            dpos = 0.5 * top
        pos = ti.min(ti.max(pos, 0.0), top)
        j = ti.max(ti.min(ti.cast(ti.floor(pos), ti.i32), r - 2), 0)  # max(.., 0): NaN-safe
        return j, pos - ti.cast(j, float), dpos

    @ti.func
    def _plane_cell(self, x: ti.template(), i, s, p, g, width: ti.template()):
        """Plane p of scale s at point i: flat index of feature g * width of its lower texel
        corner, row stride, the two axes, their weights and d(pos)/dx."""
        a, b = self.axes[p, 0], self.axes[p, 1]
        ra = self.res[s, a]
        ia, wa, da = self._axis(x[i, a], ra)
        ib, wb, db = self._axis(x[i, b], self.res[s, b])
        # base[] is in texels. Ending the index with "* width" lets LLVM prove that c + f
        # (f < width) are consecutive addresses, so it emits SIMD loads and stores.
        groups = ti.static(self.n_features // width)
        c = ((self.base[s, p] + ib * ra + ia) * groups + g) * width
        return c, ra * self.n_features, a, b, wa, wb, da, db

    @ti.func
    def _load(self, c, width: ti.template()):
        """params[c : c + width] as a vector (consecutive loads LLVM turns into SIMD loads)."""
        v = ti.Vector([0.0] * width)
        for f in ti.static(range(width)):
            v[f] = self.params[c + f]
        return v

    @ti.func
    def _lookup(self, c, stride, wa, wb, width: ti.template()):
        """Bilinear value of features [c, c + width) and its derivatives along w_a and w_b."""
        F = ti.static(self.n_features)
        p00, p01 = self._load(c, width), self._load(c + F, width)
        p10, p11 = self._load(c + stride, width), self._load(c + stride + F, width)
        d0 = p01 - p00
        v0 = p00 + wa * d0
        v1 = p10 + wa * (p11 - p10)
        dvb = v1 - v0
        return v0 + wb * dvb, d0 + wb * (p11 - p10 - d0), dvb

    @ti.func
    def _touch(self, x: ti.template(), i, s, grp, width: ti.template(), grads: ti.template()):
        """Software prefetch: load one value of every cache line that sample i reads (and, with
        ``grads``, updates) at scale s and return their sum, which the caller passes to
        :meth:`_keep`. Issued a few samples ahead, the cache misses overlap."""
        F = ti.static(self.n_features)
        acc = 0.0
        for p in range(self.n_planes):
            c, stride, a, b, wa, wb, da, db = self._plane_cell(x, i, s, p, grp, width)
            acc += self.params[c] + self.params[c + F] + self.params[c + stride] + self.params[c + stride + F]
            if ti.static(grads):
                acc += (self.params.grad[c] + self.params.grad[c + F] + self.params.grad[c + stride]
                        + self.params.grad[c + stride + F])
        return acc

    @ti.func
    def _keep(self, v):
        """Keeps prefetch loads alive: a use LLVM cannot remove (v is never -3e38 in practice;
        if it were, an atomic add to a scratch cell would be the only effect)."""
        if v == -3.0e38:
            self._sink[None] += v

    @ti.kernel
    def _forward(self, x: ti.template(), feat: ti.template(), n: ti.i32):
        F = ti.static(self.n_features)
        for s, i in ti.ndrange(self.n_scales, n):
            if ti.static(self.prefetch > 0 and self.probe.get('fpf', 1)):
                if i + self.prefetch < n:
                    self._keep(self._touch(x, i + self.prefetch, s, 0, F, False))
            prod = ti.Vector([1.0] * F)
            for p in range(self.n_planes):
                c, stride, a, b, wa, wb, da, db = self._plane_cell(x, i, s, p, 0, F)
                val, _, _ = self._lookup(c, stride, wa, wb, F)
                prod *= val
            for f in ti.static(range(F)):
                feat[i, s * F + f] = prod[f]

    @ti.func
    def _add_grad(self, c, v, atomic: ti.template()):
        for f in ti.static(range(v.n)):
            if ti.static(atomic):
                self.params.grad[c + f] += v[f]
            else:
                self.params.grad[c + f] = self.params.grad[c + f] + v[f]

    @ti.func
    def _sample_backward(self, x: ti.template(), feat: ti.template(), i, s, grp,
                         width: ti.template(), atomic: ti.template()):
        """Adds sample i's gradient for features [grp * width, (grp + 1) * width) of scale s into
        params.grad and returns its partial gradient with respect to x[i] (a dims-vector)."""
        F = ti.static(self.n_features)
        NP = ti.static(self.n_planes)
        g = ti.Vector([0.0] * width)
        for f in ti.static(range(width)):
            g[f] = feat.grad[i, s * F + grp * width + f]
        # Pass 1: prefix products (g times the planes before p).
        pre = ti.Matrix([[0.0] * width for _ in ti.static(range(NP))])
        for p in range(NP):
            c, stride, a, b, wa, wb, da, db = self._plane_cell(x, i, s, p, grp, width)
            val, _, _ = self._lookup(c, stride, wa, wb, width)
            for f in ti.static(range(width)):
                pre[p, f] = g[f]
            g *= val
        # Pass 2, planes in reverse: times the suffix product = product of the other planes.
        cg = ti.Vector([0.0] * self.dims)
        suf = ti.Vector([1.0] * width)
        for q in range(NP):
            p = NP - 1 - q
            c, stride, a, b, wa, wb, da, db = self._plane_cell(x, i, s, p, grp, width)
            val, dva, dvb = self._lookup(c, stride, wa, wb, width)
            gv = suf
            for f in ti.static(range(width)):
                gv[f] *= pre[p, f]
            suf *= val
            gb = gv * wb
            ga = gv - gb
            self._add_grad(c, ga - ga * wa, atomic)
            self._add_grad(c + F, ga * wa, atomic)
            self._add_grad(c + stride, gb - gb * wa, atomic)
            self._add_grad(c + stride + F, gb * wa, atomic)
            cg[a] += gv.dot(dva) * da
            cg[b] += gv.dot(dvb) * db
        return cg

    @ti.func
    def _coord_sum(self, i, a, parts):
        acc = 0.0
        for t in range(parts):
            acc += self._coord_part[i, t, a]
        return acc

    @ti.kernel
    def _backward_owner(self, x: ti.template(), feat: ti.template(), n: ti.i32,
                        coord_grad: ti.template()):
        G = ti.static(self.feature_groups)
        FG = ti.static(self.n_features // self.feature_groups)
        ti.loop_config(block_dim=1)
        for task in range(self.n_tasks):
            s = self.n_scales - 1 - task // G  # largest scale first: better balance
            grp = task % G
            dummy = 0.0
            for i in range(n):  # serial: this task alone writes its (scale, features) slots
                if ti.static(self.prefetch > 0):
                    if i + self.prefetch < n:
                        dummy += self._touch(x, i + self.prefetch, s, grp, FG, True)
                cg = self._sample_backward(x, feat, i, s, grp, FG, False)
                if ti.static(coord_grad):
                    for a in ti.static(range(self.dims)):
                        self._coord_part[i, task, a] = cg[a]
            self._keep(dummy)
        if ti.static(coord_grad):
            for i, a in ti.ndrange(n, self.dims):
                x.grad[i, a] = self._coord_sum(i, a, self.n_tasks)

    @ti.kernel
    def _backward_atomic(self, x: ti.template(), feat: ti.template(), n: ti.i32,
                         coord_grad: ti.template()):
        for s, i in ti.ndrange(self.n_scales, n):
            cg = self._sample_backward(x, feat, i, s, 0, self.n_features, True)
            if ti.static(coord_grad):
                for a in ti.static(range(self.dims)):
                    self._coord_part[i, s, a] = cg[a]
        if ti.static(coord_grad):
            for i, a in ti.ndrange(n, self.dims):
                x.grad[i, a] = self._coord_sum(i, a, self.n_scales)
