"""The 4DGaussians deformation field: a space-time plane encoder and small MLPs, with its backward.

For each Gaussian ``i`` with canonical mean ``p_i`` and the view's time ``t`` (normalised frame time
plus the camera's offset, :mod:`taichi_syncnerf.timeline`; one value for every Gaussian):

1. ``x_i = (2 (p_i - lo) / (hi - lo) - 1, t)``: the mean in the box ``[lo, hi]`` (the initial
   points' box, fixed for the run) mapped to [-1, 1], and the time as it is (the frames span
   [-0.8, 0.8], so ``t + offset`` stays on the planes);
2. ``f_i`` = K-Planes features of ``x_i`` (:class:`~taichi_syncnerf.kernels.planes.PlaneEncoder`:
   planes xy, xz, yz, xt, yt, zt, product over a scale's planes, scales concatenated; space planes
   start uniform in (0.1, 0.5), time planes at 1);
3. trunk ``h_i = MLP(f_i)`` (one Linear F -> W at depth 0 or 1, as 4DGaussians; ReLU-separated
   Linear layers above), then every head ``Delta_i = Linear(ReLU(Linear(ReLU(h_i))))`` (W -> W -> out):
   position 3, scale 3, rotation 4, opacity 1, sh 3 K, added to the raw values
   (:class:`~taichi_syncnerf.models.gaussians.cloud.GaussianCloud`).

Backward (hand-written: the MLPs' and the encoder's own backward passes, a ReLU and the input
map): reads each head output's ``.grad``, ACCUMULATES into the planes' and MLPs' parameter
gradients and into the canonical means' gradient (through ``x``), and returns ``dL/dt`` summed
over the Gaussians: the gradient of the view's time, hence of its camera's offset.

Memory: the network runs over the Gaussians in chunks of at most ``chunk`` rows (default
:data:`CHUNK`), so its per-row buffers (``x``, ``feat``, ``h``, ``hr``, the heads' chunk outputs,
the MLPs' and the encoder's internal buffers: about 2,900 floats a row at the published width 128
with SH degree 3) are sized by the chunk, not by the capacity; only the heads' outputs that the
cloud reads (``out[name]`` and its ``.grad``, 59 floats a Gaussian at degree 3) are at capacity.
The backward of a chunk needs that chunk's activations: it runs the chunks last to first, the
last chunk's are still there from the forward, every other chunk's forward is run again (its
cost is small next to the rasterizer's; none when the Gaussians fit one chunk). The MLPs' and the
encoder's backward passes add into the parameters' gradients, so the chunks' gradients sum as
one pass's would (up to the order of the sums).
"""

import numpy as np
import taichi as ti

from taichi_syncnerf.kernels.mlp import MLP, flatten
from taichi_syncnerf.kernels.planes import PlaneEncoder


CHUNK = 65536   # Gaussians per pass of the network, at most (see the module docstring)


@ti.kernel
def _inputs(means: ti.template(), x: ti.template(), o: ti.i32, n: ti.i32, lo0: float, lo1: float, lo2: float,
            s0: float, s1: float, s2: float, t: float):
    for i in range(n):
        k = 3 * (o + i)
        x[i, 0] = (means[k] - lo0) * s0 - 1.0
        x[i, 1] = (means[k + 1] - lo1) * s1 - 1.0
        x[i, 2] = (means[k + 2] - lo2) * s2 - 1.0
        x[i, 3] = t


@ti.kernel
def _put_rows(src: ti.template(), dst: ti.template(), o: ti.i32, n: ti.i32):
    for i, j in ti.ndrange(n, src.shape[1]):
        dst[o + i, j] = src[i, j]


@ti.kernel
def _get_grad_rows(src: ti.template(), dst: ti.template(), o: ti.i32, n: ti.i32):
    for i, j in ti.ndrange(n, dst.shape[1]):
        dst.grad[i, j] = src.grad[o + i, j]


@ti.kernel
def _relu(h: ti.template(), out: ti.template(), n: ti.i32):
    for i, j in ti.ndrange(n, h.shape[1]):
        out[i, j] = ti.max(h[i, j], 0.0)


@ti.kernel
def _add_rows(acc: ti.template(), src: ti.template(), n: ti.i32, first: ti.i32):
    for i in range(n):      # one row per thread: Taichi then adds plainly (over ndrange(n, W) `+=` is atomic)
        for j in range(src.shape[1]):
            if first:
                acc[i, j] = src.grad[i, j]
            else:
                acc[i, j] += src.grad[i, j]


@ti.kernel
def _relu_backward(h: ti.template(), acc: ti.template(), n: ti.i32):
    for i, j in ti.ndrange(n, h.shape[1]):
        h.grad[i, j] = acc[i, j] if h[i, j] > 0.0 else 0.0


@ti.kernel
def _inputs_backward(x: ti.template(), means: ti.template(), o: ti.i32, n: ti.i32, s0: float, s1: float,
                     s2: float) -> float:
    total = 0.0
    for i in range(n):
        k = 3 * (o + i)
        means.grad[k] += x.grad[i, 0] * s0
        means.grad[k + 1] += x.grad[i, 1] * s1
        means.grad[k + 2] += x.grad[i, 2] * s2
        total += x.grad[i, 3]
    return total


def xavier_layers(dims, seed: int, zero_last: bool = False):
    """Xavier-uniform weights, PyTorch's default biases (4DGaussians' init); ``zero_last``: the last
    layer's weights and biases 0 (the deformation starts at exactly 0)."""
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        a = np.sqrt(6.0 / (fan_in + fan_out))
        b = 1.0 / np.sqrt(fan_in)
        layers.append((rng.uniform(-a, a, (fan_out, fan_in)), rng.uniform(-b, b, fan_out)))
    if zero_last:
        layers[-1] = (np.zeros_like(layers[-1][0]), np.zeros_like(layers[-1][1]))
    return layers


class Deformation:
    """Deltas of up to ``capacity`` Gaussians at one time (see the module docstring).

    ``cfg``: the ``gaussians`` config section; ``heads``: head name -> output width;
    ``time_res``: rows of the time planes; ``box``: (2, 3) ``[lo, hi]`` of the means; ``chunk``:
    Gaussians per pass of the network (its per-row buffers hold ``min(capacity, chunk)`` rows;
    default :data:`CHUNK`).
    """

    def __init__(self, cfg: dict, capacity: int, heads: dict, time_res: int, box, seed: int, chunk: int | None = None):
        cap = int(capacity)
        chunk = CHUNK if chunk is None else int(chunk)
        if cap < 1 or chunk < 1:
            raise ValueError(f"capacity ({capacity}) and chunk ({chunk}) must be >= 1")
        self.capacity = cap
        self.chunk = rows = min(cap, chunk)
        res = [int(cfg["plane_res"]) * int(m) for m in cfg["plane_multires"]]
        self.encoder = PlaneEncoder(4, int(cfg["plane_features"]), res, int(time_res), rows, seed=seed)
        F, W = self.encoder.output_dim, int(cfg["deform_width"])
        depth = max(1, int(cfg["deform_depth"]))
        self.trunk = MLP(F, [W] * (depth - 1), W, rows, seed=seed + 1)
        self.trunk.set_params(flatten(xavier_layers(self.trunk.dims, seed + 1)))
        self.heads = {}
        for k, (name, dim) in enumerate(heads.items()):
            mlp = MLP(W, [W], int(dim), rows, seed=seed + 2 + k)
            mlp.set_params(flatten(xavier_layers(mlp.dims, seed + 2 + k, bool(cfg["deform_zero_init"]))))
            self.heads[name] = mlp
        # one chunk's rows
        self.x = ti.field(float, shape=(rows, 4), needs_grad=True)
        self.feat = ti.field(float, shape=(rows, F), needs_grad=True)
        self.h = ti.field(float, shape=(rows, W), needs_grad=True)
        self.hr = ti.field(float, shape=(rows, W), needs_grad=True)
        self._acc = ti.field(float, shape=(rows, W))
        self._head_out = {name: ti.field(float, shape=(rows, int(dim)), needs_grad=True) for name, dim in heads.items()}
        # every Gaussian's deltas (what the cloud reads, and where it writes their gradients)
        self.out = {name: ti.field(float, shape=(cap, int(dim)), needs_grad=True) for name, dim in heads.items()}
        self.set_box(box)
        self._n = 0
        self._t = 0.0
        self._live = None      # (first row, rows) of the chunk whose activations the buffers hold

    def set_box(self, box) -> None:
        box = np.asarray(box, np.float64).reshape(2, 3)
        span = np.maximum(box[1] - box[0], 1e-9)
        self.box = np.stack([box[0], box[0] + span])
        self._lo = [float(v) for v in box[0]]
        self._scale = [float(v) for v in 2.0 / span]

    def named_params(self) -> dict:
        out = {"planes": self.encoder.params, "trunk": self.trunk.params}
        out.update({f"head_{name}": mlp.params for name, mlp in self.heads.items()})
        return out

    def _chunks(self, n: int) -> list:
        return [(o, min(self.chunk, n - o)) for o in range(0, n, self.chunk)]

    def _forward_chunk(self, means_flat, o: int, m: int, t: float) -> None:
        """The network on Gaussians ``[o, o + m)``: activations in the chunk buffers, deltas in
        the heads' chunk outputs."""
        self._live = None
        _inputs(means_flat, self.x, o, m, *self._lo, *self._scale, float(t))
        self.encoder.forward(self.x, self.feat, m)
        self.trunk.forward(self.feat, self.h, m)
        _relu(self.h, self.hr, m)
        for name, mlp in self.heads.items():
            mlp.forward(self.hr, self._head_out[name], m)
        self._live = (o, m)

    def forward(self, means_flat, n: int, t: float) -> dict:
        """Deltas of Gaussians ``< n`` (canonical means: the cloud's flat ``means``) at time ``t``:
        ``{head: (capacity, dim) field}``."""
        n = int(n)
        if not 0 <= n <= self.capacity:
            raise ValueError(f"n={n} outside [0, capacity={self.capacity}]")
        self._n, self._t = n, float(t)
        for o, m in self._chunks(n):
            self._forward_chunk(means_flat, o, m, t)
            for name in self.heads:
                _put_rows(self._head_out[name], self.out[name], o, m)
        return self.out

    def backward(self, means_flat, n: int) -> float:
        """Backward of the last :meth:`forward` from the heads' ``out[...].grad``; returns the summed
        dL/dt (the time is one value for every Gaussian)."""
        n = int(n)
        if n == 0:
            return 0.0
        if n != self._n:
            raise RuntimeError("Deformation.backward needs the forward of the same Gaussians")
        total = 0.0
        for o, m in reversed(self._chunks(n)):      # the last chunk first: its activations are live
            if self._live != (o, m):
                self._forward_chunk(means_flat, o, m, self._t)
            self._live = None
            for k, (name, mlp) in enumerate(self.heads.items()):
                _get_grad_rows(self.out[name], self._head_out[name], o, m)
                mlp.backward(self.hr, self._head_out[name], m, input_grad=True)
                _add_rows(self._acc, self.hr, m, int(k == 0))
            _relu_backward(self.h, self._acc, m)
            self.trunk.backward(self.feat, self.h, m, input_grad=True)
            self.encoder.backward(self.x, self.feat, m, coord_grad=True)
            total += float(_inputs_backward(self.x, means_flat, o, m, *self._scale))
        return total
