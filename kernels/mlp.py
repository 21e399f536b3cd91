"""Small fully connected networks (ReLU hidden layers, linear output) with a hand-written backward.

``MLP(in_dim, hidden, out_dim, max_batch)`` maps ``inp (max_batch, in_dim)`` to
``out (max_batch, out_dim)`` for the active rows ``< n``. The output is linear: the model applies
its own output activation (trunc_exp, sigmoid) around it.

Parameters: ONE flat field ``params`` (shape ``(n_params,)``, ``needs_grad=True``). Layer ``l``
(``in_l -> out_l``) owns the block ``params[offset_l : offset_l + out_l * (in_l + 1)]`` holding the
row-major ``(out_l, in_l + 1)`` matrix ``[W_l | b_l]``: row ``j`` is neuron ``j``'s input weights
followed by its bias. ``layers()`` / ``unflatten()`` give ``(W (out, in), b (out,))`` per layer.
Initialisation is PyTorch's ``nn.Linear`` default: ``W`` and ``b`` uniform in
``+-1 / sqrt(in_l)`` (``kaiming_uniform_(a=sqrt(5))``), from ``numpy.random.default_rng(seed)``.

How it runs (the same code on CPU and CUDA):

* Internally activations and gradients live in one buffer ``_buf[cell, row]`` of
  ``ti.Vector(V)``: a cell is ``V`` consecutive samples, a row is one feature, and a cell's rows
  are contiguous (one sweep per tile, few pages). A layer is then a register-tiled product: a
  thread owns ``V`` samples x ``_J`` neurons, loops over the inputs with a dynamic loop and
  multiplies a broadcast weight by a contiguous sample vector. The body is small and
  shape-free (widths and offsets are runtime arguments), so all layers of an MLP share one
  compiled instance per destination field (about 2 s each to compile, 6-8 s per MLP for
  all its kernels; the offline cache removes this on later runs).
  The bias is folded in as an extra input: each activation block has a row of ones after it,
  hence the ``[W | b]`` parameter rows (weights are read as broadcast scalars, so their
  orientation costs nothing; the input gradient reads the same rows with a stride).
* Lanes of samples ``>= n`` of the last cell are filled with 0 when the caller's input and output
  gradient are loaded, so every gradient lane ``>= n`` derived from them is exactly 0 (activation
  lanes ``>= n`` hold finite junk) and the sums over samples need no masks. The caller's fields
  are only touched on rows ``< n``.
* Weight gradients: the samples are cut into blocks of ``_BLOCK_COLS * V`` (more for very wide
  layers, so the block sums stay under ``_PARTIAL_BUDGET`` entries); each thread sums one
  block's contribution to a ``_JW x _IW`` tile of ``[W | b]`` into ``partial[p, block]`` (each
  entry written by exactly one thread), then one thread per parameter adds the block sums into
  ``params.grad``. No atomics, no data races, deterministic; valid on CUDA as on CPU.
* Inner reduction loops carry ``if _opaque_exit(k, never): break`` with ``never = -1``. The
  exit cannot be counted by LLVM, which keeps its loop vectoriser from vectorising the
  reduction index with strided gathers (5-30x slower here); the SLP vectoriser then vectorises
  across the ``V`` lanes. It never triggers.

Example::

    mlp = MLP(64, [64], 16, max_batch=N)
    mlp.forward(feat, h, n)            # h[:n] = MLP(feat[:n])
    ... set h.grad[:n] ...
    mlp.backward(feat, h, n)           # params.grad += dL/dparams, feat.grad[:n] = dL/dfeat
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import taichi as ti

V = 32  # samples per vector cell of the internal buffer
_J = 2  # neurons per thread in the layer product
_JW, _IW = 2, 1  # (neuron, input) tile per thread in the weight gradient
_BLOCK_COLS = 32  # vector cells (x V samples) per weight-gradient block, at least
_PARTIAL_BUDGET = 1 << 22  # entries of the block-sum buffer, at most (when blocks can grow)

_LINEAR, _RELU, _RELU_GRAD = 0, 1, 2
_NEVER = -1  # k * k never equals -1: see _opaque_exit


def init_layers(dims: Sequence[int], seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """PyTorch ``nn.Linear`` default init for widths ``dims`` (``[in, h1, ..., out]``), float64."""
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(fan_out, fan_in))
        b = rng.uniform(-bound, bound, size=fan_out)
        layers.append((w, b))
    return layers


def flatten(layers: Sequence[Tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``[(W (out, in), b (out,)), ...]`` -> flat float64 array in the ``params`` layout."""
    return np.concatenate([np.concatenate([w, b[:, None]], axis=1).ravel() for w, b in layers])


@ti.func
def _opaque_exit(k: int, never: int) -> bool:
    # An exit LLVM cannot count (see the module docstring). With never = -1 it is always false:
    # a square is never -1, even wrapped modulo 2^32 (squares are 0 or 1 modulo 4).
    return k * k == never


@ti.kernel
def _fill_row(buf: ti.template(), row: int, value: float):
    for c in range(buf.shape[0]):
        buf[c, row] = ti.Vector([value] * V)


@ti.kernel
def _rows_to_cols(src: ti.template(), buf: ti.template(), row0: int, width: int, n: int):
    """X(row0 + d, s) = src[s, d] for samples s < n; lanes s >= n of the last cell = 0.

    X(r, s) denotes buf[s // V, r][s % V]; src is a caller's (>= n, width) field.
    """
    ncols = (n + V - 1) // V
    for t in range(ncols * width):
        c = t // width
        d = t - c * width
        x = ti.Vector.zero(float, V)
        for v in ti.static(range(V)):
            s = c * V + v
            if s < n:
                x[v] = src[s, d]
        buf[c, row0 + d] = x


@ti.kernel
def _layer(params: ti.template(), base: int, stride_j: int, stride_k: int,
           buf: ti.template(), src_row: int, k_count: int,
           dst: ti.template(), row_major: ti.template(), dst_row: int, m: int,
           mode: int, mask_row: int, n: int, never: int):
    """Y(j, s) = f(sum_k params[base + j * stride_j + k * stride_k] * X(src_row + k, s)).

    j < m, k < k_count, samples s in the cells covering n (X(r, s) = buf[s // V, r][s % V]).
    ``mode``: _LINEAR, _RELU, or _RELU_GRAD (times X(mask_row + j, s) > 0). ``row_major``: Y is
    a caller's (>= n, D) field written at dst[s, dst_row + j] for s < n only; else Y is the
    internal buffer, Y(j, s) = X(dst_row + j, s).
    """
    ncols = (n + V - 1) // V
    njt = (m + _J - 1) // _J
    for t in range(ncols * njt):
        c = t // njt
        j0 = (t - c * njt) * _J
        acc = ti.Matrix.zero(float, _J, V)
        wbase = ti.Vector([base + ti.min(j0 + a, m - 1) * stride_j for a in ti.static(range(_J))])
        for k in range(k_count):
            if _opaque_exit(k, never):
                break
            x = buf[c, src_row + k]
            for a in ti.static(range(_J)):
                w = params[wbase[a] + k * stride_k]
                for v in ti.static(range(V)):
                    acc[a, v] += w * x[v]
        for a in ti.static(range(_J)):
            j = j0 + a
            if j < m:
                y = ti.Vector([acc[a, v] for v in ti.static(range(V))])
                if mode == _RELU:
                    y = ti.max(y, 0.0)
                elif mode == _RELU_GRAD:
                    y = ti.select(buf[c, mask_row + j] > 0.0, y, 0.0)
                if ti.static(row_major):
                    for v in ti.static(range(V)):
                        if c * V + v < n:
                            dst[c * V + v, dst_row + j] = y[v]
                else:
                    dst[c, dst_row + j] = y


@ti.kernel
def _weight_grad_blocks(buf: ti.template(), partial: ti.template(), g_row: int, m: int,
                        h_row: int, k_count: int, p_off: int, block_cols: int, n: int, never: int):
    """partial[p_off + j * k_count + i, b] = sum_{s in block b} X(g_row + j, s) * X(h_row + i, s).

    j < m, i < k_count; block b = cells [b * block_cols, (b + 1) * block_cols) of those covering n.
    """
    ncols = (n + V - 1) // V
    nblk = (ncols + block_cols - 1) // block_cols
    njt = (m + _JW - 1) // _JW
    nit = (k_count + _IW - 1) // _IW
    for t in range(nblk * njt * nit):
        b = t // (njt * nit)
        r = t - b * (njt * nit)
        j0 = (r // nit) * _JW
        i0 = (r - (r // nit) * nit) * _IW
        acc = ti.Matrix.zero(float, _JW * _IW, V)
        c_end = ti.min(b * block_cols + block_cols, ncols)
        for c in range(b * block_cols, c_end):
            if _opaque_exit(c, never):
                break
            for a in ti.static(range(_JW)):
                g = buf[c, g_row + ti.min(j0 + a, m - 1)]
                for e in ti.static(range(_IW)):
                    h = buf[c, h_row + ti.min(i0 + e, k_count - 1)]
                    for v in ti.static(range(V)):
                        acc[a * _IW + e, v] += g[v] * h[v]
        for a in ti.static(range(_JW)):
            for e in ti.static(range(_IW)):
                if j0 + a < m and i0 + e < k_count:
                    total = 0.0
                    for v in ti.static(range(V)):
                        total += acc[a * _IW + e, v]
                    partial[p_off + (j0 + a) * k_count + i0 + e, b] = total


@ti.kernel
def _add_block_sums(partial: ti.template(), grad: ti.template(), nblk: int):
    """grad[p] += sum_{b < nblk} partial[p, b]."""
    for p in range(grad.shape[0]):
        total = 0.0
        for b in range(nblk):
            total += partial[p, b]
        grad[p] += total


def _check_field(name: str, field, rows: int, cols: int, need_grad: bool = False):
    shape = getattr(field, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != cols or shape[0] < rows:
        raise ValueError(f"{name}: expected a 2-D field of shape (>= {rows}, {cols}), got {shape}")
    if need_grad and not _has_grad(field):
        raise ValueError(f"{name}: the field needs needs_grad=True")


def _has_grad(field) -> bool:
    try:
        return bool(field.snode.ptr.has_adjoint())
    except AttributeError:
        return getattr(field, "grad", None) is not None


@ti.data_oriented
class MLP:
    """ReLU MLP ``in_dim -> hidden... -> out_dim`` (linear output) over batches of up to ``max_batch``.

    ``hidden``: widths of the hidden layers (may be empty: one linear layer). ``seed``: seed of
    the initialisation. ``output_activation``: only ``None`` (the caller applies its own).
    Allocates ``params`` (``(n_params,)``, needs_grad), an internal buffer of
    ``(in_dim + 1 + 2 * sum(hidden) + len(hidden) + out_dim) * max_batch`` floats (``max_batch``
    rounded up to a multiple of ``V``) and the weight-gradient block sums (``n_params`` x
    ``max_batch / 1024`` floats, capped near ``_PARTIAL_BUDGET``).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, max_batch: int,
                 seed: int = 0, output_activation: Optional[str] = None):
        if output_activation is not None:
            raise ValueError(f"output_activation={output_activation!r}: only None is supported; "
                             "apply the activation to the MLP's output")
        dims = [int(in_dim), *[int(h) for h in hidden], int(out_dim)]
        if min(dims) < 1 or int(max_batch) < 1:
            raise ValueError(f"MLP widths {dims} and max_batch {max_batch} must all be >= 1")
        self.dims = dims
        self.in_dim, self.out_dim, self.hidden = dims[0], dims[-1], dims[1:-1]
        self.max_batch = int(max_batch)
        self.n_layers = len(dims) - 1

        # Parameter blocks [W_l | b_l], (out_l, in_l + 1) row-major.
        self._p_off, off = [], 0
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            self._p_off.append(off)
            off += fan_out * (fan_in + 1)
        self.n_params = off
        # Buffer rows: layer l's input block at _h_row[l] (dims[l] rows, then a row of ones);
        # layer l's output gradient at _g_row[l] (dims[l + 1] rows).
        self._h_row, rows = [], 0
        for width in dims[:-1]:
            self._h_row.append(rows)
            rows += width + 1
        self._g_row = []
        for width in dims[1:]:
            self._g_row.append(rows)
            rows += width
        ncols = -(-self.max_batch // V)
        nblk = min(-(-ncols // _BLOCK_COLS), max(1, _PARTIAL_BUDGET // self.n_params))
        self._block_cols = -(-ncols // nblk)
        if rows * ncols * V >= 2 ** 31:
            raise ValueError(f"MLP {dims} with max_batch={max_batch} needs {rows * ncols * V} buffer "
                             "entries, over the 2^31 a field can index: use a smaller max_batch")
        self._buf = ti.Vector.field(V, float, shape=(ncols, rows))
        self._partial = ti.field(float, shape=(self.n_params, -(-ncols // self._block_cols)))
        self.params = ti.field(float, shape=self.n_params, needs_grad=True)
        for l, width in enumerate(dims[:-1]):
            _fill_row(self._buf, self._h_row[l] + width, 1.0)
        self.set_params(flatten(init_layers(dims, seed)))
        self._forward_state = None

    # ----------------------------------------------------------------- parameters
    def get_params(self) -> np.ndarray:
        """Copy of ``params`` (``(n_params,)``, the runtime float type)."""
        return self.params.to_numpy()

    def set_params(self, values) -> None:
        """Load a flat ``(n_params,)`` array in the ``params`` layout (e.g. from ``get_params``)."""
        values = np.asarray(values)
        if values.shape != (self.n_params,):
            raise ValueError(f"expected {self.n_params} MLP parameters, got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("MLP parameters must be finite")
        self.params.from_numpy(values.astype(ti.lang.util.to_numpy_type(self.params.dtype), copy=False))

    def unflatten(self, flat) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Flat ``(n_params,)`` array (params or their gradient) -> ``[(W (out, in), b (out,))]``, float64."""
        flat = np.asarray(flat, dtype=np.float64)
        if flat.shape != (self.n_params,):
            raise ValueError(f"expected {self.n_params} values, got shape {flat.shape}")
        out = []
        for l, (fan_in, fan_out) in enumerate(zip(self.dims[:-1], self.dims[1:])):
            block = flat[self._p_off[l]:self._p_off[l] + fan_out * (fan_in + 1)].reshape(fan_out, fan_in + 1)
            out.append((block[:, :fan_in].copy(), block[:, fan_in].copy()))
        return out

    def layers(self) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Current ``[(W (out, in), b (out,))]`` per layer, float64 (mathematical orientation)."""
        return self.unflatten(self.get_params())

    # ----------------------------------------------------------------- passes
    def forward(self, inp, out, n: int) -> None:
        """``out[s] = MLP(inp[s])`` for rows ``s < n``; rows ``>= n`` are untouched.

        ``inp``: field ``(>= n, in_dim)``; ``out``: field ``(>= n, out_dim)``; ``n <= max_batch``.
        Keeps the activations for :meth:`backward`.
        """
        n = self._check(inp, out, n)
        self._forward_state = (inp, n)
        if n == 0:
            return
        _rows_to_cols(inp, self._buf, self._h_row[0], self.in_dim, n)
        for l in range(self.n_layers):
            fan_in, fan_out = self.dims[l], self.dims[l + 1]
            last = l == self.n_layers - 1
            _layer(self.params, self._p_off[l], fan_in + 1, 1, self._buf, self._h_row[l], fan_in + 1,
                   out if last else self._buf, last, 0 if last else self._h_row[l + 1], fan_out,
                   _LINEAR if last else _RELU, 0, n, _NEVER)

    def backward(self, inp, out, n: int, input_grad: bool = True) -> None:
        """Backward of the latest :meth:`forward` (same ``inp``, ``n`` and parameters).

        Reads ``out.grad`` rows ``< n``; ADDS dL/dparams to ``params.grad``; when ``input_grad``,
        OVERWRITES ``inp.grad`` rows ``< n`` with dL/dinp (other rows untouched).
        """
        n = self._check(inp, out, n)
        _check_field("out", out, n, self.out_dim, need_grad=True)
        if input_grad:
            _check_field("inp", inp, n, self.in_dim, need_grad=True)
        if self._forward_state is None or self._forward_state[0] is not inp or self._forward_state[1] != n:
            raise RuntimeError("MLP.backward needs a forward() on the same input field and n first")
        if n == 0:
            return
        last = self.n_layers - 1
        _rows_to_cols(out.grad, self._buf, self._g_row[last], self.out_dim, n)
        for l in range(last, -1, -1):
            fan_in, fan_out = self.dims[l], self.dims[l + 1]
            if l > 0:
                _layer(self.params, self._p_off[l], 1, fan_in + 1, self._buf, self._g_row[l], fan_out,
                       self._buf, False, self._g_row[l - 1], fan_in, _RELU_GRAD, self._h_row[l], n, _NEVER)
            elif input_grad:
                _layer(self.params, self._p_off[l], 1, fan_in + 1, self._buf, self._g_row[l], fan_out,
                       inp.grad, True, 0, fan_in, _LINEAR, 0, n, _NEVER)
        for l in range(self.n_layers):
            _weight_grad_blocks(self._buf, self._partial, self._g_row[l], self.dims[l + 1], self._h_row[l],
                                self.dims[l] + 1, self._p_off[l], self._block_cols, n, _NEVER)
        ncols = -(-n // V)
        _add_block_sums(self._partial, self.params.grad, -(-ncols // self._block_cols))

    def _check(self, inp, out, n) -> int:
        n = int(n)
        if not 0 <= n <= self.max_batch:
            raise ValueError(f"n={n} must be in [0, max_batch={self.max_batch}]")
        _check_field("inp", inp, n, self.in_dim)
        _check_field("out", out, n, self.out_dim)
        return n
