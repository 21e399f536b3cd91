"""Small glue kernels of the MixVoxels model (activations, concatenation, gathers, box
normalisation, query tables), each with its backward where one is needed.

Conventions as everywhere (docs/ARCHITECTURE.md): rows ``< n`` are touched; backward functions
OVERWRITE the gradient of their inputs. These are covered by the whole-model finite-difference
test (tests/models/test_sync_mixvoxels.py) and by tests/kernels/test_mixglue.py.
"""
import taichi as ti


@ti.kernel
def sum_activate(feat: ti.template(), out: ti.template(), n: int, M: int, scale: float, relu: int):
    """``out[i] = scale * relu(sum_m feat[i, m])`` (``relu = 1``) or ``scale * sum_m feat[i, m]``."""
    for i in range(n):
        a = 0.0
        for m in range(M):
            a += feat[i, m]
        if relu:
            a = ti.max(a, 0.0)
        out[i] = scale * a


@ti.kernel
def sum_activate_backward(feat: ti.template(), out: ti.template(), n: int, M: int, scale: float, relu: int):
    for i, m in ti.ndrange(n, M):
        g = out.grad[i] * scale
        if relu and out[i] <= 0.0:
            g = 0.0
        feat.grad[i, m] = g


@ti.kernel
def concat_dirs(feat: ti.template(), dirs: ti.template(), ray_of: ti.template(), out: ti.template(), n: int,
                M: int):
    """``out[i] = [feat[i, :M], unit(dirs[ray_of[i]])]``."""
    for i in range(n):
        for m in range(M):
            out[i, m] = feat[i, m]
        r = ray_of[i]
        d = ti.Vector([dirs[r, 0], dirs[r, 1], dirs[r, 2]])
        d = d / ti.max(d.norm(), 1e-12)
        for a in ti.static(range(3)):
            out[i, M + a] = d[a]


@ti.kernel
def concat_dirs_backward(feat: ti.template(), out: ti.template(), n: int, M: int):
    for i, m in ti.ndrange(n, M):
        feat.grad[i, m] = out.grad[i, m]


@ti.kernel
def sigmoid3(x: ti.template(), out: ti.template(), n: int):
    for i, c in ti.ndrange(n, 3):
        out[i, c] = 1.0 / (1.0 + ti.exp(-x[i, c]))


@ti.kernel
def sigmoid3_backward(x: ti.template(), out: ti.template(), n: int):
    for i, c in ti.ndrange(n, 3):
        v = out[i, c]
        x.grad[i, c] = out.grad[i, c] * v * (1.0 - v)


@ti.kernel
def box_points(origins: ti.template(), dirs: ti.template(), t0: ti.template(), t1: ti.template(),
               ray_id: ti.template(), out: ti.template(), n: int, x0: float, y0: float, z0: float,
               x1: float, y1: float, z1: float):
    """Sample midpoints normalised to [-1, 1] over the box ``(x0, y0, z0)-(x1, y1, z1)``."""
    lo = ti.Vector([x0, y0, z0])
    hi = ti.Vector([x1, y1, z1])
    for s in range(n):
        r = ray_id[s]
        tm = 0.5 * (t0[s] + t1[s])
        for a in ti.static(range(3)):
            p = origins[r, a] + dirs[r, a] * tm
            out[s, a] = 2.0 * (p - lo[a]) / (hi[a] - lo[a]) - 1.0


@ti.kernel
def gather_rows(src: ti.template(), index: ti.template(), out: ti.template(), n: int, M: int):
    """``out[i, :M] = src[index[i], :M]``."""
    for i, m in ti.ndrange(n, M):
        out[i, m] = src[index[i], m]


@ti.kernel
def gather_scalar(src: ti.template(), index: ti.template(), out: ti.template(), n: int):
    for i in range(n):
        out[i] = src[index[i]]


@ti.kernel
def pack_rows(src: ti.template(), dst: ti.template(), Q: int, C: int, D: int):
    """Flat query table from an MLP output: ``dst[(q C + c)(D + 1) + d] = src[q, c D + d]`` and
    the bias entries ``dst[(q C + c)(D + 1) + D] = 0``."""
    for q, c in ti.ndrange(Q, C):
        base = (q * C + c) * (D + 1)
        for d in range(D):
            dst[base + d] = src[q, c * D + d]
        dst[base + D] = 0.0


@ti.kernel
def pack_rows_backward(src: ti.template(), dst: ti.template(), Q: int, C: int, D: int):
    for q, c, d in ti.ndrange(Q, C, D):
        src.grad[q, c * D + d] = dst.grad[(q * C + c) * (D + 1) + d]


@ti.kernel
def occupancy(pts: ti.template(), occ: ti.template(), keep: ti.template(), n: int, rx: int, ry: int, rz: int):
    """``keep[s] = occ[cell of pts[s]]`` for points normalised to [-1, 1] (outside: 0)."""
    for s in range(n):
        k = 1
        idx = ti.Vector([0, 0, 0])
        res = ti.Vector([rx, ry, rz])
        for a in ti.static(range(3)):
            v = pts[s, a]
            if v < -1.0 or v > 1.0:
                k = 0
            idx[a] = ti.min(ti.max(ti.cast(ti.floor((v + 1.0) * 0.5 * res[a]), ti.i32), 0), res[a] - 1)
        if k == 1:
            k = occ[(idx[2] * ry + idx[1]) * rx + idx[0]]
        keep[s] = k
