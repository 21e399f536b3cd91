"""Real spherical-harmonics encoding of view directions (tiny-cuda-nn / K-Planes convention).

``degree`` counts bands, as in tiny-cuda-nn: degree ``D`` gives ``D * D`` coefficients (degree 4:
16). Coefficient ``l * l + l + m`` (``-l <= m <= l``) is the real spherical harmonic ``Y_l^m``
including the Condon-Shortley phase, evaluated at the unit direction ``(x, y, z)``; these are exactly
tiny-cuda-nn's polynomials (``-0.4886 y, 0.4886 z, -0.4886 x`` for band 1, ...), which K-Planes
feeds with ``(d + 1) / 2`` and tiny-cuda-nn maps back to ``d``. Directions are normalised inside
the kernel; a zero vector is encoded as the polynomials at the origin (only the ``m = 0`` terms
are non-zero).

No gradient: view directions are constants of the rays.

Example::

    dirs = ti.field(float, shape=(N, 3))
    enc_in = ti.field(float, shape=(N, 16 + 15))     # SH followed by 15 geometry features
    sh_encode(dirs, enc_in, n, degree=4)              # writes columns 0..15 only
"""
import taichi as ti

MAX_DEGREE = 4

C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
C1 = 0.48860251190291987  # sqrt(3) / (2 sqrt(pi))
C2 = (1.0925484305920792, 0.94617469575755997, 0.31539156525251999, 0.54627421529603959)
C3 = (0.59004358992664352, 2.8906114426405538, 0.45704579946446572, 0.3731763325901154,
      1.4453057213202769)


def n_coefficients(degree: int) -> int:
    """Number of coefficients written for ``degree`` bands: ``degree ** 2``."""
    return degree * degree


@ti.kernel
def _sh_encode(dirs: ti.template(), out: ti.template(), n: ti.i32, degree: ti.i32, col: ti.i32):
    for i in range(n):
        x = dirs[i, 0]
        y = dirs[i, 1]
        z = dirs[i, 2]
        norm = ti.sqrt(x * x + y * y + z * z)
        inv = 0.0
        if norm > 0.0:
            inv = 1.0 / norm
        x *= inv
        y *= inv
        z *= inv
        out[i, col] = C0
        if degree > 1:
            out[i, col + 1] = -C1 * y
            out[i, col + 2] = C1 * z
            out[i, col + 3] = -C1 * x
        if degree > 2:
            x2, y2, z2 = x * x, y * y, z * z
            out[i, col + 4] = C2[0] * x * y
            out[i, col + 5] = -C2[0] * y * z
            out[i, col + 6] = C2[1] * z2 - C2[2]
            out[i, col + 7] = -C2[0] * x * z
            out[i, col + 8] = C2[3] * (x2 - y2)
            if degree > 3:
                out[i, col + 9] = C3[0] * y * (y2 - 3.0 * x2)
                out[i, col + 10] = C3[1] * x * y * z
                out[i, col + 11] = C3[2] * y * (1.0 - 5.0 * z2)
                out[i, col + 12] = C3[3] * z * (5.0 * z2 - 3.0)
                out[i, col + 13] = C3[2] * x * (1.0 - 5.0 * z2)
                out[i, col + 14] = C3[4] * z * (x2 - y2)
                out[i, col + 15] = C3[0] * x * (3.0 * y2 - x2)


def sh_encode(dirs, out, n: int, degree: int = 4, col: int = 0) -> None:
    """Write the SH coefficients of rows ``< n`` into ``out[:, col : col + degree ** 2]``.

    dirs: field (N, >= 3), view directions (normalised here; columns beyond 3 ignored).
    out: field (N, >= col + degree ** 2); other columns and rows ``>= n`` are left untouched,
        so the caller may place the encoding next to other features in one field.
    degree: number of bands, 1..4.
    """
    if not 1 <= degree <= MAX_DEGREE:
        raise ValueError(f"degree must be in 1..{MAX_DEGREE}, got {degree}")
    if len(dirs.shape) != 2 or dirs.shape[1] < 3 or dirs.shape[0] < n:
        raise ValueError(f"dirs must be a field of shape (>= {n}, >= 3), got {dirs.shape}")
    if col < 0 or len(out.shape) != 2 or out.shape[1] < col + degree * degree or out.shape[0] < n:
        raise ValueError(
            f"out must be a field of shape (>= {n}, >= {col + degree * degree}), got {out.shape}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n > 0:
        _sh_encode(dirs, out, n, degree, col)
