"""Constants and ``@ti.func`` helpers of the tile rasterizer (kernels/splat.py): quaternion
rotation, SH basis and their gradients, tile spans and the per-tile reach test, the merge of the
per-tile sort, and the lanes kernels' e^x."""

import math

import taichi as ti

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
LANES = 16  # pixels of a row blended together by the lanes kernels (a CPU rasterizer, any render-only forward)
# packed per-Gaussian render data (_gdata columns; the first N_DATA are also the order of the
# per-entry gradient slots); LCUT: a power below it gives alpha < alpha_min for sure (exp skipped);
# YR: the half height of the ellipse where power >= LCUT (widened as the tile box is): the
# lanes kernels skip a pixel row further than YR from the centre without computing its powers
U, V, KA, KB, KC, OPA, RED, Z, LCUT, YR = 0, 1, 2, 3, 4, 5, 6, 9, 10, 11
N_DATA = 10
G_STRIDE = 16  # _gdata row length (N_DATA + 2 used): a power of two, so a row is one shift away
# e^x of the lanes kernels (_exp_neg): x = k ln2 + r, |r| <= ln2 / 2 (r in float64), e^r by
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
    """e^x for x <= 0 (x clamped to [floor, 0]) without a libm call, so that the lanes kernels'
    vectors stay in registers: range reduction ``x = k ln2 + r`` and a polynomial
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
