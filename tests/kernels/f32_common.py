"""Shared helpers of the f32 checks (tests/kernels/f32_checks.py): inputs exactly representable in
f32, fields loaded from numpy, generated ray samples, and the error measure.

Error of one output array: ``max_i |got_i - want_i| / (|want_i| + 0.01 * max_j |want_j|)``, a
relative error that does not blow up on entries near zero but still sees an entry at 1 % of the
largest one go wrong.
"""
import numpy as np


def rel_err(got, want, floor=1e-2):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise ValueError(f"shape {got.shape} != {want.shape}")
    scale = np.abs(want).max() if want.size else 0.0
    if scale == 0.0:
        return float(np.abs(got).max()) if got.size else 0.0
    return float((np.abs(got - want) / (np.abs(want) + floor * scale)).max())


def f32(a):
    """Round to float32 values, kept as float64 (inputs both sides see exactly)."""
    return np.asarray(a, np.float64).astype(np.float32).astype(np.float64)


def put(field, arr):
    """Load ``arr`` into the first rows of ``field`` (rest zero), in the field's dtype."""
    full = np.zeros(field.shape, dtype=field.to_numpy().dtype)
    arr = np.asarray(arr)
    full[: len(arr)] = arr
    field.from_numpy(full)


def ti_field(shape, dtype=None, grad=False):
    import taichi as ti

    dtype = float if dtype is None else {"i32": ti.i32}[dtype]
    return ti.field(dtype, shape=shape, needs_grad=grad)


# ------------------------------------------------------------------------ families


def ray_samples(rng, counts, near=(1.0, 2.0), far=(4.0, 6.0), jitter=True):
    """A RaySampler holding stratified samples with the given per-ray counts."""
    from taichi_syncnerf.kernels import sampling

    R = len(counts)
    near_f, far_f, cnt = ti_field(R), ti_field(R), ti_field(R, dtype="i32")
    put(near_f, f32(rng.uniform(*near, R)))
    put(far_f, f32(rng.uniform(*far, R)))
    put(cnt, np.asarray(counts, np.int32))
    smp = sampling.RaySampler(R, int(np.sum(counts)))
    smp.stratified(near_f, far_f, R, counts=cnt, jitter=jitter, seed=4)
    return smp, near_f, far_f
