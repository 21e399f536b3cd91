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
  ``(s, g)`` walks all samples serially and alone owns feature group ``g`` of every plane of
  scale ``s``, so it adds into ``params.grad`` with plain (non-atomic) read-modify-writes. A few
  workers take tasks from an atomic counter (finest scale first). Race-free on any backend and
  deterministic (fixed summation order). Each task writes its partial coordinate gradient to a
  buffer that a second loop sums into ``x.grad``. The samples of a task are prefetched
  ``prefetch`` samples ahead (plain loads; the texels of random points miss the cache).
* ``"atomic"`` (GPU default): one thread per (sample, scale), atomic adds.

Speed (published size: 4 scales 64..512, time 150, F = 16; 262,144 random points; f32; 2 CPU
threads, quiet machine): forward 150 ms, owner backward 430 ms, atomic backward 2.1 s. Features
are processed as F-wide vectors (SIMD): flat indices end with ``* width`` so that LLVM can prove
``c + f`` consecutive. The plane loop is dynamic (a static unroll of 6 planes x 16 features took
minutes to compile).

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
_SLOT_PAD = 512  # see _backward_owner
# Compile-time configuration tuple passed to the kernels (a ti.template() argument):
_DIMS, _F, _NP, _NS, _G, _PREFETCH, _SPLIT, _SLOTS = range(8)


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


def _has_grad(field) -> bool:
    """Whether a Taichi field was created with needs_grad=True (its ``.grad`` is never None)."""
    try:
        return bool(field.snode.ptr.has_adjoint())
    except AttributeError:
        return False


def _default_threads() -> int:
    threads = runtime.info().threads
    return int(threads) if threads else (os.cpu_count() or 1)


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
        threads = _default_threads()
        if feature_groups is None:
            feature_groups = next(g for g in range(1, self.n_features + 1)
                                  if self.n_features % g == 0
                                  and (self.n_scales * g >= threads or g == self.n_features))
        if feature_groups < 1 or self.n_features % feature_groups:
            raise ValueError(f"feature_groups ({feature_groups}) must divide n_features ({n_features})")
        self.feature_groups = int(feature_groups)
        self.n_tasks = self.n_scales * self.feature_groups

        self.params = ti.field(float, shape=self.n_params, needs_grad=True)
        self.meta = ti.field(ti.i32, shape=(self.n_scales, self.n_planes, 5))
        self._sink = ti.field(float, shape=())
        self._counter = ti.field(ti.i32, shape=())
        # Partial coordinate gradients, one slot per backward task (>= n_scales).
        self._coord_part = ti.field(float, shape=(self.max_points, self.n_tasks, self.dims))
        self.meta.from_numpy(np.array(
            [[spec.offset // self.n_features, spec.width, spec.height, spec.axis_a, spec.axis_b]
             for spec in self.layout], np.int32).reshape(self.n_scales, self.n_planes, 5))
        self._cfg = (self.dims, self.n_features, self.n_planes, self.n_scales, self.feature_groups,
                     8 if arch == "cpu" else 0, threads if arch == "cpu" else 1,
                     min(threads, self.n_tasks) if arch == "cpu" else self.n_tasks)
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
        values = values.astype(runtime.np_float())
        if not np.all(np.isfinite(values)):
            raise ValueError("plane parameters must be finite")
        self.params.from_numpy(values)

    def get_grad(self) -> np.ndarray:
        """Flat parameter gradient as numpy, shape ``(n_params,)``."""
        return self.params.grad.to_numpy()

    def zero_grad(self) -> None:
        self.params.grad.fill(0.0)

    def plane_spec(self, scale: int, plane) -> PlaneSpec:
        """The :class:`PlaneSpec` of ``plane`` (a name such as ``"xt"`` or an index) at ``scale``."""
        names = self.plane_names()
        if isinstance(plane, str) and plane not in names:
            raise ValueError(f"unknown plane {plane!r}; this encoder has {', '.join(names)}")
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

    def _check(self, x, feat, n: int, backward: bool = False, coord_grad: bool = False) -> None:
        if not 0 <= n <= self.max_points:
            raise ValueError(f"n={n} outside [0, max_points={self.max_points}]")
        if len(x.shape) != 2 or x.shape[1] != self.dims or x.shape[0] < n:
            raise ValueError(f"x must have shape (>= {n}, {self.dims}), got {x.shape}")
        if len(feat.shape) != 2 or feat.shape[1] != self.output_dim or feat.shape[0] < n:
            raise ValueError(f"feat must have shape (>= {n}, {self.output_dim}), got {feat.shape}")
        if backward and not _has_grad(feat):
            raise ValueError("backward needs feat created with needs_grad=True")
        if coord_grad and not _has_grad(x):
            raise ValueError("coord_grad=True needs x created with needs_grad=True")

    def forward(self, x, feat, n: int) -> None:
        """``feat[i, s*F + f]`` = feature f of scale s at point ``x[i]``, for rows ``i < n``.

        x: field ``(N_max, dims)`` of normalised coordinates in [-1, 1] (clamped outside).
        feat: field ``(N_max, n_scales * F)``.
        """
        self._check(x, feat, n)
        if n:
            _forward(self.params, self.meta, x, feat, n, self._cfg)

    def backward(self, x, feat, n: int, coord_grad: bool = True, mode: Optional[str] = None) -> None:
        """Back-propagate ``feat.grad`` (rows ``< n``, left unchanged).

        ``params.grad`` += dL/dparams; when ``coord_grad``, ``x.grad[i, :]`` = dL/dx[i] for
        ``i < n`` (x needs ``needs_grad=True``). ``mode`` overrides the encoder's backward mode
        (``"owner"`` or ``"atomic"``) for this call.
        """
        self._check(x, feat, n, True, coord_grad)
        mode = mode or self.backward_mode
        if mode not in ("owner", "atomic"):
            raise ValueError(f"mode must be 'owner' or 'atomic', got {mode!r}")
        if not n:
            return
        if mode == "owner":
            _backward_owner(self.params, self.meta, self._coord_part, self._sink, self._counter,
                            x, feat, n, bool(coord_grad), self._cfg)
        else:
            _backward_atomic(self.params, self.meta, self._coord_part, x, feat, n,
                             bool(coord_grad), self._cfg)


# --------------------------------------------------------------------------- kernels
# Module-level kernels: fields and the compile-time configuration tuple are template arguments,
# so one compiled instance serves each encoder and Taichi's offline cache can keep it.
# meta[s, p, :] = (first texel of plane p of scale s, width, height, column axis, row axis).


@ti.func
def _axis(xv, r):
    """Cell index, weight in the cell and d(pos)/dx (0 when clamped) of coordinate xv on an axis
    of r texels."""
    top = ti.cast(r - 1, float)
    pos = (xv + 1.0) * 0.5 * top
    dpos = 0.0
    if 0.0 <= pos <= top:
        dpos = 0.5 * top
    pos = ti.min(ti.max(pos, 0.0), top)
    j = ti.max(ti.min(ti.cast(ti.floor(pos), ti.i32), r - 2), 0)  # max(.., 0): NaN-safe
    return j, pos - ti.cast(j, float), dpos


@ti.func
def _plane_cell(meta: ti.template(), x: ti.template(), i, s, p, grp, width: ti.template(),
                cfg: ti.template()):
    """Plane p of scale s at point i: flat index of feature grp * width of the lower corner texel,
    row stride, the two axes, their weights and d(pos)/dx."""
    a, b = meta[s, p, 3], meta[s, p, 4]
    ra = meta[s, p, 1]
    ia, wa, da = _axis(x[i, a], ra)
    ib, wb, db = _axis(x[i, b], meta[s, p, 2])
    # Texel index first, "* width" last: LLVM can then prove that c + f (f < width) are
    # consecutive addresses and emits SIMD loads and stores.
    groups = ti.static(cfg[_F] // width)
    c = ((meta[s, p, 0] + ib * ra + ia) * groups + grp) * width
    return c, ra * cfg[_F], a, b, wa, wb, da, db


@ti.func
def _load(params: ti.template(), c, width: ti.template()):
    v = ti.Vector([0.0] * width)
    for f in ti.static(range(width)):
        v[f] = params[c + f]
    return v


@ti.func
def _lookup(params: ti.template(), c, stride, wa, wb, width: ti.template(), F: ti.template()):
    """Bilinear value of features [c, c + width) and its derivatives along wa and wb."""
    p00, p01 = _load(params, c, width), _load(params, c + F, width)
    p10, p11 = _load(params, c + stride, width), _load(params, c + stride + F, width)
    d0 = p01 - p00
    v0 = p00 + wa * d0
    v1 = p10 + wa * (p11 - p10)
    dvb = v1 - v0
    return v0 + wb * dvb, d0 + wb * (p11 - p10 - d0), dvb


@ti.kernel
def _forward(params: ti.template(), meta: ti.template(), x: ti.template(), feat: ti.template(),
             n: ti.i32, cfg: ti.template()):
    F = ti.static(cfg[_F])
    # Flattened as (thread, scale, sample): the CPU range-for gives each thread one contiguous
    # range, so every thread walks its samples scale by scale (one scale's planes in cache at a
    # time) and the threads share the expensive fine scales evenly.
    chunk = (n + cfg[_SPLIT] - 1) // cfg[_SPLIT]
    for t, s, k in ti.ndrange(cfg[_SPLIT], cfg[_NS], chunk):
        i = t * chunk + k
        if i < n:
            prod = ti.Vector([1.0] * F)
            for p in range(cfg[_NP]):
                c, stride, a, b, wa, wb, da, db = _plane_cell(meta, x, i, s, p, 0, F, cfg)
                val, _, _ = _lookup(params, c, stride, wa, wb, F, F)
                prod *= val
            for f in ti.static(range(F)):
                feat[i, s * F + f] = prod[f]


@ti.func
def _add_grad(params: ti.template(), c, v, atomic: ti.template()):
    for f in ti.static(range(v.n)):
        if ti.static(atomic):
            params.grad[c + f] += v[f]
        else:
            params.grad[c + f] = params.grad[c + f] + v[f]


@ti.func
def _sample_backward(params: ti.template(), meta: ti.template(), x: ti.template(),
                     feat: ti.template(), i, s, grp, width: ti.template(), atomic: ti.template(),
                     cfg: ti.template()):
    """Adds sample i's gradient for features [grp * width, (grp + 1) * width) of scale s into
    params.grad and returns its partial gradient with respect to x[i] (a dims-vector)."""
    F = ti.static(cfg[_F])
    NP = ti.static(cfg[_NP])
    g = ti.Vector([0.0] * width)
    for f in ti.static(range(width)):
        g[f] = feat.grad[i, s * F + grp * width + f]
    # Pass 1: prefix products, pre[p] = g * (product of the planes before p).
    pre = ti.Matrix([[0.0] * width for _ in ti.static(range(NP))])
    for p in range(NP):
        c, stride, a, b, wa, wb, da, db = _plane_cell(meta, x, i, s, p, grp, width, cfg)
        val, _, _ = _lookup(params, c, stride, wa, wb, width, F)
        for f in ti.static(range(width)):
            pre[p, f] = g[f]
        g *= val
    # Pass 2, planes in reverse: times the suffix product gives dL/d(value of plane p) =
    # g * (product of the other planes), without a division.
    cg = ti.Vector([0.0] * cfg[_DIMS])
    suf = ti.Vector([1.0] * width)
    for q in range(NP):
        p = NP - 1 - q
        c, stride, a, b, wa, wb, da, db = _plane_cell(meta, x, i, s, p, grp, width, cfg)
        val, dva, dvb = _lookup(params, c, stride, wa, wb, width, F)
        gv = suf
        for f in ti.static(range(width)):
            gv[f] *= pre[p, f]
        suf *= val
        gb = gv * wb
        ga = gv - gb
        _add_grad(params, c, ga - ga * wa, atomic)
        _add_grad(params, c + F, ga * wa, atomic)
        _add_grad(params, c + stride, gb - gb * wa, atomic)
        _add_grad(params, c + stride + F, gb * wa, atomic)
        cg[a] += gv.dot(dva) * da
        cg[b] += gv.dot(dvb) * db
    return cg


@ti.func
def _touch(params: ti.template(), meta: ti.template(), x: ti.template(), i, s, grp,
           width: ti.template(), cfg: ti.template()):
    """Software prefetch: loads one value of every cache line that sample i reads and updates at
    scale s; returns their sum for _keep. Issued a few samples ahead, the cache misses of the
    random texels overlap instead of queueing (2x faster backward on CPU)."""
    F = ti.static(cfg[_F])
    acc = 0.0
    for p in range(cfg[_NP]):
        c, stride, a, b, wa, wb, da, db = _plane_cell(meta, x, i, s, p, grp, width, cfg)
        acc += params[c] + params[c + F] + params[c + stride] + params[c + stride + F]
        acc += params.grad[c] + params.grad[c + F] + params.grad[c + stride] + params.grad[c + stride + F]
    return acc


@ti.func
def _coord_sum(part: ti.template(), i, a, count):
    acc = 0.0
    for t in range(count):
        acc += part[i, t, a]
    return acc


@ti.kernel
def _backward_owner(params: ti.template(), meta: ti.template(), part: ti.template(),
                    sink: ti.template(), counter: ti.template(), x: ti.template(),
                    feat: ti.template(), n: ti.i32, coord_grad: ti.template(), cfg: ti.template()):
    G = ti.static(cfg[_G])
    FG = ti.static(cfg[_F] // cfg[_G])
    counter[None] = 0
    # One worker per slot; workers take tasks from the atomic counter, finest (slowest) scale
    # first, so the load balances. Taichi's CPU range-for gives each thread a contiguous block of
    # at least 512 iterations, hence the padding: slot k runs at iteration k * _SLOT_PAD.
    # (Correct for any split; the padding only decides how many slots run at once.)
    for k in range(cfg[_SLOTS] * _SLOT_PAD):
        if k % _SLOT_PAD == 0:
            fetched = 0.0
            task = ti.atomic_add(counter[None], 1)
            while task < cfg[_NS] * G:
                s = cfg[_NS] - 1 - task // G
                grp = task % G
                for i in range(n):  # serial: only this task writes its (scale, group) slots
                    if ti.static(cfg[_PREFETCH] > 0):
                        if i + cfg[_PREFETCH] < n:
                            fetched += _touch(params, meta, x, i + cfg[_PREFETCH], s, grp, FG, cfg)
                    cg = _sample_backward(params, meta, x, feat, i, s, grp, FG, False, cfg)
                    if ti.static(coord_grad):
                        for a in ti.static(range(cfg[_DIMS])):
                            part[i, task, a] = cg[a]
                task = ti.atomic_add(counter[None], 1)
            # Keeps the prefetch loads alive: fetched (a sum of parameters) is never -3e38 in
            # practice; if it were, an atomic add to a scratch cell would be the only effect.
            if fetched == -3.0e38:
                sink[None] += fetched
    if ti.static(coord_grad):
        for i, a in ti.ndrange(n, cfg[_DIMS]):
            x.grad[i, a] = _coord_sum(part, i, a, cfg[_NS] * G)


@ti.kernel
def _backward_atomic(params: ti.template(), meta: ti.template(), part: ti.template(),
                     x: ti.template(), feat: ti.template(), n: ti.i32, coord_grad: ti.template(),
                     cfg: ti.template()):
    for s, i in ti.ndrange(cfg[_NS], n):
        cg = _sample_backward(params, meta, x, feat, i, s, 0, cfg[_F], True, cfg)
        if ti.static(coord_grad):
            for a in ti.static(range(cfg[_DIMS])):
                part[i, s, a] = cg[a]
    if ti.static(coord_grad):
        for i, a in ti.ndrange(n, cfg[_DIMS]):
            x.grad[i, a] = _coord_sum(part, i, a, cfg[_NS])
