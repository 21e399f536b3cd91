"""Time encoding of the implicit time function (Sync-MixVoxels), per (camera slot, frame).

Row ``k * F + f`` of the table is the encoding of the time queried by camera slot ``k`` at frame
``f``: ``t = t_lo + t_span f / (F - 1) + offsets[k]`` (frame f's time plus the camera's offset,
normalised units). The kernels do not fix the time convention: every kernel takes the interval
``[t_lo, t_lo + t_span]`` the frames span (taichi_syncnerf/timeline.py: -0.8 and 1.6). The reference
encodes times in [0, 1], so ``t`` is first mapped affinely by ``tau = (t - t_lo) / t_span`` (frame 0
-> 0, frame F-1 -> 1); then, for ``l = 0 .. L-1``::

    gamma[2 l]     = sin(2^l tau) / sqrt(L)
    gamma[2 l + 1] = cos(2^l tau) / sqrt(L)

(no pi, as in the reference code; the division by ``sqrt(L)`` is the reference's division by
the L2 norm of the vector, which is always ``sqrt(L)``). With ``per_camera = 0`` the table has one
slot and no offset (``K = 1``).

Backward: reads ``out.grad`` (rows ``< K * F``) and ACCUMULATES ``sum_f dL/dt(k, f)`` into
``offsets.grad[k]``, with ``d gamma[2 l] / dt = 2^l cos(2^l tau) / (t_span sqrt(L))`` and
``d gamma[2 l + 1] / dt = -2^l sin(2^l tau) / (t_span sqrt(L))``. ``dt_table`` (K * F,) receives
the per-row time derivative ``dL/dt`` (for tests and logging).

``time_encoding_at`` encodes arbitrary times (offsets already added), for rendering at a
time between frames; it has no backward.

Learned time grid (optional, ``G > 0`` features): ``grid`` (F * G, flat, row-major) holds one learned latent per
frame, read at the fractional frame ``p = tau (F - 1)`` (clamped to ``[0, F - 1]``) by linear
interpolation between its two neighbouring frames, and written to columns ``col0 .. col0 + G`` of
the same table. With every offset at 0 a row reads exactly its frame's latent, so the time
function can give each frame its own query as the per-frame head does, while the shared grid keeps
the cameras' times comparable. Its backward ACCUMULATES into ``grid.grad``, ``dt_table`` and
``offsets.grad``; ``dp/dt = (F - 1) / t_span``, and the time derivative is 0 where ``p`` is clamped
(the sinusoids still carry one there).

Example::

    time_encoding(offsets.params, table, K, F, L, 1)     # table (K * F, 2 L)
    ... table.grad = dL/dtable (e.g. from the time MLP's input gradient) ...
    time_encoding_backward(offsets.params, table, dt, K, F, L, 1)
"""
import taichi as ti

@ti.func
def _tau(offsets: ti.template(), k, f, F, per_camera, t_span):
    """tau of camera slot k at frame f: the frame's position in [0, 1] plus the offset's share."""
    tau = 0.5
    if F > 1:
        tau = f / (F - 1.0)
    if per_camera:
        tau += offsets[k] / t_span
    return tau


@ti.kernel
def time_encoding(offsets: ti.template(), out: ti.template(), K: int, F: int, L: int, per_camera: int,
                  t_span: float):
    """``out[k * F + f, 0:2L]`` = encoding of camera slot k's time at frame f."""
    norm = 1.0 / ti.sqrt(ti.cast(L, float))
    for k, f, l in ti.ndrange(K, F, L):
        tau = _tau(offsets, k, f, F, per_camera, t_span)
        w = ti.pow(2.0, ti.cast(l, float))
        out[k * F + f, 2 * l] = ti.sin(w * tau) * norm
        out[k * F + f, 2 * l + 1] = ti.cos(w * tau) * norm


@ti.kernel
def time_encoding_backward(offsets: ti.template(), out: ti.template(), dt_table: ti.template(), K: int,
                           F: int, L: int, per_camera: int, t_span: float):
    norm = 1.0 / (ti.sqrt(ti.cast(L, float)) * t_span)
    for k, f in ti.ndrange(K, F):
        tau = _tau(offsets, k, f, F, per_camera, t_span)
        row = k * F + f
        d = 0.0
        for l in range(L):
            w = ti.pow(2.0, ti.cast(l, float))
            d += w * (out.grad[row, 2 * l] * ti.cos(w * tau) - out.grad[row, 2 * l + 1] * ti.sin(w * tau))
        dt_table[row] = d * norm
        if per_camera:
            ti.atomic_add(offsets.grad[k], d * norm)


@ti.kernel
def time_encoding_at(times: ti.template(), out: ti.template(), Q: int, L: int, t_lo: float, t_span: float):
    """``out[q, 0:2L]`` = encoding of the normalised time ``times[q]``."""
    norm = 1.0 / ti.sqrt(ti.cast(L, float))
    for q, l in ti.ndrange(Q, L):
        tau = (times[q] - t_lo) / t_span
        w = ti.pow(2.0, ti.cast(l, float))
        out[q, 2 * l] = ti.sin(w * tau) * norm
        out[q, 2 * l + 1] = ti.cos(w * tau) * norm


@ti.func
def _grid_cell(p, F):
    """Left and right frames and weight of the fractional frame ``p`` (clamped to the video), and
    whether it was inside."""
    inside = 1
    q = p
    if q < 0.0:
        q = 0.0
        inside = 0
    if q > F - 1.0:
        q = F - 1.0
        inside = 0
    f0 = ti.min(ti.cast(ti.floor(q), ti.i32), ti.max(F - 2, 0))
    return f0, ti.min(f0 + 1, F - 1), q - f0, inside


@ti.func
def _grid_read(grid, p, F, G, j):
    """Feature ``j`` of the grid at the fractional frame ``p``."""
    f0, f1, w, _ = _grid_cell(p, F)
    return (1.0 - w) * grid[f0 * G + j] + w * grid[f1 * G + j]


@ti.kernel
def time_grid_encoding(offsets: ti.template(), grid: ti.template(), out: ti.template(), K: int, F: int, G: int,
                       col0: int, per_camera: int, t_span: float):
    """``out[k * F + f, col0:col0 + G]`` = the grid read at camera slot k's time at frame f."""
    for k, f, j in ti.ndrange(K, F, G):
        out[k * F + f, col0 + j] = _grid_read(grid, _tau(offsets, k, f, F, per_camera, t_span) * (F - 1.0), F, G, j)


@ti.kernel
def time_grid_encoding_backward(offsets: ti.template(), grid: ti.template(), out: ti.template(),
                                dt_table: ti.template(), K: int, F: int, G: int, col0: int, per_camera: int, t_span: float):
    scale = (F - 1.0) / t_span
    for k, f in ti.ndrange(K, F):
        f0, f1, w, inside = _grid_cell(_tau(offsets, k, f, F, per_camera, t_span) * (F - 1.0), F)
        row = k * F + f
        d = 0.0
        for j in range(G):
            g = out.grad[row, col0 + j]
            ti.atomic_add(grid.grad[f0 * G + j], (1.0 - w) * g)
            ti.atomic_add(grid.grad[f1 * G + j], w * g)
            d += g * (grid[f1 * G + j] - grid[f0 * G + j])
        d *= scale * inside
        dt_table[row] += d
        if per_camera:
            ti.atomic_add(offsets.grad[k], d)


@ti.kernel
def time_grid_encoding_at(times: ti.template(), grid: ti.template(), out: ti.template(), Q: int, F: int, G: int,
                          col0: int, t_lo: float, t_span: float):
    """``out[q, col0:col0 + G]`` = the grid read at the normalised time ``times[q]``."""
    for q, j in ti.ndrange(Q, G):
        out[q, col0 + j] = _grid_read(grid, (times[q] - t_lo) / t_span * (F - 1.0), F, G, j)
