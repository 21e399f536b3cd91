"""K-Planes' explicit ("linear") colour decoder: per-ray basis times per-sample features.

For ray ``r`` and each of its packed samples ``s`` (``ray_start[r] .. ray_start[r] + ray_count[r] - 1``,
the convention of kernels/sampling.py), with ``D = dim`` encoder features per sample and a per-ray
basis of ``3 * D`` values (produced by an MLP from the SH encoding of the ray's view direction)::

    out[s, c] = sum_{f < D} feat[s, f] * basis[r, c * D + f]        c = 0, 1, 2 (R, G, B)

``out`` is the raw colour; the model applies the sigmoid. Backward, from ``out.grad`` (S, 3)::

    feat.grad[s, f]       += sum_c out.grad[s, c] * basis[r, c * D + f]      (ACCUMULATES)
    basis.grad[r, c*D+f]   = sum_{s of ray r} out.grad[s, c] * feat[s, f]    (OVERWRITES, rows < n_rays)

``feat.grad`` accumulates because another consumer of the features (the density MLP) has already
written its part; ``basis.grad`` is overwritten as the input gradient the basis MLP's backward reads.

How it runs: one thread per ray, looping over its samples, and for each sample over the features
with a dynamic loop (any ``dim``, no unrolling: one small compiled instance per set of fields).
A ray owns its basis row and the rows of its samples, so both passes are free of data races and
of atomics, on CPU and on CUDA, and deterministic. The backward zeroes the ray's ``basis.grad`` row
and then adds each sample's contribution to it with plain read-modify-write (the row stays in
cache), and updates ``feat.grad`` the same way. The inner feature loops are contiguous and
vectorised by LLVM; both passes are memory-bound on CPU (about 5 ms forward and 8 ms backward for
4096 rays x 48 samples x 64 features, float32, 2 threads). On a GPU the parallelism is one thread
per ray: correct, but only ``n_rays`` threads.

Preconditions (not checked: reading the ray fields back would cost a device sync): the samples of
rays ``< n_rays`` are distinct rows, ``0 <= ray_start[r]`` and ``ray_start[r] + ray_count[r]`` is at
most the row count of ``feat`` and ``out``. Rays with ``ray_count[r] == 0`` are valid (their basis
gradient row is 0). Only the sample rows of rays ``< n_rays``, columns ``< 3`` of ``out``,
``< dim`` of ``feat`` and ``< 3 * dim`` of ``basis`` are read or written.

Example::

    feat = ti.field(float, shape=(S, D), needs_grad=True)        # encoder output
    basis = ti.field(float, shape=(R, 3 * D), needs_grad=True)   # basis MLP output
    rgb_raw = ti.field(float, shape=(S, 3), needs_grad=True)
    explicit_color_forward(feat, basis, rays.ray_start, rays.ray_count, rgb_raw, n_rays, D)
    ... sigmoid, rendering, loss: write rgb_raw.grad ...
    explicit_color_backward(feat, basis, rays.ray_start, rays.ray_count, rgb_raw, n_rays, D)
    basis_mlp.backward(sh_in, basis, n_rays)                      # reads basis.grad
"""
import taichi as ti


@ti.kernel
def _forward(feat: ti.template(), basis: ti.template(), ray_start: ti.template(),
             ray_count: ti.template(), out: ti.template(), n_rays: int, dim: int):
    for r in range(n_rays):
        a = ray_start[r]
        for k in range(ray_count[r]):
            s = a + k
            c0, c1, c2 = 0.0, 0.0, 0.0
            for f in range(dim):
                x = feat[s, f]
                c0 += x * basis[r, f]
                c1 += x * basis[r, dim + f]
                c2 += x * basis[r, 2 * dim + f]
            out[s, 0] = c0
            out[s, 1] = c1
            out[s, 2] = c2


@ti.kernel
def _backward(feat: ti.template(), basis: ti.template(), ray_start: ti.template(),
              ray_count: ti.template(), out: ti.template(), n_rays: int, dim: int):
    for r in range(n_rays):
        a = ray_start[r]
        for i in range(3 * dim):
            basis.grad[r, i] = 0.0
        for k in range(ray_count[r]):
            s = a + k
            g0, g1, g2 = out.grad[s, 0], out.grad[s, 1], out.grad[s, 2]
            for f in range(dim):
                x = feat[s, f]
                b0, b1, b2 = basis[r, f], basis[r, dim + f], basis[r, 2 * dim + f]
                # Written as load + store, not `+=`: `+=` on a global field is an atomic add in
                # Taichi, which this ownership scheme does not need.
                feat.grad[s, f] = feat.grad[s, f] + (g0 * b0 + g1 * b1 + g2 * b2)
                basis.grad[r, f] = basis.grad[r, f] + g0 * x
                basis.grad[r, dim + f] = basis.grad[r, dim + f] + g1 * x
                basis.grad[r, 2 * dim + f] = basis.grad[r, 2 * dim + f] + g2 * x


def _has_grad(field) -> bool:
    try:
        return bool(field.snode.ptr.has_adjoint())
    except AttributeError:
        return getattr(field, "grad", None) is not None


def _check(feat, basis, ray_start, ray_count, out, n_rays, dim, need_grad: bool):
    n_rays, dim = int(n_rays), int(dim)
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if n_rays < 0:
        raise ValueError(f"n_rays must be >= 0, got {n_rays}")
    for name, field, cols in (("feat", feat, dim), ("basis", basis, 3 * dim), ("out", out, 3)):
        shape = getattr(field, "shape", None)
        if shape is None or len(shape) != 2 or shape[1] < cols:
            raise ValueError(f"{name}: expected a 2-D field with >= {cols} columns, got {shape}")
        if need_grad and not _has_grad(field):
            raise ValueError(f"{name}: the field needs needs_grad=True")
    if basis.shape[0] < n_rays:
        raise ValueError(f"basis has {basis.shape[0]} rows, fewer than n_rays={n_rays}")
    for name, field in (("ray_start", ray_start), ("ray_count", ray_count)):
        shape = getattr(field, "shape", None)
        if shape is None or len(shape) != 1 or shape[0] < n_rays:
            raise ValueError(f"{name}: expected a 1-D field of >= {n_rays} entries, got {shape}")
        if field.dtype != ti.i32:
            raise ValueError(f"{name}: expected an int32 field, got {field.dtype}")
    return n_rays, dim


def explicit_color_forward(feat, basis, ray_start, ray_count, out, n_rays: int, dim: int) -> None:
    """Write ``out[s, c] = sum_f feat[s, f] * basis[r, c * dim + f]`` for the samples of rays < n_rays.

    feat: field (S, >= dim), per-sample features; basis: field (>= n_rays, >= 3 * dim), per-ray basis
    (channel-major: column ``c * dim + f``); ray_start, ray_count: int32 fields (>= n_rays,), packed
    samples; out: field (S, >= 3), raw colour (columns 0..2 of the samples of rays < n_rays written).
    """
    n_rays, dim = _check(feat, basis, ray_start, ray_count, out, n_rays, dim, need_grad=False)
    if n_rays > 0:
        _forward(feat, basis, ray_start, ray_count, out, n_rays, dim)


def explicit_color_backward(feat, basis, ray_start, ray_count, out, n_rays: int, dim: int) -> None:
    """Backward of :func:`explicit_color_forward` from ``out.grad`` (S, >= 3).

    ACCUMULATES ``feat.grad[s, f] += sum_c out.grad[s, c] * basis[r, c * dim + f]`` (keep what
    another consumer of ``feat`` wrote there; zero it first otherwise) and OVERWRITES
    ``basis.grad[r, c * dim + f] = sum_{s of ray r} out.grad[s, c] * feat[s, f]`` for rows r < n_rays.
    Same arguments as the forward; ``feat``, ``basis`` and ``out`` need ``needs_grad=True``.
    ``out.grad`` is left as the caller set it.
    """
    n_rays, dim = _check(feat, basis, ray_start, ray_count, out, n_rays, dim, need_grad=True)
    if n_rays > 0:
        _backward(feat, basis, ray_start, ray_count, out, n_rays, dim)
