"""Copies of large fields for a checkpoint, in pages of temporary files instead of anonymous
memory. (No ``from __future__ import annotations`` here: Taichi reads the kernel's annotations.)"""
import tempfile

import numpy as np
import taichi as ti

SPILL_BYTES = 32 << 20  # host_copy: arrays at least this large go to a temporary file's pages


@ti.kernel
def _copy_out(src: ti.template(), dst: ti.types.ndarray()):
    for i in src:
        dst[i] = src[i]


def host_copy(field) -> np.ndarray:
    """A flat field's values as a numpy array: ``field.to_numpy()``, or for one of at least
    :data:`SPILL_BYTES` a ``np.memmap`` of an unnamed temporary file (in ``TMPDIR``, removed when
    the array goes). Its pages are file-backed: the kernel can write them out instead of holding
    them, so that a checkpoint of the final-size grids does not double their anonymous memory
    (on a tmpfs ``TMPDIR`` they are memory again)."""
    dtype = np.float64 if field.dtype == ti.f64 else np.float32
    nbytes = int(np.prod(field.shape)) * np.dtype(dtype).itemsize
    if len(field.shape) != 1 or nbytes < SPILL_BYTES:
        return field.to_numpy()
    with tempfile.TemporaryFile(prefix="syncnerf-checkpoint-") as f:
        f.truncate(nbytes)
        out = np.memmap(f, dtype=dtype, mode="w+", shape=field.shape)  # the mapping outlives the file object
    _copy_out(field, out)
    return out
