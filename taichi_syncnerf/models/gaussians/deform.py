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
"""

import numpy as np
import taichi as ti

from taichi_syncnerf.kernels.mlp import MLP, flatten
from taichi_syncnerf.kernels.planes import PlaneEncoder


@ti.kernel
def _inputs(means: ti.template(), x: ti.template(), n: ti.i32, lo0: float, lo1: float, lo2: float,
            s0: float, s1: float, s2: float, t: float):
    for i in range(n):
        x[i, 0] = (means[3 * i] - lo0) * s0 - 1.0
        x[i, 1] = (means[3 * i + 1] - lo1) * s1 - 1.0
        x[i, 2] = (means[3 * i + 2] - lo2) * s2 - 1.0
        x[i, 3] = t


@ti.kernel
def _relu(h: ti.template(), out: ti.template(), n: ti.i32):
    for i, j in ti.ndrange(n, h.shape[1]):
        out[i, j] = ti.max(h[i, j], 0.0)


@ti.kernel
def _add_rows(acc: ti.template(), src: ti.template(), n: ti.i32, first: ti.i32):
    for i, j in ti.ndrange(n, src.shape[1]):
        if first:
            acc[i, j] = src.grad[i, j]
        else:
            acc[i, j] += src.grad[i, j]


@ti.kernel
def _relu_backward(h: ti.template(), acc: ti.template(), n: ti.i32):
    for i, j in ti.ndrange(n, h.shape[1]):
        h.grad[i, j] = acc[i, j] if h[i, j] > 0.0 else 0.0


@ti.kernel
def _inputs_backward(x: ti.template(), means: ti.template(), n: ti.i32, s0: float, s1: float, s2: float) -> float:
    total = 0.0
    for i in range(n):
        means.grad[3 * i] += x.grad[i, 0] * s0
        means.grad[3 * i + 1] += x.grad[i, 1] * s1
        means.grad[3 * i + 2] += x.grad[i, 2] * s2
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
    ``time_res``: rows of the time planes; ``box``: (2, 3) ``[lo, hi]`` of the means.
    """

    def __init__(self, cfg: dict, capacity: int, heads: dict, time_res: int, box, seed: int):
        cap = int(capacity)
        self.capacity = cap
        res = [int(cfg["plane_res"]) * int(m) for m in cfg["plane_multires"]]
        self.encoder = PlaneEncoder(4, int(cfg["plane_features"]), res, int(time_res), cap, seed=seed)
        F, W = self.encoder.output_dim, int(cfg["deform_width"])
        depth = max(1, int(cfg["deform_depth"]))
        self.trunk = MLP(F, [W] * (depth - 1), W, cap, seed=seed + 1)
        self.trunk.set_params(flatten(xavier_layers(self.trunk.dims, seed + 1)))
        self.heads = {}
        for k, (name, dim) in enumerate(heads.items()):
            mlp = MLP(W, [W], int(dim), cap, seed=seed + 2 + k)
            mlp.set_params(flatten(xavier_layers(mlp.dims, seed + 2 + k, bool(cfg["deform_zero_init"]))))
            self.heads[name] = mlp
        self.x = ti.field(float, shape=(cap, 4), needs_grad=True)
        self.feat = ti.field(float, shape=(cap, F), needs_grad=True)
        self.h = ti.field(float, shape=(cap, W), needs_grad=True)
        self.hr = ti.field(float, shape=(cap, W), needs_grad=True)
        self._acc = ti.field(float, shape=(cap, W))
        self.out = {name: ti.field(float, shape=(cap, int(dim)), needs_grad=True) for name, dim in heads.items()}
        self.set_box(box)
        self._n = 0

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

    def forward(self, means_flat, n: int, t: float) -> dict:
        """Deltas of Gaussians ``< n`` (canonical means: the cloud's flat ``means``) at time ``t``:
        ``{head: (capacity, dim) field}``."""
        self._n = int(n)
        if n == 0:
            return self.out
        _inputs(means_flat, self.x, n, *self._lo, *self._scale, float(t))
        self.encoder.forward(self.x, self.feat, n)
        self.trunk.forward(self.feat, self.h, n)
        _relu(self.h, self.hr, n)
        for name, mlp in self.heads.items():
            mlp.forward(self.hr, self.out[name], n)
        return self.out

    def backward(self, means_flat, n: int) -> float:
        """Backward of the last :meth:`forward` from the heads' ``out[...].grad``; returns the summed
        dL/dt (the time is one value for every Gaussian)."""
        if n == 0:
            return 0.0
        if n != self._n:
            raise RuntimeError("Deformation.backward needs the forward of the same Gaussians")
        for k, (name, mlp) in enumerate(self.heads.items()):
            mlp.backward(self.hr, self.out[name], n, input_grad=True)
            _add_rows(self._acc, self.hr, n, int(k == 0))
        _relu_backward(self.h, self._acc, n)
        self.trunk.backward(self.feat, self.h, n, input_grad=True)
        self.encoder.backward(self.x, self.feat, n, coord_grad=True)
        return float(_inputs_backward(self.x, means_flat, n, *self._scale))
