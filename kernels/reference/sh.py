"""float64 numpy twin of kernels/sh.py, derived independently of tiny-cuda-nn's polynomials.

Real spherical harmonics from the closed form: with ``theta`` the polar angle (``cos theta = z``),
``phi = atan2(y, x)``, the associated Legendre function ``P_l^m`` including the Condon-Shortley
phase ``(-1)^m`` and ``K_l^m = sqrt((2l + 1) / (4 pi) * (l - m)! / (l + m)!)``::

    Y_l^m  = sqrt(2) K_l^m  cos(m phi)   P_l^m(cos theta)     m > 0
    Y_l^0  = K_l^0 P_l^0(cos theta)
    Y_l^-m = sqrt(2) K_l^m  sin(m phi)   P_l^m(cos theta)     m > 0

stored at column ``l * l + l + m``.
"""
import math

import numpy as np


def legendre(l, m, z):
    """Associated Legendre P_l^m(z) with the Condon-Shortley phase, by the standard recurrences."""
    s = np.sqrt(np.maximum(0.0, 1.0 - z * z))
    pmm = np.ones_like(z)
    for k in range(1, m + 1):  # P_m^m = (-1)^m (2m - 1)!! s^m
        pmm = -pmm * (2 * k - 1) * s
    if l == m:
        return pmm
    pm1 = z * (2 * m + 1) * pmm  # P_{m+1}^m
    if l == m + 1:
        return pm1
    for ll in range(m + 2, l + 1):
        pll = ((2 * ll - 1) * z * pm1 - (ll + m - 1) * pmm) / (ll - m)
        pmm, pm1 = pm1, pll
    return pm1


def sh_encode(dirs, degree=4):
    """dirs (N, >= 3) -> (N, degree ** 2) real SH coefficients of the normalised directions."""
    d = np.asarray(dirs, dtype=np.float64)[:, :3]
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    d = np.where(norm > 0, d / np.where(norm > 0, norm, 1.0), 0.0)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    phi = np.arctan2(y, x)
    out = np.zeros((len(d), degree * degree))
    for l in range(degree):
        for m in range(-l, l + 1):
            am = abs(m)
            k = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - am) / math.factorial(l + am))
            p = legendre(l, am, z)
            if m > 0:
                val = math.sqrt(2) * k * np.cos(am * phi) * p
            elif m < 0:
                val = math.sqrt(2) * k * np.sin(am * phi) * p
            else:
                val = k * p
            out[:, l * l + l + m] = val
    # A zero direction has no defined phi; the polynomial form evaluated at the origin keeps the
    # z-only (m = 0) terms at z = 0 and zeroes every term with an x or y factor (m != 0).
    zero = norm[:, 0] == 0
    for l in range(degree):
        for m in range(-l, l + 1):
            if m != 0:
                out[zero, l * l + l + m] = 0.0
    return out
