"""All-frames rendering of dynamic rays (MixVoxels): a ray's samples are encoded once and
rendered for every frame of the video.

Two stages, each with a hand-written backward:

1. :class:`FrameHead` -- per dynamic sample ``i`` (a compacted list) and frame ``f``, with the
   table row ``q = slot[i] * F + f`` (the slot is the ray's camera for the time function, 0 for
   the per-frame head)::

       sigma[i, f]  = scale * act(<hs[i], zs[q, :D]> + zs[q, D] + shift)
       rgb[i, f, c] = sigmoid(<hc[i], zc[q, c (D+1) : c (D+1) + D]> + zc[q, c (D+1) + D])

   ``act`` is ``relu`` (the reference) or ``softplus_b(a) = log(1 + exp(b a)) / b``
   (``activation="softplus"``, ``sharpness=b``: never exactly flat, so a density pushed below
   zero everywhere early in training can come back; the larger ``b``, the closer to relu).
   ``shift`` (default 0) is a constant added before the activation: a negative one makes a fresh
   head transparent (at 0 a softplus density starts at ``scale * log 2``, opaque over a ray).
   ``hs``, ``hc`` (N, D) are the per-sample trunk features; ``zs`` (K F (D + 1),) and
   ``zc`` (K F 3 (D + 1),) flat fields holding the per-(slot, frame) query rows (row-major, as
   written above with ``zs[q, j] = zs[q * (D + 1) + j]``, ``zc[q, j] = zc[q * 3 (D + 1) + j]``)
   with a bias in the last column (the per-frame head learns them; the time function computes
   them and leaves the bias at 0).
   Backward: reads ``sigma.grad``, ``rgb.grad``; OVERWRITES ``hs.grad``, ``hc.grad`` rows
   ``< n``; ACCUMULATES into ``zs.grad``, ``zc.grad``. The table gradient is a reduction over
   the samples of each slot without atomics: the compacted samples must be sorted by slot,
   ``slot_start[k] .. slot_start[k + 1]`` being slot k's samples.

2. :class:`AllFramesRenderer` -- for dynamic ray ``j`` (index ``rays[j]`` into a packed sample set,
   see kernels/sampling.py) and frame ``f``, volume rendering over the ray's samples ``s``, where
   ``dyn_index[s] >= 0`` selects the dynamic values ``sigma[dyn_index[s], f]``, ``rgb[...]`` and
   ``-1`` the static ones ``sigma_st[s]``, ``rgb_st[s]`` (held fixed: no gradient flows to them)::

       alpha = 1 - exp(-sigma delta), T_0 = 1, w_k = T_k alpha_k,
       colour[j, f] = sum_k w_k rgb_k + T_end * background

   Backward: ``dL/dsigma_k = delta_k (g_k T_{k+1} - sum_{j>k} g_j w_j)`` with
   ``g_k = <dC, rgb_k - background>`` and ``dL/drgb_k = w_k dC``, computed from the ray's last
   sample backwards (suffix sums, no cancellation: "total minus prefix" loses every digit behind
   a surface in f32) from the transmittance the forward kept per (sample, frame); reads
   ``colour.grad``, OVERWRITES ``sigma.grad`` and ``rgb.grad`` of the dynamic samples of the rays
   rendered.

:func:`mse` gives the mean squared error over rays x frames x channels and writes
``colour.grad``.

Example::

    head.forward(hs, hc, zs, zc, slot, n)
    ren.forward(samples, rays, n_rays, dyn_index, head.sigma, head.rgb, sigma_st, rgb_st, bg)
    loss = allframes.mse(ren.colour, target, n_rays)
    ren.backward(samples, rays, n_rays, dyn_index, head.sigma, head.rgb, sigma_st, rgb_st)
    head.backward(hs, hc, zs, zc, slot, slot_start, K, n)
"""
import taichi as ti

from .losses import softplus


@ti.data_oriented
class FrameHead:
    ACTIVATIONS = ("relu", "softplus")

    def __init__(self, max_samples: int, n_frames: int, width: int, density_scale: float = 1.0,
                 activation: str = "relu", sharpness: float = 1.0, shift: float = 0.0):
        self.max_samples, self.F, self.D = int(max_samples), int(n_frames), int(width)
        self.scale = float(density_scale)
        self.shift = float(shift)
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"density activation {activation!r} is not one of {self.ACTIVATIONS}")
        self.softplus = int(activation == "softplus")
        if not sharpness > 0:
            raise ValueError(f"softplus sharpness must be > 0, got {sharpness}")
        self.sharpness = float(sharpness)
        self.sigma = ti.field(float, shape=(self.max_samples, self.F), needs_grad=True)
        self.rgb = ti.field(float, shape=(self.max_samples, self.F, 3), needs_grad=True)
        # gradients with respect to the pre-activations, computed once per backward
        self._gs = ti.field(float, shape=(self.max_samples, self.F))
        self._gc = ti.field(float, shape=(self.max_samples, self.F, 3))

    def forward(self, hs, hc, zs, zc, slot, n: int) -> None:
        if not 0 <= n <= self.max_samples:
            raise ValueError(f"n={n} outside [0, {self.max_samples}]")
        _head_forward(hs, hc, zs, zc, slot, self.sigma, self.rgb, int(n), self.F, self.D, self.scale, self.softplus,
                      self.sharpness, self.shift)

    def backward(self, hs, hc, zs, zc, slot, slot_start, n_slots: int, n: int) -> None:
        _pre_grads(self.sigma, self.rgb, self._gs, self._gc, int(n), self.F, self.scale, self.softplus,
                   self.sharpness)
        _head_feature_grad(hs, hc, zs, zc, slot, self._gs, self._gc, int(n), self.F, self.D)
        _head_table_grad(hs, hc, zs, zc, slot_start, self._gs, self._gc, int(n_slots), self.F, self.D)


@ti.kernel
def _pre_grads(sigma: ti.template(), rgb: ti.template(), gs: ti.template(), gc: ti.template(), n: int, F: int,
               scale: float, use_softplus: int, sharpness: float):
    for i, f in ti.ndrange(n, F):
        g = 0.0
        if use_softplus:
            # d/da softplus_b(a) = sigmoid(b a) = 1 - exp(-softplus(b a)), from the stored output
            sp = sigma[i, f] * sharpness / scale
            d = 1.0 - ti.exp(-sp)
            if sp < 1e-3:
                d = sp * (1.0 - 0.5 * sp)
            g = sigma.grad[i, f] * scale * d
        elif sigma[i, f] > 0.0:
            g = sigma.grad[i, f] * scale
        gs[i, f] = g
        for ch in ti.static(range(3)):
            v = rgb[i, f, ch]
            gc[i, f, ch] = rgb.grad[i, f, ch] * v * (1.0 - v)


@ti.kernel
def _head_forward(hs: ti.template(), hc: ti.template(), zs: ti.template(), zc: ti.template(),
                  slot: ti.template(), sigma: ti.template(), rgb: ti.template(), n: int, F: int, D: int,
                  scale: float, use_softplus: int, sharpness: float, shift: float):
    for i, f in ti.ndrange(n, F):
        q = slot[i] * F + f
        a = zs[q * (D + 1) + D] + shift
        c0, c1, c2 = zc[q * 3 * (D + 1) + D], zc[q * 3 * (D + 1) + 2 * D + 1], zc[q * 3 * (D + 1) + 3 * D + 2]
        for d in range(D):
            a += hs[i, d] * zs[q * (D + 1) + d]
            h = hc[i, d]
            c0 += h * zc[q * 3 * (D + 1) + d]
            c1 += h * zc[q * 3 * (D + 1) + D + 1 + d]
            c2 += h * zc[q * 3 * (D + 1) + 2 * D + 2 + d]
        if use_softplus:
            sigma[i, f] = scale / sharpness * softplus(sharpness * a)
        else:
            sigma[i, f] = scale * ti.max(a, 0.0)
        rgb[i, f, 0] = 1.0 / (1.0 + ti.exp(-c0))
        rgb[i, f, 1] = 1.0 / (1.0 + ti.exp(-c1))
        rgb[i, f, 2] = 1.0 / (1.0 + ti.exp(-c2))


@ti.kernel
def _head_feature_grad(hs: ti.template(), hc: ti.template(), zs: ti.template(), zc: ti.template(),
                       slot: ti.template(), gs: ti.template(), gc: ti.template(), n: int, F: int, D: int):
    for i, d in ti.ndrange(n, D):
        base = slot[i] * F
        a = 0.0
        b = 0.0
        for f in range(F):
            q = base + f
            r = q * 3 * (D + 1) + d
            a += gs[i, f] * zs[q * (D + 1) + d]
            b += gc[i, f, 0] * zc[r] + gc[i, f, 1] * zc[r + D + 1] + gc[i, f, 2] * zc[r + 2 * D + 2]
        hs.grad[i, d] = a
        hc.grad[i, d] = b


@ti.kernel
def _head_table_grad(hs: ti.template(), hc: ti.template(), zs: ti.template(), zc: ti.template(),
                     slot_start: ti.template(), gs: ti.template(), gc: ti.template(), K: int, F: int, D: int):
    for k, f, d in ti.ndrange(K, F, D + 1):  # one thread per table entry: no atomics
        q = k * F + f
        a = 0.0
        c = ti.Vector([0.0, 0.0, 0.0])
        for i in range(slot_start[k], slot_start[k + 1]):
            hsv = 1.0
            hcv = 1.0
            if d < D:
                hsv = hs[i, d]
                hcv = hc[i, d]
            a += gs[i, f] * hsv
            c += ti.Vector([gc[i, f, 0], gc[i, f, 1], gc[i, f, 2]]) * hcv
        zs.grad[q * (D + 1) + d] += a
        for ch in ti.static(range(3)):
            zc.grad[q * 3 * (D + 1) + ch * (D + 1) + d] += c[ch]


@ti.data_oriented
class AllFramesRenderer:
    """``colour`` (max_rays, F, 3); ``trans`` (max_samples, F): the transmittance after each
    sample of the rendered rays (kept for the backward)."""

    def __init__(self, max_rays: int, n_frames: int, max_samples: int):
        self.max_rays, self.F, self.max_samples = int(max_rays), int(n_frames), int(max_samples)
        self.colour = ti.field(float, shape=(self.max_rays, self.F, 3), needs_grad=True)
        self.trans = ti.field(float, shape=(self.max_samples, self.F))
        self.background = (0.0, 0.0, 0.0)

    def forward(self, samples, rays, n_rays: int, dyn_index, sigma, rgb, sigma_st, rgb_st,
                background=(0.0, 0.0, 0.0)) -> None:
        if not 0 <= n_rays <= self.max_rays:
            raise ValueError(f"n_rays={n_rays} outside [0, {self.max_rays}]")
        if samples.max_samples > self.max_samples:
            raise ValueError(f"a sample set of {samples.max_samples} exceeds the renderer's {self.max_samples}")
        self.background = tuple(float(v) for v in background)
        _render(samples.t0, samples.t1, samples.ray_start, samples.ray_count, rays, dyn_index, sigma, rgb,
                sigma_st, rgb_st, self.colour, self.trans, int(n_rays), self.F, *self.background)

    def backward(self, samples, rays, n_rays: int, dyn_index, sigma, rgb, sigma_st, rgb_st) -> None:
        _render_backward(samples.t0, samples.t1, samples.ray_start, samples.ray_count, rays, dyn_index, sigma,
                         rgb, sigma_st, rgb_st, self.colour, self.trans, int(n_rays), self.F, *self.background)


@ti.func
def _values(dyn_index: ti.template(), sigma: ti.template(), rgb: ti.template(), sigma_st: ti.template(),
            rgb_st: ti.template(), s, f):
    idx = dyn_index[s]
    sg = 0.0
    c = ti.Vector([0.0, 0.0, 0.0])
    if idx >= 0:
        sg = sigma[idx, f]
        c = ti.Vector([rgb[idx, f, 0], rgb[idx, f, 1], rgb[idx, f, 2]])
    else:
        sg = sigma_st[s]
        c = ti.Vector([rgb_st[s, 0], rgb_st[s, 1], rgb_st[s, 2]])
    return idx, sg, c


@ti.kernel
def _render(t0: ti.template(), t1: ti.template(), start: ti.template(), count: ti.template(),
            rays: ti.template(), dyn_index: ti.template(), sigma: ti.template(), rgb: ti.template(),
            sigma_st: ti.template(), rgb_st: ti.template(), colour: ti.template(), trans: ti.template(), n: int,
            F: int, b0: float, b1: float, b2: float):
    for j, f in ti.ndrange(n, F):
        r = rays[j]
        T = 1.0
        acc = ti.Vector([0.0, 0.0, 0.0])
        for s in range(start[r], start[r] + count[r]):
            _, sg, c = _values(dyn_index, sigma, rgb, sigma_st, rgb_st, s, f)
            keep = ti.exp(-sg * (t1[s] - t0[s]))
            acc += T * (1.0 - keep) * c
            T *= keep
            trans[s, f] = T
        acc += T * ti.Vector([b0, b1, b2])
        for ch in ti.static(range(3)):
            colour[j, f, ch] = acc[ch]


@ti.kernel
def _render_backward(t0: ti.template(), t1: ti.template(), start: ti.template(), count: ti.template(),
                     rays: ti.template(), dyn_index: ti.template(), sigma: ti.template(), rgb: ti.template(),
                     sigma_st: ti.template(), rgb_st: ti.template(), colour: ti.template(), trans: ti.template(),
                     n: int, F: int, b0: float, b1: float, b2: float):
    for j, f in ti.ndrange(n, F):
        r = rays[j]
        dc = ti.Vector([colour.grad[j, f, 0], colour.grad[j, f, 1], colour.grad[j, f, 2]])
        bg = ti.Vector([b0, b1, b2])
        a, c_ = start[r], count[r]
        suffix = 0.0
        for kk in range(c_):
            s = a + c_ - 1 - kk
            idx, sg, c = _values(dyn_index, sigma, rgb, sigma_st, rgb_st, s, f)
            delta = t1[s] - t0[s]
            T = 1.0
            if s > a:
                T = trans[s - 1, f]
            w = T * (1.0 - ti.exp(-sg * delta))
            gk = dc.dot(c - bg)
            if idx >= 0:
                sigma.grad[idx, f] = delta * (gk * trans[s, f] - suffix)
                for ch in ti.static(range(3)):
                    rgb.grad[idx, f, ch] = w * dc[ch]
            suffix += gk * w


@ti.kernel
def _mse(colour: ti.template(), target: ti.template(), n: int, F: int, grad_scale: float) -> float:
    total = 0.0
    for j, f, c in ti.ndrange(n, F, 3):
        e = colour[j, f, c] - target[j, f, c]
        total += e * e
        colour.grad[j, f, c] = 2.0 * e * grad_scale
    return total


def mse(colour, target, n_rays: int, weight: float = 1.0) -> float:
    """``weight * mean((colour - target)^2)`` over rays ``< n_rays``, all frames and channels;
    OVERWRITES ``colour.grad`` of those rows with its gradient. Returns the mean (unweighted)."""
    F = colour.shape[1]
    count = max(1, int(n_rays) * F * 3)
    return _mse(colour, target, int(n_rays), F, float(weight) / count) / count
