"""Spherical-harmonics encoding vs the closed-form reference."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import sh
from taichi_syncnerf.kernels.reference import sh as ref

N = 64


@pytest.fixture(scope="module")
def fields():
    return ti.field(float, shape=(N, 4)), ti.field(float, shape=(N, 20))


@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_matches_closed_form(fields, degree, rng):
    dirs, out = fields
    d = rng.normal(size=(N, 4)) * rng.uniform(0.2, 3.0, size=(N, 1))  # not unit: normalised inside
    d[0, :3] = 0.0  # zero direction
    d[1, :3] = (0.0, 0.0, 1.0)  # poles
    d[2, :3] = (0.0, 0.0, -1.0)
    dirs.from_numpy(d)
    out.fill(5.0)
    col, n = 3, N - 4
    sh.sh_encode(dirs, out, n, degree=degree, col=col)
    o = out.to_numpy()
    k = sh.n_coefficients(degree)
    np.testing.assert_allclose(o[:n, col:col + k], ref.sh_encode(d[:n], degree), rtol=1e-12, atol=1e-13)
    untouched = np.ones_like(o, dtype=bool)
    untouched[:n, col:col + k] = False
    assert np.all(o[untouched] == 5.0)


def test_tiny_cuda_nn_constants_and_orthonormality(rng):
    # Spot values of tiny-cuda-nn's polynomials at a fixed direction.
    x, y, z = 0.48, -0.6, 0.64
    r = ref.sh_encode(np.array([[x, y, z]]), 4)[0]
    assert r[1] == pytest.approx(-0.48860251190291987 * y, rel=1e-12)
    assert r[5] == pytest.approx(-1.0925484305920792 * y * z, rel=1e-12)
    assert r[9] == pytest.approx(0.59004358992664352 * y * (-3 * x * x + y * y), rel=1e-12)
    assert r[15] == pytest.approx(0.59004358992664352 * x * (-x * x + 3 * y * y), rel=1e-12)
    # Monte-Carlo orthonormality over the sphere: integral of Y_i Y_j = delta_ij.
    d = rng.normal(size=(200000, 3))
    y16 = ref.sh_encode(d, 4)
    gram = 4 * np.pi * (y16.T @ y16) / len(d)
    np.testing.assert_allclose(gram, np.eye(16), atol=0.03)


def test_bad_arguments_raise(fields):
    dirs, out = fields
    with pytest.raises(ValueError, match="degree"):
        sh.sh_encode(dirs, out, N, degree=5)
    with pytest.raises(ValueError, match="out must be"):
        sh.sh_encode(dirs, out, N, degree=4, col=8)
    with pytest.raises(ValueError, match="dirs must be"):
        sh.sh_encode(dirs, out, N + 1, degree=2)
