"""float64 numpy twin of kernels/hashgrid.py (slow, written for clarity; used by the tests).

Same class name, constructor and method names as the Taichi encoder; ``forward`` returns the
features and ``backward`` returns ``(dparams, dx)`` instead of writing fields.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

PRIMES = (1, 2654435761, 805459861, 3674653429)
INIT_SCALE = 1e-4


def level_resolutions(n_levels, base_res, max_res=None, per_level_scale=None):
    """``floor(base_res * b**l)`` with ``b`` from ``per_level_scale`` or ``max_res``."""
    if (max_res is None) == (per_level_scale is None):
        raise ValueError("give exactly one of max_res and per_level_scale")
    if per_level_scale is None:
        b = (max_res / base_res) ** (1.0 / (n_levels - 1)) if n_levels > 1 else 1.0
    else:
        b = float(per_level_scale)
    return [int(math.floor(base_res * b**l * (1.0 + 1e-9))) for l in range(n_levels)]


def level_layout(dims, resolutions, log2_table_size, n_features):
    """``(offsets, sizes, hashed, total)``: a level is dense when its vertices fit the table."""
    table = 2**log2_table_size
    offsets, sizes, hashed, total = [], [], [], 0
    for res in resolutions:
        n_vertices = (res + 1) ** dims
        offsets.append(total)
        sizes.append(min(n_vertices, table))
        hashed.append(int(n_vertices > table))
        total += sizes[-1] * n_features
    return offsets, sizes, hashed, total


def hash_index(coords, log2_table_size):
    """Spatial hash of integer vertex coordinates (M, dims) -> (M,) slots."""
    h = np.zeros(coords.shape[0], dtype=np.uint64)
    for d in range(coords.shape[1]):
        h ^= (coords[:, d].astype(np.uint64) * np.uint64(PRIMES[d])) & np.uint64(0xFFFFFFFF)
    return (h % np.uint64(2**log2_table_size)).astype(np.int64)


def dense_index(coords, res):
    """Row-major vertex index with x fastest: sum_d c_d * (res + 1) ** d."""
    idx = np.zeros(coords.shape[0], dtype=np.int64)
    for d in range(coords.shape[1]):
        idx += coords[:, d].astype(np.int64) * (res + 1) ** d
    return idx


class HashGridEncoder:
    def __init__(self, dims, n_levels, n_features, log2_table_size, base_res, max_res=None,
                 per_level_scale=None, max_points=None, seed=0):
        self.dims, self.n_levels, self.n_features = dims, n_levels, n_features
        self.log2_table_size = log2_table_size
        self.resolutions = level_resolutions(n_levels, base_res, max_res, per_level_scale)
        self.offsets, self.sizes, self.hashed, self.n_params = level_layout(
            dims, self.resolutions, log2_table_size, n_features)
        self.output_dim = n_levels * n_features
        self.params = np.random.default_rng(seed).uniform(-INIT_SCALE, INIT_SCALE, size=self.n_params)

    def _corners(self, x, level):
        """For every corner: (parameter base index (N,), weight (N,), d weight / d x (N, dims))."""
        res = self.resolutions[level]
        x = np.asarray(x, dtype=np.float64)[:, : self.dims]
        u = np.clip((x + 1.0) / 2.0, 0.0, 1.0)
        pos = u * res
        cell = np.minimum(np.floor(pos).astype(np.int64), res - 1)
        frac = pos - cell
        inside = ((x >= -1.0) & (x <= 1.0)).astype(np.float64)
        dpos_dx = 0.5 * res * inside
        out = []
        for bits in itertools.product((0, 1), repeat=self.dims):
            bits = np.array(bits)
            coords = cell + bits
            if self.hashed[level]:
                slot = hash_index(coords, self.log2_table_size)
            else:
                slot = dense_index(coords, res)
            factors = np.where(bits == 1, frac, 1.0 - frac)  # (N, dims)
            weight = np.prod(factors, axis=1)
            dweight = np.empty_like(factors)
            for d in range(self.dims):
                others = np.prod(np.delete(factors, d, axis=1), axis=1)
                dweight[:, d] = (1.0 if bits[d] else -1.0) * others * dpos_dx[:, d]
            out.append((self.offsets[level] + slot * self.n_features, weight, dweight))
        return out

    def forward(self, x):
        """x (N, >= dims) -> features (N, L * F)."""
        n = len(x)
        feat = np.zeros((n, self.output_dim))
        for level in range(self.n_levels):
            for base, weight, _ in self._corners(x, level):
                for f in range(self.n_features):
                    feat[:, level * self.n_features + f] += weight * self.params[base + f]
        return feat

    def backward(self, x, dfeat):
        """dL/dfeat (N, L * F) -> (dL/dparams (P,), dL/dx (N, dims))."""
        n = len(x)
        dparams = np.zeros(self.n_params)
        dx = np.zeros((n, self.dims))
        for level in range(self.n_levels):
            for base, weight, dweight in self._corners(x, level):
                for f in range(self.n_features):
                    g = dfeat[:, level * self.n_features + f]
                    np.add.at(dparams, base + f, g * weight)
                    dx += (g * self.params[base + f])[:, None] * dweight
        return dparams, dx
