"""The Gaussians' parameters: one flat field per attribute, allocated at the count bound.

Raw values per Gaussian, as 3DGS stores them (GAUSSIAN_REFERENCE.md section 1): ``means`` (3),
``sh_dc`` (3: coefficient 0 of R, G, B), ``sh_rest`` (3 (K - 1): coefficient ``k >= 1`` of channel
``c`` at ``3 (k - 1) + c``), ``opacity`` (1, a logit), ``log_scales`` (3), ``quats`` (4, (w, x, y,
z), unnormalised). Attribute ``a`` of Gaussian ``i`` lives at ``params[a][i * dim(a) + j]``: flat
fields with ``needs_grad`` for :class:`taichi_syncnerf.kernels.adam.Adam`. Rows ``< n`` are the
Gaussians; rows past them are zero (and their gradients stay zero).

:meth:`GaussianCloud.compose` writes the rasterizer's inputs (2-D fields, ``sh`` with coefficient
``k`` of channel ``c`` at column ``3 k + c``) as canonical values plus the deformation's deltas
(4DGaussians adds them to the raw values); :meth:`GaussianCloud.scatter` takes the rasterizer's
gradients back: ADDS them to the canonical parameters' ``.grad`` and OVERWRITES the deltas' ``.grad``.
"""

import numpy as np
import taichi as ti

from taichi_syncnerf import runtime

DELTAS = ("position", "scale", "rotation", "opacity", "sh")   # the deformation heads, in this order


def attribute_dims(sh_degree: int) -> dict:
    k = (int(sh_degree) + 1) ** 2
    return {"means": 3, "sh_dc": 3, "sh_rest": 3 * (k - 1), "opacity": 1, "log_scales": 3, "quats": 4}


@ti.kernel
def _compose(means: ti.template(), sh_dc: ti.template(), sh_rest: ti.template(), opacity: ti.template(),
             log_scales: ti.template(), quats: ti.template(), dp: ti.template(), ds: ti.template(),
             dq: ti.template(), da: ti.template(), dsh: ti.template(), use: ti.template(),
             o_means: ti.template(), o_scales: ti.template(), o_quats: ti.template(), o_opacity: ti.template(),
             o_sh: ti.template(), n: ti.i32, K: ti.template()):
    for i in range(n):
        for c in ti.static(range(3)):
            v = means[3 * i + c]
            if ti.static(use[0]):
                v += dp[i, c]
            o_means[i, c] = v
            s = log_scales[3 * i + c]
            if ti.static(use[1]):
                s += ds[i, c]
            o_scales[i, c] = s
        for c in ti.static(range(4)):
            q = quats[4 * i + c]
            if ti.static(use[2]):
                q += dq[i, c]
            o_quats[i, c] = q
        a = opacity[i]
        if ti.static(use[3]):
            a += da[i, 0]
        o_opacity[i] = a
        for c in ti.static(range(3 * K)):
            v = 0.0
            if ti.static(c < 3):
                v = sh_dc[3 * i + c]
            else:
                v = sh_rest[(3 * K - 3) * i + c - 3]
            if ti.static(use[4]):
                v += dsh[i, c]
            o_sh[i, c] = v


@ti.kernel
def _scatter(g_means: ti.template(), g_scales: ti.template(), g_quats: ti.template(), g_opacity: ti.template(),
             g_sh: ti.template(), means: ti.template(), sh_dc: ti.template(), sh_rest: ti.template(),
             opacity: ti.template(), log_scales: ti.template(), quats: ti.template(), dp: ti.template(),
             ds: ti.template(), dq: ti.template(), da: ti.template(), dsh: ti.template(), use: ti.template(),
             n: ti.i32, K: ti.template()):
    for i in range(n):
        for c in ti.static(range(3)):
            means.grad[3 * i + c] += g_means[i, c]
            log_scales.grad[3 * i + c] += g_scales[i, c]
            if ti.static(use[0]):
                dp.grad[i, c] = g_means[i, c]
            if ti.static(use[1]):
                ds.grad[i, c] = g_scales[i, c]
        for c in ti.static(range(4)):
            quats.grad[4 * i + c] += g_quats[i, c]
            if ti.static(use[2]):
                dq.grad[i, c] = g_quats[i, c]
        opacity.grad[i] += g_opacity[i]
        if ti.static(use[3]):
            da.grad[i, 0] = g_opacity[i]
        for c in ti.static(range(3 * K)):
            if ti.static(c < 3):
                sh_dc.grad[3 * i + c] += g_sh[i, c]
            else:
                sh_rest.grad[(3 * K - 3) * i + c - 3] += g_sh[i, c]
            if ti.static(use[4]):
                dsh.grad[i, c] = g_sh[i, c]


class GaussianCloud:
    """Up to ``capacity`` Gaussians of SH degree ``sh_degree`` (see the module docstring)."""

    def __init__(self, capacity: int, sh_degree: int):
        self.capacity = int(capacity)
        self.sh_degree = int(sh_degree)
        self.n_coeffs = (self.sh_degree + 1) ** 2
        self.dims = attribute_dims(self.sh_degree)
        cap = self.capacity
        # sh_rest of degree 0 has no values: a 1-entry field keeps the kernels' arguments uniform
        self.params = {a: ti.field(float, shape=max(1, cap * d), needs_grad=True) for a, d in self.dims.items()}
        self.n = 0
        # the rasterizer's inputs (deformed when a deformation is given)
        self.means = ti.field(float, shape=(cap, 3))
        self.log_scales = ti.field(float, shape=(cap, 3))
        self.quats = ti.field(float, shape=(cap, 4))
        self.opacity = ti.field(float, shape=cap)
        self.sh = ti.field(float, shape=(cap, 3 * self.n_coeffs))
        self._none = ti.field(float, shape=(1, 1), needs_grad=True)

    def groups(self) -> list:
        """The attributes that have values (``sh_rest`` only above degree 0), in storage order."""
        return [a for a, d in self.dims.items() if d > 0]

    # ------------------------------------------------------------------ numpy access
    def get(self) -> dict:
        """``{attribute: (n, dim) float64}`` (``opacity``: (n,))."""
        out = {}
        for a, d in self.dims.items():
            flat = self.params[a].to_numpy()[: self.n * d].astype(np.float64)
            out[a] = flat.reshape(self.n, d) if a != "opacity" else flat
        return out

    def set(self, arrays: dict) -> None:
        """Replace every Gaussian by ``arrays`` (as :meth:`get` gives); the rows past them become 0."""
        n = len(arrays["means"])
        if n > self.capacity:
            raise ValueError(f"{n} Gaussians exceed the capacity {self.capacity} (gaussians.max_gaussians)")
        for a, d in self.dims.items():
            full = np.zeros(self.params[a].shape[0], runtime.np_float())
            if d:
                full[: n * d] = np.asarray(arrays[a], np.float64).reshape(n * d)
            self.params[a].from_numpy(full)
        self.n = n

    # ------------------------------------------------------------------ deformed views
    def compose(self, deltas: dict | None = None) -> None:
        """Rasterizer inputs = canonical values (+ ``deltas[name]``, a 2-D field per head of
        :data:`DELTAS` that is present)."""
        args, use = self._delta_args(deltas)
        p = self.params
        _compose(p["means"], p["sh_dc"], p["sh_rest"], p["opacity"], p["log_scales"], p["quats"], *args, use,
                 self.means, self.log_scales, self.quats, self.opacity, self.sh, self.n, self.n_coeffs)

    def scatter(self, ras, deltas: dict | None = None) -> None:
        """The rasterizer's gradients (``ras.d_*``, rows ``< n``): ADDED to the canonical parameters'
        gradients, WRITTEN to the deltas' ``.grad``."""
        args, use = self._delta_args(deltas)
        p = self.params
        _scatter(ras.d_means, ras.d_log_scales, ras.d_quats, ras.d_opacity_logits, ras.d_sh, p["means"], p["sh_dc"],
                 p["sh_rest"], p["opacity"], p["log_scales"], p["quats"], *args, use, self.n, self.n_coeffs)

    def _delta_args(self, deltas):
        deltas = deltas or {}
        use = tuple(name in deltas for name in DELTAS)
        return [deltas.get(name, self._none) for name in DELTAS], use
