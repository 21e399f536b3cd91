"""Float64 numpy twin of kernels/timefn.py (the frames span [t_lo, t_lo + t_span]; default: the
project's convention, taichi_syncnerf/timeline.py)."""
import numpy as np

from taichi_syncnerf.timeline import T_LO, T_SPAN


def table_times(offsets, n_frames, per_camera=True, t_lo=T_LO, t_span=T_SPAN):
    """(K, F) normalised times ``t_lo + t_span f / (F - 1) + offsets[k]``."""
    f = np.arange(n_frames)
    t = t_lo + t_span * f / max(n_frames - 1, 1) if n_frames > 1 else np.full(1, t_lo + 0.5 * t_span)
    offsets = np.asarray(offsets, np.float64) if per_camera else np.zeros(1)
    return offsets[:, None] + t[None, :]


def encode_times(t, n_freqs, t_lo=T_LO, t_span=T_SPAN):
    """Encoding (..., 2L) of normalised times ``t`` (...)."""
    tau = (np.asarray(t, np.float64) - t_lo) / t_span
    w = 2.0 ** np.arange(n_freqs)
    ang = tau[..., None] * w
    out = np.stack([np.sin(ang), np.cos(ang)], -1).reshape(*tau.shape, 2 * n_freqs)
    return out / np.sqrt(n_freqs)


def time_encoding(offsets, n_frames, n_freqs, per_camera=True):
    """The (K * F, 2L) table of kernels/timefn.time_encoding."""
    t = table_times(offsets, n_frames, per_camera)
    return encode_times(t, n_freqs).reshape(-1, 2 * n_freqs)


def encode_times_derivative(t, n_freqs, t_lo=T_LO, t_span=T_SPAN):
    """d encode_times / dt (..., 2L)."""
    tau = (np.asarray(t, np.float64) - t_lo) / t_span
    w = 2.0 ** np.arange(n_freqs)
    ang = tau[..., None] * w
    out = np.stack([np.cos(ang) * w, -np.sin(ang) * w], -1).reshape(*tau.shape, 2 * n_freqs)
    return out / (t_span * np.sqrt(n_freqs))


def grid_read(t, grid, t_lo=T_LO, t_span=T_SPAN):
    """The learned time grid (F, G) read at normalised times ``t`` (...): (..., G), linear
    between frames, clamped to the first and last frame."""
    grid = np.asarray(grid, np.float64)
    F = grid.shape[0]
    p = np.clip((np.asarray(t, np.float64) - t_lo) / t_span * (F - 1), 0.0, F - 1)
    f0 = np.minimum(np.floor(p).astype(int), max(F - 2, 0))
    f1 = np.minimum(f0 + 1, F - 1)
    w = (p - f0)[..., None]
    return (1.0 - w) * grid[f0] + w * grid[f1]


def time_grid_encoding(offsets, grid, per_camera=True):
    """The (K * F, G) columns of kernels/timefn.time_grid_encoding."""
    grid = np.asarray(grid, np.float64)
    t = table_times(offsets, grid.shape[0], per_camera)
    return grid_read(t, grid).reshape(-1, grid.shape[1])
