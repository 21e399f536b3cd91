"""Volume rendering of packed samples with a closed-form backward pass and early termination.

For ray ``r`` and its samples ``k`` (packed convention, see kernels/sampling.py), with
``delta_k = t1 - t0`` (pass pre-scaled t fields if the density is in other units) and
``sigma_k >= 0`` (already activated density):

    alpha_k = 1 - exp(-sigma_k delta_k),  T_0 = 1,  T_{k+1} = T_k (1 - alpha_k),  w_k = T_k alpha_k
    colour  = sum_k w_k rgb_k + (1 - opacity) * background       (background: constant RGB)
    opacity = sum_k w_k
    depth   = sum_k w_k (t0_k + t1_k) / 2     (NOT divided by opacity: an expected-t "mass";
                                               divide by opacity yourself for a normalised depth)

The loop stops before sample k when ``T_k < threshold`` (default 1e-4): that sample and the later
ones get weight 0 and gradient 0; ``used[r]`` counts the samples processed. One thread per ray.

Backward (hand-written; Taichi 1.7.4 autodiff gets this loop wrong, see TAICHI_NOTES): with
``g_k = dL/dw_k = <dL/dcolour, rgb_k - background> + dL/dopacity + dL/ddepth * mid_k + dL/dweights_k``

    dL/dsigma_k = delta_k * (g_k T_{k+1} - sum_{j > k} g_j w_j),   dL/drgb_k = w_k dL/dcolour

computed per ray from the last used sample backwards (suffix sums, no cancellation), reading the
weights and the transmittance ``trans`` (T after each sample) that the forward kept. The output
gradients are read from ``colour.grad``, ``opacity.grad``, ``depth.grad``, ``weights.grad`` only
for the terms switched on; ``sigma.grad`` and ``rgb.grad`` are OVERWRITTEN for every sample of
rays < n_rays (0 past ``used``). The output gradient fields are left as the caller set them.

Use one renderer per sampling level (its kernels compile once per set of fields). A proposal level
without colour uses ``VolumeRenderer(..., colour=False)`` and passes ``rgb=None``; its weights feed
:meth:`RaySampler.importance`, and the interlevel loss writes ``weights.grad`` for the backward.

Example::

    ren = VolumeRenderer(max_rays=4096, max_samples=4096 * 48)
    ren.forward(samples, sigma, rgb, n, background=(1.0, 1.0, 1.0))
    loss = ray_losses.mse(ren.colour, target, n)                   # writes ren.colour.grad
    ren.backward(samples, sigma, rgb, n)                           # sigma.grad, rgb.grad
"""
import taichi as ti


@ti.data_oriented
class VolumeRenderer:
    """Outputs (rows < n_rays / samples of those rays): ``colour`` (max_rays, 3) (only with
    ``colour=True``), ``opacity`` (max_rays,), ``depth`` (max_rays,), ``weights`` (max_samples,),
    all with ``needs_grad``; ``trans`` (max_samples,) and ``used`` (max_rays,) int32.
    """

    def __init__(self, max_rays: int, max_samples: int, colour: bool = True):
        if max_rays < 1 or max_samples < 1:
            raise ValueError("max_rays and max_samples must be >= 1")
        self.max_rays, self.max_samples = int(max_rays), int(max_samples)
        self.has_colour = bool(colour)
        self.colour = ti.field(float, shape=(max_rays, 3), needs_grad=True) if colour else None
        self.opacity = ti.field(float, shape=max_rays, needs_grad=True)
        self.depth = ti.field(float, shape=max_rays, needs_grad=True)
        self.weights = ti.field(float, shape=max_samples, needs_grad=True)
        self.trans = ti.field(float, shape=max_samples)
        self.used = ti.field(ti.i32, shape=max_rays)
        self._no_rgb = None if colour else ti.field(float, shape=(1, 3), needs_grad=True)
        self.background = (0.0, 0.0, 0.0)

    def forward(self, samples, sigma, rgb, n_rays: int | None = None, *,
                background=(0.0, 0.0, 0.0), threshold: float = 1e-4):
        """Render rays ``< n_rays`` (default ``samples.n_rays``).

        samples: a packed set (``ray_start``, ``ray_count``, ``t0``, ``t1``; e.g. a RaySampler);
        sigma: field (S,); rgb: field (S, 3), or None for a renderer built with ``colour=False``;
        background: 3 floats added as ``(1 - opacity) * background`` (colour renderers only).
        """
        n_rays = self._check(samples, rgb, n_rays)
        bg = tuple(float(v) for v in background)
        if len(bg) != 3:
            raise ValueError("background must have 3 values")
        self.background = bg
        self._forward(samples.t0, samples.t1, samples.ray_start, samples.ray_count, sigma,
                      self._rgb(rgb), n_rays, *bg, float(threshold))

    def backward(self, samples, sigma, rgb, n_rays: int | None = None, *, d_colour: bool = True,
                 d_opacity: bool = False, d_depth: bool = False, d_weights: bool = False):
        """Overwrite ``sigma.grad`` (S,) and ``rgb.grad`` (S, 3) from the output gradients switched on
        (read from ``colour.grad``, ``opacity.grad``, ``depth.grad``, ``weights.grad``). Call after
        :meth:`forward` with the same arguments; uses that call's background and weights."""
        n_rays = self._check(samples, rgb, n_rays)
        self._backward(samples.t0, samples.t1, samples.ray_start, samples.ray_count, sigma,
                       self._rgb(rgb), n_rays, *self.background,
                       int(d_colour and self.has_colour), int(d_opacity), int(d_depth),
                       int(d_weights))

    def _rgb(self, rgb):
        return rgb if self.has_colour else self._no_rgb

    def _check(self, samples, rgb, n_rays):
        n_rays = samples.n_rays if n_rays is None else int(n_rays)
        if not 0 <= n_rays <= self.max_rays:
            raise ValueError(f"n_rays {n_rays} outside [0, {self.max_rays}]")
        if samples.t0.shape[0] > self.max_samples:
            raise ValueError(f"the sample set holds up to {samples.t0.shape[0]} samples, more than "
                             f"this renderer's max_samples {self.max_samples}")
        if self.has_colour == (rgb is None):
            raise ValueError("pass rgb to a colour renderer, rgb=None to a colour=False renderer")
        return n_rays

    @ti.kernel
    def _forward(self, t0: ti.template(), t1: ti.template(), start: ti.template(),
                 count: ti.template(), sigma: ti.template(), rgb: ti.template(), n_rays: int,
                 bg0: float, bg1: float, bg2: float, threshold: float):
        for r in range(n_rays):
            a, c = start[r], count[r]
            T, opacity, depth = 1.0, 0.0, 0.0
            col = ti.Vector([0.0, 0.0, 0.0])
            k = 0
            while k < c and T >= threshold:
                s = a + k
                e = ti.exp(-sigma[s] * (t1[s] - t0[s]))
                w = T * (1.0 - e)
                self.weights[s] = w
                self.trans[s] = T * e
                opacity += w
                depth += w * 0.5 * (t0[s] + t1[s])
                if ti.static(self.has_colour):
                    col += w * ti.Vector([rgb[s, 0], rgb[s, 1], rgb[s, 2]])
                T *= e
                k += 1
            self.used[r] = k
            for j in range(k, c):
                self.weights[a + j] = 0.0
                self.trans[a + j] = T
            self.opacity[r] = opacity
            self.depth[r] = depth
            if ti.static(self.has_colour):
                col += (1.0 - opacity) * ti.Vector([bg0, bg1, bg2])
                for i in ti.static(range(3)):
                    self.colour[r, i] = col[i]

    @ti.kernel
    def _backward(self, t0: ti.template(), t1: ti.template(), start: ti.template(),
                  count: ti.template(), sigma: ti.template(), rgb: ti.template(), n_rays: int,
                  bg0: float, bg1: float, bg2: float, use_c: int, use_o: int, use_d: int,
                  use_w: int):
        for r in range(n_rays):
            a, c, used = start[r], count[r], self.used[r]
            dc = ti.Vector([0.0, 0.0, 0.0])
            if ti.static(self.has_colour):
                if use_c:
                    dc = ti.Vector([self.colour.grad[r, 0], self.colour.grad[r, 1],
                                    self.colour.grad[r, 2]])
            do = self.opacity.grad[r] if use_o else 0.0
            dd = self.depth.grad[r] if use_d else 0.0
            bg = ti.Vector([bg0, bg1, bg2])
            suffix = 0.0
            for kk in range(used):
                s = a + used - 1 - kk
                w = self.weights[s]
                g = do + dd * 0.5 * (t0[s] + t1[s])
                if use_w:
                    g += self.weights.grad[s]
                if ti.static(self.has_colour):
                    g += dc.dot(ti.Vector([rgb[s, 0], rgb[s, 1], rgb[s, 2]]) - bg)
                    for i in ti.static(range(3)):
                        rgb.grad[s, i] = w * dc[i]
                sigma.grad[s] = (t1[s] - t0[s]) * (g * self.trans[s] - suffix)
                suffix += g * w
            for j in range(used, c):
                sigma.grad[a + j] = 0.0
                if ti.static(self.has_colour):
                    for i in ti.static(range(3)):
                        rgb.grad[a + j, i] = 0.0
