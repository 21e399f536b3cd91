"""Differentiable tile rasterizer of 3-D Gaussians (3D Gaussian Splatting), forward and backward.

One camera per call. Forward (per Gaussian, then per 16x16 tile, then per pixel):

1. camera space ``p = R x + t`` (OpenCV axes: x right, y down, z forward); culled if
   ``p_z <= 0.01``; pixel ``u = fx p_x / p_z + cx``, ``v = fy p_y / p_z + cy``;
2. ``Sigma = R(q) S S^T R(q)^T``, ``S = diag(exp(log_scale))``, quaternion ``q = (w, x, y, z)``
   normalised here;
3. EWA: ``Sigma2 = A Sigma A^T + 0.3 I``, ``A = J R``,
   ``J = [[fx, 0, -fx tx], [0, fy, -fy ty]] / p_z``
   with ``tx = clamp(p_x / p_z)`` (likewise ty) to the field of view widened by 0.3 x its half
   width on each side: ``[-(cx/fx + 0.15 W/fx), (W - cx)/fx + 0.15 W/fx]`` (gsplat's form; with a
   centred principal point it is 3DGS's ``1.3 tan(fov/2)``). The clamp only enters J;
4. colour ``max(0, sum_k Y_k(d) sh_k + 0.5)`` per channel, ``d = normalise(x - camera centre)``;
5. opacity ``sigmoid(logit)``;
6. radius ``ceil(3 sqrt(lambda))``, ``lambda = mid + sqrt(max(0.1, mid^2 - det))`` as in 3DGS;
   the Gaussian is listed in every tile its square ``+-radius`` box touches; each tile's list is
   sorted by (camera z, Gaussian index) - exact float keys, ties by index;
7. per pixel, front to back over its tile's list: ``alpha = min(0.99, o exp(power))``,
   ``power = -0.5 d^T Sigma2^-1 d`` (skipped if > 0), skipped if ``alpha < alpha_min`` (1/255), and
   the pixel stops BEFORE a Gaussian that would bring ``T`` below ``t_min`` (1e-4). Outputs:
   ``colour = sum w_i c_i + T bg``, ``alpha = 1 - T``, ``depth = sum w_i z_i`` with
   ``w_i = alpha_i T_i``: depth is NOT normalised by alpha (divide yourself for the expected z of
   the visible surface), as in kernels/render.py.

Pixel ``(x, y)`` (column, row) is sampled at its centre ``(x + 0.5, y + 0.5)``, the convention of
taichi_syncnerf/data/cameras.py (3DGS samples integer coordinates with ``cx = (W - 1) / 2``: the
same thing for a centred principal point ``cx = W / 2``).

Cameras. The datasets give OpenGL camera-to-world matrices (columns right, up, back, centre; see
data/cameras.py). :meth:`Camera.from_opengl_c2w` turns them into the OpenCV world-to-camera this
module uses: ``R = diag(1, -1, -1) R_gl^T``, ``t = -R c``. Forward-facing datasets (LLFF, Plenoptic
Video) are rendered by K-Planes in NDC; Gaussians do not use NDC: pass the world-space camera (the
recentred, scaled pose the loader returns, before ``ndc_rays``).

Spherical harmonics: degree ``D`` in 0..3 (the 3DGS count: ``(D + 1)^2`` coefficients; kernels/sh.py
counts bands, ``D + 1``); the polynomials and their order are kernels/sh.py's, which equal 3DGS's.
Field ``sh`` is (N, 3 K) with coefficient ``k`` of channel ``c`` at column ``3 k + c`` (3DGS's
in-memory (N, K, 3); its .ply stores f_rest channel-major instead).

Backward (hand-written, no Taichi autodiff): per pixel back to front from the last contributing
Gaussian, ``T_i = T_{i+1} / (1 - alpha_i)`` from the stored final T, and the colour ``B`` of what
lies behind, giving
``dL/dalpha_i = T_i sum_ch (c_i - B_i) g_ch - T_final / (1 - alpha_i) <bg, g_colour>``
where colour, depth (c = z, bg 0) and alpha (c = 1, bg 0) are channels. Pixel contributions add
into one slot per (tile, Gaussian) list entry, the slots laid out Gaussian-major (each Gaussian
owns one per tile of its rect); each Gaussian then sums its contiguous slots (deterministic, no
atomics) and chains through conic, EWA, projection, SH direction, rotation, scales and
activations. Exact derivatives everywhere:
unlike the CUDA original, a pixel where ``alpha`` hits the 0.99 clamp passes no gradient to
opacity and shape, and the field-of-view clamp of J is differentiated as written. The skips
(power > 0, alpha < alpha_min, T < t_min) make the loss piecewise smooth; gradients are those of
the smooth piece.

Per-tile sorting is a merge sort of each tile's list, one thread per tile; lists are filled with
atomic counters then sorted, so the result does not depend on thread timing. A pixel skips
without ``exp`` a Gaussian whose ``power`` is below ``log(alpha_min / o) - 1e-3`` (then
``o e^power < alpha_min`` whatever the rounding): the same decisions as the plain test.
``pixel_parallel`` picks the backward's loop: one thread per tile walking its 256 pixels (CPU
default: no atomics) or one per pixel with atomic adds into the entry slots (GPU default).

Example::

    ras = Rasterizer(max_gaussians=20000, width=128, height=96, sh_degree=3)
    cam = Camera.from_opengl_c2w(intrinsics, c2w)
    ras.forward(means, log_scales, quats, opacity_logits, sh, n, cam, background=(1, 1, 1))
    ... write ras.colour.grad (e.g. from a loss kernel) ...
    ras.backward(d_colour=ras.colour.grad)
    ras.d_means, ras.d_log_scales, ras.d_quats, ras.d_opacity_logits, ras.d_sh  # rows < n
"""

import math
import time
from dataclasses import dataclass

import numpy as np
import taichi as ti
from taichi.lang.util import to_numpy_type

from .sh import C0, C1, C2, C3

TILE = 16
NEAR = 0.01
LOW_PASS = 0.3
FOV_MARGIN = 0.3  # J's clamp: the half field of view widened by 0.3 x tan(fov / 2) on each side
ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
MAX_SH_DEGREE = 3
CULL_SLACK = 1e-3  # relative margin of the per-tile reach test (_tile_hit)
LANES = 16  # pixels of a row blended together by the render-only kernel (forward(backward=False))
# packed per-Gaussian render data (_gdata columns; the first N_DATA are also the order of the
# per-entry gradient slots); LCUT: a power below it gives alpha < alpha_min for sure (exp skipped)
U, V, KA, KB, KC, OPA, RED, Z, LCUT = 0, 1, 2, 3, 4, 5, 6, 9, 10
N_DATA = 10
G_STRIDE = 16  # _gdata row length (N_DATA + 1 used): a power of two, so a row is one shift away
# e^x of the render-only kernel (_exp_neg): x = k ln2 + r, |r| <= ln2 / 2 (r in float64), e^r by
# a polynomial; per runtime precision: the clamp below which e^x is taken as e^clamp (far under
# any alpha_min / opacity that matters) and the polynomial (f32: degree 7, a Chebyshev fit of
# relative error 6e-11, evaluated in float32: within 1 ulp of the correctly rounded e^x, exact for
# about 90 % of arguments; f64: Taylor to degree 13 in float64, relative error about 2e-16)
LOG2E, LN2 = 1.4426950408889634, 0.6931471805599453
EXP_POLY = {"f32": (0.9999999999595297, 0.9999999999955099, 0.5000000107793305, 0.16666666786348713,
                    0.04166621814088921, 0.008333283524270554, 0.0013948590223997939,
                    0.00019907579913310515),
            "f64": tuple(1.0 / math.factorial(k) for k in range(14))}
EXP_FLOOR = {"f32": -88.0, "f64": -700.0}


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics in pixels, OpenCV world-to-camera ``p = R x + t``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)

    def __post_init__(self):
        object.__setattr__(self, "R", np.asarray(self.R, np.float64).reshape(3, 3))
        object.__setattr__(self, "t", np.asarray(self.t, np.float64).reshape(3))
        if self.width < 1 or self.height < 1 or not (self.fx > 0 and self.fy > 0):
            raise ValueError("camera needs width, height >= 1 and fx, fy > 0")

    @classmethod
    def from_opengl_c2w(cls, intrinsics, c2w) -> "Camera":
        """From the project's intrinsics (fx, fy, cx, cy, width, height) and a (3, 4) OpenGL
        camera-to-world matrix (data/cameras.py's convention)."""
        c2w = np.asarray(c2w, np.float64)
        R = np.diag([1.0, -1.0, -1.0]) @ c2w[:3, :3].T
        return cls(float(intrinsics.fx), float(intrinsics.fy), float(intrinsics.cx),
                   float(intrinsics.cy), int(intrinsics.width), int(intrinsics.height), R,
                   -R @ c2w[:3, 3])

    @property
    def centre(self) -> np.ndarray:
        return -self.R.T @ self.t

    def kernel_args(self) -> tuple:
        """R (9, row-major), t (3), fx, fy, cx, cy as floats, then width, height."""
        return (*(float(v) for v in self.R.ravel()), *(float(v) for v in self.t),
                float(self.fx), float(self.fy), float(self.cx), float(self.cy),
                int(self.width), int(self.height))


def n_coefficients(sh_degree: int) -> int:
    return (sh_degree + 1) ** 2


# ------------------------------------------------------------------------------- helpers


@ti.func
def _quat_rot(q):
    """Rotation matrix of the unit quaternion q = (w, x, y, z)."""
    w, x, y, z = q[0], q[1], q[2], q[3]
    return ti.Matrix([[1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
                      [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
                      [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)]])


@ti.func
def _quat_rot_grad(q, G):
    """dL/dq of L(R(q)) for dL/dR = G (q unit, treated as free)."""
    w, x, y, z = q[0], q[1], q[2], q[3]
    return 2.0 * ti.Vector([
        -z * G[0, 1] + y * G[0, 2] + z * G[1, 0] - x * G[1, 2] - y * G[2, 0] + x * G[2, 1],
        y * G[0, 1] + z * G[0, 2] + y * G[1, 0] - 2.0 * x * G[1, 1] - w * G[1, 2] + z * G[2, 0]
        + w * G[2, 1] - 2.0 * x * G[2, 2],
        -2.0 * y * G[0, 0] + x * G[0, 1] + w * G[0, 2] + x * G[1, 0] + z * G[1, 2] - w * G[2, 0]
        + z * G[2, 1] - 2.0 * y * G[2, 2],
        -2.0 * z * G[0, 0] - w * G[0, 1] + x * G[0, 2] + w * G[1, 0] - 2.0 * z * G[1, 1]
        + y * G[1, 2] + x * G[2, 0] + y * G[2, 1]])


@ti.func
def _sh_basis(d):
    """The 16 real SH polynomials (kernels/sh.py order) at the unit direction d."""
    x, y, z = d[0], d[1], d[2]
    x2, y2, z2 = x * x, y * y, z * z
    return ti.Vector([
        C0, -C1 * y, C1 * z, -C1 * x,
        C2[0] * x * y, -C2[0] * y * z, C2[1] * z2 - C2[2], -C2[0] * x * z, C2[3] * (x2 - y2),
        C3[0] * y * (y2 - 3.0 * x2), C3[1] * x * y * z, C3[2] * y * (1.0 - 5.0 * z2),
        C3[3] * z * (5.0 * z2 - 3.0), C3[2] * x * (1.0 - 5.0 * z2), C3[4] * z * (x2 - y2),
        C3[0] * x * (3.0 * y2 - x2)])


@ti.func
def _sh_basis_grad(d, wk):
    """sum_k wk[k] dY_k/d(x, y, z) at d (polynomial partial derivatives, 16 weights)."""
    x, y, z = d[0], d[1], d[2]
    x2, y2, z2 = x * x, y * y, z * z
    gx = (-C1 * wk[3] + C2[0] * y * wk[4] - C2[0] * z * wk[7] + 2.0 * C2[3] * x * wk[8]
          - 6.0 * C3[0] * x * y * wk[9] + C3[1] * y * z * wk[10] + C3[2] * (1.0 - 5.0 * z2) * wk[13]
          + 2.0 * C3[4] * x * z * wk[14] + 3.0 * C3[0] * (y2 - x2) * wk[15])
    gy = (-C1 * wk[1] + C2[0] * x * wk[4] - C2[0] * z * wk[5] - 2.0 * C2[3] * y * wk[8]
          + 3.0 * C3[0] * (y2 - x2) * wk[9] + C3[1] * x * z * wk[10]
          + C3[2] * (1.0 - 5.0 * z2) * wk[11]
          - 2.0 * C3[4] * y * z * wk[14] + 6.0 * C3[0] * x * y * wk[15])
    gz = (C1 * wk[2] - C2[0] * y * wk[5] + 2.0 * C2[1] * z * wk[6] - C2[0] * x * wk[7]
          + C3[1] * x * y * wk[10] - 10.0 * C3[2] * y * z * wk[11]
          + C3[3] * (15.0 * z2 - 3.0) * wk[12]
          - 10.0 * C3[2] * x * z * wk[13] + C3[4] * (x2 - y2) * wk[14])
    return ti.Vector([gx, gy, gz])


@ti.func
def _tile_span(m, r, n_tiles):
    """Tiles [first, last) covering pixel indices m - r .. m + r, clamped to [0, n_tiles]."""
    first = ti.min(ti.max(ti.floor((m - r) / TILE), 0.0), n_tiles)
    last = ti.min(ti.max(ti.floor((m + r + TILE - 1) / TILE), 0.0), n_tiles)
    return int(first), int(last)


@ti.func
def _quad(ka, kb, kc, dx, dy):
    return ka * dx * dx + 2.0 * kb * dx * dy + kc * dy * dy


@ti.func
def _tile_hit(u, v, ka, kb, kc, lcut, tx, ty, w, h) -> bool:
    """Whether any pixel centre of tile (tx, ty) can pass the skip test ``power >= lcut`` of a
    Gaussian at (u, v) with conic (ka, kb, kc): the minimum of ``q = -2 power`` over the tile's
    rectangle of pixel centres against ``-2 lcut`` (float64, with a margin far above the float32
    rounding of the pixels' own test). A tile it cannot reach gets no list entry: the same pixels
    blend the same Gaussians, in shorter lists."""
    hit = True
    if lcut > -1.0e29:
        u64, v64 = ti.cast(u, ti.f64), ti.cast(v, ti.f64)
        a, b, c = ti.cast(ka, ti.f64), ti.cast(kb, ti.f64), ti.cast(kc, ti.f64)
        dxlo = u64 - ti.min(ti.cast(tx * TILE, ti.f64) + TILE - 0.5, ti.cast(w, ti.f64) - 0.5)
        dxhi = u64 - (ti.cast(tx * TILE, ti.f64) + 0.5)
        dylo = v64 - ti.min(ti.cast(ty * TILE, ti.f64) + TILE - 0.5, ti.cast(h, ti.f64) - 0.5)
        dyhi = v64 - (ti.cast(ty * TILE, ti.f64) + 0.5)
        qmin = ti.cast(0.0, ti.f64)
        if not (dxlo <= 0.0 and dxhi >= 0.0 and dylo <= 0.0 and dyhi >= 0.0):
            qmin = ti.cast(1.0e300, ti.f64)
            for k in ti.static(range(2)):
                dx = dxlo if k == 0 else dxhi
                dy = ti.min(ti.max(-b * dx / c, dylo), dyhi)
                qmin = ti.min(qmin, _quad(a, b, c, dx, dy))
                dy2 = dylo if k == 0 else dyhi
                dx2 = ti.min(ti.max(-b * dy2 / a, dxlo), dxhi)
                qmin = ti.min(qmin, _quad(a, b, c, dx2, dy2))
        limit = -2.0 * ti.cast(lcut, ti.f64)
        hit = qmin <= limit + CULL_SLACK * (1.0 + ti.abs(limit))
    return hit


@ti.func
def _entry_less(k1, i1, k2, i2):
    """Order of list entries: camera z, then Gaussian index."""
    return k1 < k2 or (k1 == k2 and i1 < i2)


@ti.func
def _merge(sk: ti.template(), si: ti.template(), dk: ti.template(), di: ti.template(), lo, mid, hi):
    """Stable merge of sorted runs [lo, mid) and [mid, hi) of (sk, si) into (dk, di)."""
    i, j = lo, mid
    for o in range(lo, hi):
        take_right = False
        if i >= mid:
            take_right = True
        elif j < hi:
            take_right = _entry_less(sk[j], si[j], sk[i], si[i])
        if take_right:
            dk[o], di[o] = sk[j], si[j]
            j += 1
        else:
            dk[o], di[o] = sk[i], si[i]
            i += 1


@ti.func
def _exp_neg(x, floor: ti.template(), poly: ti.template(), single: ti.template()):
    """e^x for x <= 0 (x clamped to [floor, 0]) without a libm call, so that the lanes of the
    render-only kernel stay in vector registers: range reduction ``x = k ln2 + r`` and a polynomial
    in ``r`` (see EXP_POLY). ``single``: the reduction in float64 (compilers may reassociate a
    float32 two-constant reduction), the polynomial and the scaling in float32; else all in
    float64, rounded to the runtime's float."""
    if ti.static(single):
        xf = ti.min(ti.max(ti.cast(x, ti.f32), ti.f32(floor)), ti.f32(0.0))
        k = ti.cast(xf * ti.f32(LOG2E) - ti.f32(0.5), ti.i32)  # round to nearest (xf <= 0)
        r = ti.cast(ti.cast(xf, ti.f64) - ti.cast(k, ti.f64) * ti.f64(LN2), ti.f32)
        deg = ti.static(len(poly) - 1)
        y = ti.f32(poly[deg])
        for i in ti.static(range(deg - 1, -1, -1)):
            y = y * r + ti.f32(poly[i])
        return ti.cast(y * ti.bit_cast((k + 127) << 23, ti.f32), float)
    else:
        xd = ti.cast(ti.min(ti.max(x, floor), 0.0), ti.f64)
        k = ti.cast(xd * ti.f64(LOG2E) - ti.f64(0.5), ti.i32)  # round to nearest (xd <= 0)
        r = xd - ti.cast(k, ti.f64) * ti.f64(LN2)
        deg = ti.static(len(poly) - 1)
        y = ti.f64(poly[deg])
        for i in ti.static(range(deg - 1, -1, -1)):
            y = y * r + ti.f64(poly[i])
        return ti.cast(y * ti.bit_cast(ti.cast(k + 1023, ti.i64) << 52, ti.f64), float)


# ------------------------------------------------------------------------------- rasterizer


@ti.data_oriented
class Rasterizer:
    """Tile rasterizer with capacity for ``max_gaussians`` Gaussians of SH degree <= ``sh_degree``
    and images up to ``width`` x ``height``.

    Outputs of :meth:`forward` (image rows < camera height, columns < camera width):
    ``colour`` (H, W, 3), ``alpha`` (H, W), ``depth`` (H, W) (all with ``needs_grad``: their
    ``.grad`` may hold the output gradients), ``final_t`` (H, W), ``n_contrib`` (H, W) int32 (list
    position + 1 of the last Gaussian blended), ``radius`` (N,) int32 (0: culled or off-screen),
    ``n_entries`` (tile-list entries).

    Outputs of :meth:`backward` (rows < n, OVERWRITTEN; plain fields, e.g. for a deformation
    field's backward to read): ``d_means`` (N, 3), ``d_log_scales`` (N, 3), ``d_quats`` (N, 4),
    ``d_opacity_logits`` (N,), ``d_sh`` (N, 3 K), ``d_background`` (3,), ``d_mean2d`` (N, 2)
    (dL/d(u, v) in pixels) and ``d_mean2d_norm_ndc`` (N,): |dL/d(u, v)| in the NDC units of 3DGS's
    densification statistic (pixel gradient x (W/2, H/2)); the caller accumulates it over views.

    The per-entry buffers start at ``max_entries`` (default 16 per Gaussian) and are reallocated
    1.5x larger when a frame needs more (the old fields are not freed; kernels using them
    compile again once).
    """

    def __init__(self, max_gaussians: int, width: int, height: int, sh_degree: int = 3,
                 max_entries: int | None = None, pixel_parallel: bool | None = None):
        if max_gaussians < 1 or width < 1 or height < 1:
            raise ValueError("max_gaussians, width and height must be >= 1")
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {sh_degree}")
        N, W, H = int(max_gaussians), int(width), int(height)
        self.max_gaussians, self.width, self.height, self.sh_degree = N, W, H, int(sh_degree)
        self.n_coeffs = n_coefficients(sh_degree)
        self.max_tiles = -(-W // TILE) * -(-H // TILE)
        on_cpu = ti.lang.impl.current_cfg().arch in (ti.x64, ti.arm64)
        self.pixel_parallel = (not on_cpu) if pixel_parallel is None else bool(pixel_parallel)
        # loops with one thread per tile: one tile per CPU task (balance), 32 per GPU block
        self._tile_block = 1 if on_cpu else 32
        self._gdata = ti.field(float, shape=(N, G_STRIDE))
        prec = "f32" if ti.lang.impl.current_cfg().default_fp == ti.f32 else "f64"
        self._exp_floor, self._exp_poly = EXP_FLOOR[prec], EXP_POLY[prec]
        self._exp_single = prec == "f32"
        self._clamped = ti.field(ti.i32, shape=N)  # bit c: colour channel c clamped at 0
        self._rect = ti.field(ti.i32, shape=(N, 4))  # tile x0, y0, x1, y1 (exclusive)
        self._reach = ti.field(ti.i32, shape=(N, 4))  # the part of the rect the tile test is asked about
        self._gslot = ti.field(ti.i32, shape=N + 1)  # first gradient slot of each Gaussian
        self.radius = ti.field(ti.i32, shape=N)
        self._tile_count = ti.field(ti.i32, shape=self.max_tiles)
        self._tile_start = ti.field(ti.i32, shape=self.max_tiles + 1)
        self.colour = ti.field(float, shape=(H, W, 3), needs_grad=True)
        self.alpha = ti.field(float, shape=(H, W), needs_grad=True)
        self.depth = ti.field(float, shape=(H, W), needs_grad=True)
        self.final_t = ti.field(float, shape=(H, W))
        self.n_contrib = ti.field(ti.i32, shape=(H, W))
        self.d_means = ti.field(float, shape=(N, 3))
        self.d_log_scales = ti.field(float, shape=(N, 3))
        self.d_quats = ti.field(float, shape=(N, 4))
        self.d_opacity_logits = ti.field(float, shape=N)
        self.d_sh = ti.field(float, shape=(N, 3 * self.n_coeffs))
        self.d_background = ti.field(float, shape=3)
        self.d_mean2d = ti.field(float, shape=(N, 2))
        self.d_mean2d_norm_ndc = ti.field(float, shape=N)
        self.n_entries = self.n_slots = 0
        self.stage_ms = None  # set to {} to time each stage into it (a sync after each kernel)
        self._capacity = 0
        self._grow(max_entries if max_entries is not None else 16 * N)
        self._last = None

    def _grow(self, needed: int):
        """(Re)allocate the per-entry buffers; kernels compile once more for the new fields."""
        cap = max(int(needed), 16)
        self._ekey, self._ekey2 = ti.field(float, shape=cap), ti.field(float, shape=cap)
        self._eid, self._eid2 = ti.field(ti.i32, shape=cap), ti.field(ti.i32, shape=cap)
        self._eslot = ti.field(ti.i32, shape=cap)  # entry -> gradient slot (Gaussian-major)
        self._egrad = ti.field(float, shape=(cap, N_DATA))
        self._capacity = cap

    # ---- public API ---------------------------------------------------------------------------
    def forward(self, means, log_scales, quats, opacity_logits, sh, n: int, camera: Camera,
                background=(0.0, 0.0, 0.0), *, sh_degree: int | None = None,
                alpha_min: float = ALPHA_MIN, t_min: float = T_MIN, backward: bool = True) -> None:
        """Render Gaussians ``< n`` seen by ``camera``.

        ``backward=False``: an image only (evaluation, videos, the viewer): the pixels of a row are
        blended ``LANES`` at a time (SIMD on a CPU), the same operations per pixel as the kernel that
        training uses but for ``e^power``, computed in the kernel (:func:`_exp_neg`, within 1
        ulp of the correctly rounded value): the same image to rounding (a pixel within rounding
        of a threshold may blend one Gaussian more or fewer, as between float32 and float64);
        :meth:`backward` then refuses to run.

        means (N, 3) world positions; log_scales (N, 3); quats (N, 4) (w, x, y, z), any non-zero
        norm; opacity_logits (N,); sh (N, >= 3 K) (column 3 k + c, see the module docstring): Taichi
        fields of the default float type with at least ``n`` rows, left unchanged. camera: a
        :class:`Camera` no larger than the capacity. background: 3 floats. sh_degree: the active
        degree (default: the capacity's). alpha_min / t_min: the skip and stop thresholds.
        """
        n = int(n)
        if not 0 <= n <= self.max_gaussians:
            raise ValueError(f"n {n} outside [0, {self.max_gaussians}]")
        deg = self.sh_degree if sh_degree is None else int(sh_degree)
        if not 0 <= deg <= self.sh_degree:
            raise ValueError(f"sh_degree must be in 0..{self.sh_degree}, got {deg}")
        k_active = n_coefficients(deg)
        for name, f, cols in (("means", means, 3), ("log_scales", log_scales, 3),
                              ("quats", quats, 4), ("sh", sh, 3 * k_active)):
            if len(f.shape) != 2 or f.shape[0] < n or f.shape[1] < cols:
                raise ValueError(
                    f"{name} must be a field of shape (>= {n}, >= {cols}), got {f.shape}")
        if len(opacity_logits.shape) != 1 or opacity_logits.shape[0] < n:
            raise ValueError(f"opacity_logits must be a field of shape (>= {n},)")
        if camera.width > self.width or camera.height > self.height:
            raise ValueError(f"camera image {camera.width}x{camera.height} exceeds the capacity "
                             f"{self.width}x{self.height}")
        bg = tuple(float(v) for v in background)
        if len(bg) != 3:
            raise ValueError("background must have 3 values")
        cam = camera.kernel_args()
        w, h = camera.width, camera.height
        n_tiles = -(-w // TILE) * -(-h // TILE)
        self._timed("project", self._project, means, log_scales, quats, opacity_logits, sh, n,
                    k_active, float(alpha_min), *cam)
        total = int(self._timed("scan", self._scan, n_tiles, n))
        slots = int(self._gslot[n])  # one per tile of each rect; entries only where the Gaussian reaches
        if max(total, slots) > self._capacity:
            self._grow(int(max(total, slots) * 1.5))
        self.n_entries, self.n_slots = total, slots
        self._timed("fill", self._fill, self._ekey, self._eid, n, w, h)
        self._timed("sort", self._sort, self._ekey, self._eid, self._ekey2, self._eid2,
                    self._eslot, w, h)
        if backward:
            self._timed("render", self._render, self._eid, w, h, *bg, float(alpha_min), float(t_min))
            self._last = dict(inputs=(means, log_scales, quats, opacity_logits, sh), n=n, cam=cam,
                              k_active=k_active, bg=bg, alpha_min=float(alpha_min), w=w, h=h)
        else:
            self._timed("render", self._render_lanes, self._eid, w, h, *bg, float(alpha_min), float(t_min))
            self._last = None

    def backward(self, d_colour=None, d_alpha=None, d_depth=None) -> None:
        """Gradients of the Gaussians of the last :meth:`forward` (inputs unchanged since).

        Each output gradient is None (term off), a numpy array of the output's shape ((H, W, 3),
        (H, W), (H, W); the camera's H, W or the capacity's) copied into the output's ``.grad``,
        or a Taichi field of the capacity's shape (the output's ``.grad`` itself is used in place).
        """
        if self._last is None:
            raise RuntimeError("backward() needs a forward() first (with backward=True)")
        s = self._last
        use = [self._set_grad(fld, g, s["h"], s["w"]) for fld, g in
               ((self.colour, d_colour), (self.alpha, d_alpha), (self.depth, d_depth))]
        self._timed("backward_pixels", self._backward_pixels, self._eid, self._eslot, self._egrad,
                    self.n_slots, s["w"], s["h"], *s["bg"], s["alpha_min"],
                    *(int(u) for u in use))
        self.d_background.fill(0.0)
        if use[0]:
            self._timed("backward_background", self._background_grad, s["w"], s["h"])
        self._timed("backward_gaussians", self._backward_gaussians, *s["inputs"], self._egrad,
                    s["n"], s["k_active"], *s["cam"])

    def read_colour(self, width: int, height: int, clip: bool = True) -> np.ndarray:
        """The (height, width, 3) float64 colour of the last forward (rows and columns of its camera),
        clipped to [0, 1] unless ``clip`` is False: one pass, where ``colour.to_numpy()`` copies the
        whole capacity first."""
        out = np.empty((int(height), int(width), 3), np.float64)
        self._read_colour(out, int(width), int(height), int(bool(clip)))
        return out

    @ti.kernel
    def _read_colour(self, out: ti.types.ndarray(dtype=ti.f64, ndim=3), w: int, h: int, clip: int):
        for y, x in ti.ndrange(h, w):
            for ch in ti.static(range(3)):
                v = ti.cast(self.colour[y, x, ch], ti.f64)
                if clip:
                    v = ti.min(ti.max(v, 0.0), 1.0)
                out[y, x, ch] = v

    def _timed(self, name, kernel, *args):
        if self.stage_ms is None:
            return kernel(*args)
        ti.sync()
        t0 = time.perf_counter()
        out = kernel(*args)
        ti.sync()
        self.stage_ms[name] = self.stage_ms.get(name, 0.0) + 1e3 * (time.perf_counter() - t0)
        return out

    @staticmethod
    def _set_grad(out, g, h, w) -> bool:
        if g is None:
            return False
        if isinstance(g, np.ndarray):
            full = np.zeros(out.shape, dtype=to_numpy_type(out.dtype))
            if g.shape[:2] == (h, w):
                full[:h, :w] = g
            elif g.shape == out.shape:
                full[:] = g
            else:
                raise ValueError(f"output gradient of shape {g.shape}: expected {out.shape} or "
                                 f"({h}, {w}, ...)")
            out.grad.from_numpy(full)
        elif g is not out.grad:
            if g.shape != out.shape:
                raise ValueError(f"output gradient field of shape {g.shape}: expected {out.shape}")
            out.grad.copy_from(g)
        return True

    # ---- forward kernels ------------------------------------------------------------------------
    @ti.kernel
    def _project(self, means: ti.template(), log_scales: ti.template(), quats: ti.template(),
                 logits: ti.template(), sh: ti.template(), n: int, k_active: int, alpha_min: float,
                 r00: float, r01: float, r02: float, r10: float, r11: float, r12: float,
                 r20: float, r21: float, r22: float, t0: float, t1: float, t2: float,
                 fx: float, fy: float, cx: float, cy: float, w: int, h: int):
        tiles_x, tiles_y = (w + TILE - 1) // TILE, (h + TILE - 1) // TILE
        for t in range(tiles_x * tiles_y):
            self._tile_count[t] = 0
        for i in range(n):
            Rw = ti.Matrix([[r00, r01, r02], [r10, r11, r12], [r20, r21, r22]])
            tw = ti.Vector([t0, t1, t2])
            x = ti.Vector([means[i, 0], means[i, 1], means[i, 2]])
            pc = Rw @ x + tw
            radius = 0
            x0, y0, x1, y1 = 0, 0, 0, 0
            for c in ti.static(range(N_DATA + 1)):
                self._gdata[i, c] = 0.0
            self._clamped[i] = 0
            if pc[2] > NEAR:
                iz = 1.0 / pc[2]
                S = ti.Vector([ti.exp(log_scales[i, 0]), ti.exp(log_scales[i, 1]),
                               ti.exp(log_scales[i, 2])])
                q = ti.Vector([quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]])
                M = _quat_rot(q / q.norm()) @ ti.Matrix([[S[0], 0.0, 0.0], [0.0, S[1], 0.0],
                                                          [0.0, 0.0, S[2]]])
                cov3 = M @ M.transpose()
                mx, my = FOV_MARGIN * 0.5 * w / fx, FOV_MARGIN * 0.5 * h / fy
                tx = ti.min(ti.max(pc[0] * iz, -(cx / fx + mx)), (w - cx) / fx + mx)
                ty = ti.min(ti.max(pc[1] * iz, -(cy / fy + my)), (h - cy) / fy + my)
                J = ti.Matrix([[fx * iz, 0.0, -fx * tx * iz], [0.0, fy * iz, -fy * ty * iz]])
                A = J @ Rw
                cov2 = A @ cov3 @ A.transpose()
                a, b, c = cov2[0, 0] + LOW_PASS, cov2[0, 1], cov2[1, 1] + LOW_PASS
                det = a * c - b * b
                if det > 0.0:
                    mid = 0.5 * (a + c)
                    lam = mid + ti.sqrt(ti.max(0.1, mid * mid - det))
                    r = ti.ceil(3.0 * ti.sqrt(lam))
                    u = fx * pc[0] * iz + cx
                    v = fy * pc[1] * iz + cy
                    x0, x1 = _tile_span(u - 0.5, r, tiles_x)
                    y0, y1 = _tile_span(v - 0.5, r, tiles_y)
                    if x1 > x0 and y1 > y0:
                        radius = int(ti.min(r, 1.0e9))
                        d = x - Rw.transpose() @ (-tw)
                        Y = _sh_basis(d / d.norm())
                        clamped = 0
                        for ch in ti.static(range(3)):
                            col = 0.5
                            for k in ti.static(range(self.n_coeffs)):
                                if k < k_active:
                                    col += Y[k] * sh[i, 3 * k + ch]
                            if col < 0.0:
                                col = 0.0
                                clamped |= 1 << ch
                            self._gdata[i, RED + ch] = col
                        self._clamped[i] = clamped
                        self._gdata[i, U] = u
                        self._gdata[i, V] = v
                        self._gdata[i, KA] = c / det
                        self._gdata[i, KB] = -b / det
                        self._gdata[i, KC] = a / det
                        o = 1.0 / (1.0 + ti.exp(-logits[i]))
                        self._gdata[i, OPA] = o
                        # power < log(alpha_min / o) - 1e-3 means o e^power < alpha_min for sure
                        # (rounding of exp and log is far below 1e-3): skipped without exp
                        self._gdata[i, LCUT] = -1e30
                        if alpha_min > 0.0:
                            self._gdata[i, LCUT] = ti.log(alpha_min / o) - 1e-3
                        self._gdata[i, Z] = pc[2]
                        rx0, ry0, rx1, ry1 = x0, y0, x1, y1
                        if alpha_min > 0.0:
                            # the box of the ellipse power >= lcut (widened past _tile_hit's margin and
                            # by 1 px for rounding): the only tiles of the rect _reaches can accept
                            qcut = ti.max(-2.0 * self._gdata[i, LCUT] * (1.0 + 2.0 * CULL_SLACK) + 2.0 * CULL_SLACK, 0.0)
                            ex0, ex1 = _tile_span(u - 0.5, ti.sqrt(qcut * a) + 1.0, tiles_x)
                            ey0, ey1 = _tile_span(v - 0.5, ti.sqrt(qcut * c) + 1.0, tiles_y)
                            rx0, rx1 = ti.max(rx0, ex0), ti.min(rx1, ex1)
                            ry0, ry1 = ti.max(ry0, ey0), ti.min(ry1, ey1)
                        for ty_ in range(ry0, ry1):
                            for tx_ in range(rx0, rx1):
                                if self._reaches(i, tx_, ty_, w, h):
                                    ti.atomic_add(self._tile_count[ty_ * tiles_x + tx_], 1)
                        self._reach[i, 0], self._reach[i, 1], self._reach[i, 2], self._reach[i, 3] = rx0, ry0, rx1, ry1
            if radius == 0:
                x0, y0, x1, y1 = 0, 0, 0, 0
            self.radius[i] = radius
            self._rect[i, 0], self._rect[i, 1], self._rect[i, 2], self._rect[i, 3] = x0, y0, x1, y1

    @ti.func
    def _reaches(self, i, tx, ty, w, h) -> bool:
        """Whether projected Gaussian ``i`` (its packed data) can reach a pixel of tile (tx, ty):
        the one test the counting and the filling of the tile lists share."""
        return _tile_hit(self._gdata[i, U], self._gdata[i, V], self._gdata[i, KA], self._gdata[i, KB],
                         self._gdata[i, KC], self._gdata[i, LCUT], tx, ty, w, h)

    @ti.kernel
    def _scan(self, n_tiles: int, n: int) -> int:
        for _ in range(1):  # one thread: deterministic serial exclusive scans
            acc = 0
            for t in range(n_tiles):
                self._tile_start[t] = acc
                acc += self._tile_count[t]
            self._tile_start[n_tiles] = acc
            acc = 0
            for i in range(n):
                self._gslot[i] = acc
                if self.radius[i] > 0:
                    acc += ((self._rect[i, 2] - self._rect[i, 0])
                            * (self._rect[i, 3] - self._rect[i, 1]))
            self._gslot[n] = acc
        return self._tile_start[n_tiles]

    @ti.kernel
    def _fill(self, keys: ti.template(), ids: ti.template(), n: int, w: int, h: int):
        tiles_x = (w + TILE - 1) // TILE
        for t in range(self.max_tiles):
            self._tile_count[t] = 0  # reused as the fill cursor
        for i in range(n):
            if self.radius[i] > 0:
                for ty in range(self._reach[i, 1], self._reach[i, 3]):
                    for tx in range(self._reach[i, 0], self._reach[i, 2]):
                        if self._reaches(i, tx, ty, w, h):
                            t = ty * tiles_x + tx
                            e = self._tile_start[t] + ti.atomic_add(self._tile_count[t], 1)
                            keys[e] = self._gdata[i, Z]
                            ids[e] = i

    @ti.kernel
    def _sort(self, k1: ti.template(), i1: ti.template(), k2: ti.template(), i2: ti.template(),
              slot: ti.template(), w: int, h: int):
        tiles_x = (w + TILE - 1) // TILE
        n_tiles = tiles_x * ((h + TILE - 1) // TILE)
        ti.loop_config(block_dim=self._tile_block)
        for t in range(n_tiles):
            a, L = self._tile_start[t], self._tile_start[t + 1] - self._tile_start[t]
            for run in range((L + 15) // 16):  # insertion sort of runs of 16, in place
                lo = a + 16 * run
                for j in range(lo + 1, ti.min(lo + 16, a + L)):
                    kk, ii = k1[j], i1[j]
                    m = j
                    while m > lo:  # (Taichi's `and` evaluates both sides: no k1[lo - 1] read)
                        if _entry_less(kk, ii, k1[m - 1], i1[m - 1]):
                            k1[m], i1[m] = k1[m - 1], i1[m - 1]
                            m -= 1
                        else:
                            break
                    k1[m], i1[m] = kk, ii
            width, in_first = 16, 1
            while width < L:  # bottom-up merges, ping-pong between the two buffers
                for pair in range((L + 2 * width - 1) // (2 * width)):
                    s = 2 * width * pair
                    mid, hi = a + ti.min(s + width, L), a + ti.min(s + 2 * width, L)
                    if in_first:
                        _merge(k1, i1, k2, i2, a + s, mid, hi)
                    else:
                        _merge(k2, i2, k1, i1, a + s, mid, hi)
                width *= 2
                in_first = 1 - in_first
            if not in_first:
                for e in range(a, a + L):
                    k1[e], i1[e] = k2[e], i2[e]
            # gradient slot of each entry: its Gaussian's slots, one per tile of its rect in
            # row-major order, so each Gaussian sums a contiguous range in the backward
            tx, ty = t % tiles_x, t // tiles_x
            for e in range(a, a + L):
                g = i1[e]
                x0 = self._rect[g, 0]
                slot[e] = (self._gslot[g] + (ty - self._rect[g, 1]) * (self._rect[g, 2] - x0)
                           + tx - x0)

    @ti.kernel
    def _render(self, ids: ti.template(), w: int, h: int, bg0: float, bg1: float, bg2: float,
                alpha_min: float, t_min: float):
        tiles_x = (w + TILE - 1) // TILE
        n_tiles = tiles_x * ((h + TILE - 1) // TILE)
        ti.loop_config(block_dim=TILE * TILE)
        for t, k in ti.ndrange(n_tiles, TILE * TILE):
            px = (t % tiles_x) * TILE + k % TILE
            py = (t // tiles_x) * TILE + k // TILE
            if px < w and py < h:
                fpx, fpy = px + 0.5, py + 0.5
                T, D = 1.0, 0.0
                C = ti.Vector([0.0, 0.0, 0.0])
                a, b = self._tile_start[t], self._tile_start[t + 1]
                last = 0
                for j in range(a, b):
                    g = ids[j]
                    dx, dy = self._gdata[g, U] - fpx, self._gdata[g, V] - fpy
                    power = (-0.5 * (self._gdata[g, KA] * dx * dx + self._gdata[g, KC] * dy * dy)
                             - self._gdata[g, KB] * dx * dy)
                    if self._gdata[g, LCUT] <= power and power <= 0.0:
                        alpha = ti.min(ALPHA_MAX, self._gdata[g, OPA] * ti.exp(power))
                        if alpha >= alpha_min:
                            test_t = T * (1.0 - alpha)
                            if test_t < t_min:
                                break
                            wgt = alpha * T
                            C += wgt * ti.Vector([self._gdata[g, RED], self._gdata[g, RED + 1],
                                                  self._gdata[g, RED + 2]])
                            D += wgt * self._gdata[g, Z]
                            T = test_t
                            last = j - a + 1
                bg = ti.Vector([bg0, bg1, bg2])
                for ch in ti.static(range(3)):
                    self.colour[py, px, ch] = C[ch] + T * bg[ch]
                self.alpha[py, px] = 1.0 - T
                self.depth[py, px] = D
                self.final_t[py, px] = T
                self.n_contrib[py, px] = last

    @ti.kernel
    def _render_lanes(self, ids: ti.template(), w: int, h: int, bg0: float, bg1: float, bg2: float,
                      alpha_min: float, t_min: float):
        """_render for LANES pixels of a tile row at once, branch-free over the lanes (SIMD on a CPU):
        each pixel's skip test, alpha, stop test and blending are _render's operations (e^power by
        _exp_neg: a call into libm would take every lane out of the vector registers), a lane that
        does not blend a Gaussian adds exactly 0 and keeps its T."""
        tiles_x = (w + TILE - 1) // TILE
        n_tiles = tiles_x * ((h + TILE - 1) // TILE)
        groups = ti.static(TILE // LANES)
        ti.loop_config(block_dim=TILE * TILE // LANES)
        for t, k in ti.ndrange(n_tiles, TILE * groups):
            px0 = (t % tiles_x) * TILE + (k % groups) * LANES
            py = (t // tiles_x) * TILE + k // groups
            if px0 < w and py < h:
                fpx = ti.Vector([px0 + lane + 0.5 for lane in ti.static(range(LANES))])
                fpy = py + 0.5
                T = ti.Vector([1.0] * LANES)
                D = ti.Vector([0.0] * LANES)
                C = ti.Matrix.zero(float, 3, LANES)
                last = ti.Vector([0] * LANES)
                alive = ti.Vector([1 if px0 + lane < w else 0 for lane in ti.static(range(LANES))])
                a, b = self._tile_start[t], self._tile_start[t + 1]
                j = a
                while j < b and alive.sum() > 0:
                    g = ids[j]
                    dx = self._gdata[g, U] - fpx
                    dy = self._gdata[g, V] - fpy
                    power = (-0.5 * (self._gdata[g, KA] * dx * dx + self._gdata[g, KC] * dy * dy)
                             - self._gdata[g, KB] * dx * dy)
                    ok = ti.select(power >= self._gdata[g, LCUT], alive, 0) * ti.select(power <= 0.0, 1, 0)
                    if ok.sum() > 0:
                        e = ti.Vector([_exp_neg(power[lane], self._exp_floor, self._exp_poly, self._exp_single)
                                       for lane in ti.static(range(LANES))])
                        alpha = ti.min(ALPHA_MAX, self._gdata[g, OPA] * e)
                        test_t = T * (1.0 - alpha)
                        hit = ok * ti.select(alpha >= alpha_min, 1, 0)
                        low = ti.select(test_t < t_min, 1, 0)
                        alive -= hit * low
                        upd = hit * (1 - low)
                        wgt = ti.select(upd > 0, alpha * T, 0.0)
                        for ch in ti.static(range(3)):
                            col = self._gdata[g, RED + ch]
                            for lane in ti.static(range(LANES)):
                                C[ch, lane] += wgt[lane] * col
                        D += wgt * self._gdata[g, Z]
                        T = ti.select(upd > 0, test_t, T)
                        last = ti.select(upd > 0, j - a + 1, last)
                    j += 1
                for lane in ti.static(range(LANES)):
                    px = px0 + lane
                    if px < w:
                        self.colour[py, px, 0] = C[0, lane] + T[lane] * bg0
                        self.colour[py, px, 1] = C[1, lane] + T[lane] * bg1
                        self.colour[py, px, 2] = C[2, lane] + T[lane] * bg2
                        self.alpha[py, px] = 1.0 - T[lane]
                        self.depth[py, px] = D[lane]
                        self.final_t[py, px] = T[lane]
                        self.n_contrib[py, px] = last[lane]

    # ---- backward kernels -----------------------------------------------------------------------
    @ti.kernel
    def _backward_pixels(self, ids: ti.template(), slot: ti.template(), egrad: ti.template(),
                         n_slots: int, w: int,
                         h: int, bg0: float, bg1: float, bg2: float, alpha_min: float, use_c: int,
                         use_a: int, use_d: int):
        tiles_x = (w + TILE - 1) // TILE
        n_tiles = tiles_x * ((h + TILE - 1) // TILE)
        for e in range(n_slots):
            for c in ti.static(range(N_DATA)):
                egrad[e, c] = 0.0
        bg = ti.Vector([bg0, bg1, bg2])
        if ti.static(self.pixel_parallel):
            ti.loop_config(block_dim=TILE * TILE)
            for t, k in ti.ndrange(n_tiles, TILE * TILE):
                self._pixel_backward(ids, slot, egrad, t, k, tiles_x, w, h, bg, alpha_min, use_c,
                                     use_a, use_d, True)
        else:
            ti.loop_config(block_dim=self._tile_block)
            for t in range(n_tiles):  # one thread per tile: its entry slots are private
                for k in range(TILE * TILE):
                    self._pixel_backward(ids, slot, egrad, t, k, tiles_x, w, h, bg, alpha_min,
                                         use_c, use_a, use_d, False)

    @ti.func
    def _pixel_backward(self, ids: ti.template(), slot: ti.template(), egrad: ti.template(), t, k,
                        tiles_x, w, h, bg, alpha_min, use_c, use_a, use_d, atomic: ti.template()):
        px = (t % tiles_x) * TILE + k % TILE
        py = (t // tiles_x) * TILE + k // TILE
        if px < w and py < h:
            last = self.n_contrib[py, px]
            if last > 0:
                a = self._tile_start[t]
                t_final = self.final_t[py, px]
                T = t_final
                gc = ti.Vector([0.0, 0.0, 0.0])
                ga, gd = 0.0, 0.0
                if use_c:
                    gc = ti.Vector([self.colour.grad[py, px, 0], self.colour.grad[py, px, 1],
                                    self.colour.grad[py, px, 2]])
                if use_a:
                    ga = self.alpha.grad[py, px]
                if use_d:
                    gd = self.depth.grad[py, px]
                bg_term = t_final * gc.dot(bg)
                Bc = ti.Vector([0.0, 0.0, 0.0])
                Bd, Ba = 0.0, 0.0
                fpx, fpy = px + 0.5, py + 0.5
                for jj in range(last):
                    e = a + last - 1 - jj
                    g = ids[e]
                    dx, dy = self._gdata[g, U] - fpx, self._gdata[g, V] - fpy
                    ka, kb, kc = self._gdata[g, KA], self._gdata[g, KB], self._gdata[g, KC]
                    power = -0.5 * (ka * dx * dx + kc * dy * dy) - kb * dx * dy
                    if self._gdata[g, LCUT] <= power and power <= 0.0:
                        G = ti.exp(power)
                        a_raw = self._gdata[g, OPA] * G
                        alpha = ti.min(ALPHA_MAX, a_raw)
                        if alpha >= alpha_min:
                            T = T / (1.0 - alpha)
                            wgt = alpha * T
                            rgb = ti.Vector([self._gdata[g, RED], self._gdata[g, RED + 1],
                                             self._gdata[g, RED + 2]])
                            z = self._gdata[g, Z]
                            d_alpha = (T * ((rgb - Bc).dot(gc) + (z - Bd) * gd + (1.0 - Ba) * ga)
                                       - bg_term / (1.0 - alpha))
                            Bc = alpha * rgb + (1.0 - alpha) * Bc
                            Bd = alpha * z + (1.0 - alpha) * Bd
                            Ba = alpha + (1.0 - alpha) * Ba
                            gr = ti.Vector.zero(float, N_DATA)
                            if a_raw < ALPHA_MAX:  # at the 0.99 clamp alpha is a constant
                                dpow = alpha * d_alpha
                                gr[U] = -dpow * (ka * dx + kb * dy)
                                gr[V] = -dpow * (kb * dx + kc * dy)
                                gr[KA] = -0.5 * dpow * dx * dx
                                gr[KB] = -dpow * dx * dy
                                gr[KC] = -0.5 * dpow * dy * dy
                                gr[OPA] = G * d_alpha
                            for ch in ti.static(range(3)):
                                gr[RED + ch] = wgt * gc[ch]
                            gr[Z] = wgt * gd
                            s = slot[e]
                            for c in ti.static(range(N_DATA)):
                                if ti.static(atomic):
                                    ti.atomic_add(egrad[s, c], gr[c])
                                else:  # one thread per tile: the tile's slots are its own
                                    egrad[s, c] = egrad[s, c] + gr[c]

    @ti.kernel
    def _background_grad(self, w: int, h: int):
        for py, px in ti.ndrange(h, w):
            for c in ti.static(range(3)):
                self.d_background[c] += self.final_t[py, px] * self.colour.grad[py, px, c]

    @ti.kernel
    def _backward_gaussians(self, means: ti.template(), log_scales: ti.template(),
                            quats: ti.template(), logits: ti.template(), sh: ti.template(),
                            egrad: ti.template(), n: int, k_active: int, r00: float,
                            r01: float, r02: float, r10: float, r11: float, r12: float, r20: float,
                            r21: float, r22: float, t0: float, t1: float, t2: float, fx: float,
                            fy: float, cx: float, cy: float, w: int, h: int):
        for i in range(n):
            for c in ti.static(range(3)):
                self.d_means[i, c] = 0.0
                self.d_log_scales[i, c] = 0.0
            for c in ti.static(range(4)):
                self.d_quats[i, c] = 0.0
            for c in ti.static(range(3 * self.n_coeffs)):
                self.d_sh[i, c] = 0.0
            self.d_opacity_logits[i] = 0.0
            self.d_mean2d[i, 0] = 0.0
            self.d_mean2d[i, 1] = 0.0
            self.d_mean2d_norm_ndc[i] = 0.0
            if self.radius[i] > 0:
                acc = ti.Vector.zero(float, N_DATA)
                for e in range(self._gslot[i], self._gslot[i + 1]):  # its slots, one per tile
                    for c in ti.static(range(N_DATA)):
                        acc[c] += egrad[e, c]
                self._gaussian_backward(means, log_scales, quats, sh, i, k_active, acc,
                                        ti.Matrix([[r00, r01, r02], [r10, r11, r12],
                                                   [r20, r21, r22]]),
                                        ti.Vector([t0, t1, t2]), fx, fy, cx, cy, w, h)

    @ti.func
    def _gaussian_backward(self, means: ti.template(), log_scales: ti.template(),
                           quats: ti.template(), sh: ti.template(), i, k_active, acc, Rw, tw, fx,
                           fy, cx, cy, w, h):
        # forward quantities again
        x = ti.Vector([means[i, 0], means[i, 1], means[i, 2]])
        pc = Rw @ x + tw
        iz = 1.0 / pc[2]
        S = ti.Vector([ti.exp(log_scales[i, c]) for c in ti.static(range(3))])
        q = ti.Vector([quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]])
        qlen = q.norm()
        qn = q / qlen
        Rq = _quat_rot(qn)
        M = Rq @ ti.Matrix([[S[0], 0.0, 0.0], [0.0, S[1], 0.0], [0.0, 0.0, S[2]]])
        cov3 = M @ M.transpose()
        mx, my = FOV_MARGIN * 0.5 * w / fx, FOV_MARGIN * 0.5 * h / fy
        lox, hix = -(cx / fx + mx), (w - cx) / fx + mx
        loy, hiy = -(cy / fy + my), (h - cy) / fy + my
        rx, ry = pc[0] * iz, pc[1] * iz
        tx, ty = ti.min(ti.max(rx, lox), hix), ti.min(ti.max(ry, loy), hiy)
        J = ti.Matrix([[fx * iz, 0.0, -fx * tx * iz], [0.0, fy * iz, -fy * ty * iz]])
        A = J @ Rw
        K = ti.Matrix([[self._gdata[i, KA], self._gdata[i, KB]],
                       [self._gdata[i, KB], self._gdata[i, KC]]])
        # conic -> 2-D covariance -> (3-D covariance, A) -> J
        Gk = ti.Matrix([[acc[KA], 0.5 * acc[KB]], [0.5 * acc[KB], acc[KC]]])
        Gs2 = -(K @ Gk @ K)
        G3 = A.transpose() @ Gs2 @ A
        GJ = 2.0 * Gs2 @ A @ cov3 @ Rw.transpose()
        gu, gv = acc[U], acc[V]
        dp = ti.Vector([fx * iz * gu, fy * iz * gv,
                        -(fx * pc[0] * gu + fy * pc[1] * gv) * iz * iz + acc[Z]])
        dp[2] -= (fx * GJ[0, 0] + fy * GJ[1, 1]) * iz * iz
        dp[2] += (fx * tx * GJ[0, 2] + fy * ty * GJ[1, 2]) * iz * iz
        if lox <= rx and rx <= hix:  # tx = p_x / p_z: its own derivatives
            dp[0] -= fx * iz * iz * GJ[0, 2]
            dp[2] += fx * rx * iz * iz * GJ[0, 2]
        if loy <= ry and ry <= hiy:
            dp[1] -= fy * iz * iz * GJ[1, 2]
            dp[2] += fy * ry * iz * iz * GJ[1, 2]
        dmean = Rw.transpose() @ dp
        # colour -> SH coefficients and view direction
        clamped = self._clamped[i]
        gc = ti.Vector([acc[RED], acc[RED + 1], acc[RED + 2]])
        for ch in ti.static(range(3)):
            if (clamped >> ch) & 1:
                gc[ch] = 0.0
        dvec = x + Rw.transpose() @ tw
        dlen = dvec.norm()
        dhat = dvec / dlen
        Y = _sh_basis(dhat)
        wk = ti.Vector.zero(float, 16)
        for k in ti.static(range(self.n_coeffs)):
            if k < k_active:
                for ch in ti.static(range(3)):
                    self.d_sh[i, 3 * k + ch] = Y[k] * gc[ch]
                    wk[k] += sh[i, 3 * k + ch] * gc[ch]
        gdir = _sh_basis_grad(dhat, wk)
        dmean += (gdir - dhat * dhat.dot(gdir)) / dlen
        # 3-D covariance -> scales and rotation
        dM = 2.0 * G3 @ M
        GR = ti.Matrix.zero(float, 3, 3)
        for kk in ti.static(range(3)):
            dS = 0.0
            for r in ti.static(range(3)):
                dS += dM[r, kk] * Rq[r, kk]
                GR[r, kk] = dM[r, kk] * S[kk]
            self.d_log_scales[i, kk] = dS * S[kk]
        dqn = _quat_rot_grad(qn, GR)
        dq = (dqn - qn * qn.dot(dqn)) / qlen
        for c in ti.static(range(4)):
            self.d_quats[i, c] = dq[c]
        for c in ti.static(range(3)):
            self.d_means[i, c] = dmean[c]
        o = self._gdata[i, OPA]
        self.d_opacity_logits[i] = acc[OPA] * o * (1.0 - o)
        self.d_mean2d[i, 0] = gu
        self.d_mean2d[i, 1] = gv
        self.d_mean2d_norm_ndc[i] = ti.sqrt((gu * 0.5 * w) ** 2 + (gv * 0.5 * h) ** 2)
