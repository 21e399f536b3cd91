"""The Gaussians' parameters: one flat field per attribute, allocated at the count bound.

Raw values per Gaussian, as 3DGS stores them (GAUSSIAN_REFERENCE.md section 1): ``means`` (3),
``sh_dc`` (3: coefficient 0 of R, G, B), ``sh_rest`` (3 (K - 1): coefficient ``k >= 1`` of channel
``c`` at ``3 (k - 1) + c``), ``opacity`` (1, a logit), ``log_scales`` (3), ``quats`` (4, (w, x, y,
z), unnormalised); with temporal opacities also ``t_centre`` (1) and ``t_log_scale`` (1): the Gaussian's
opacity at time ``t`` is multiplied by ``exp(-z^2 / 2)``, ``z = (t - t_centre) / exp(t_log_scale)``
(``t_log_scale >=`` :data:`TIMELESS`: present at every time, the window fixed). Attribute ``a`` of Gaussian ``i`` lives at ``params[a][i * dim(a) + j]``: flat
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


TIMELESS = 30.0          # t_log_scale (and above) of a Gaussian present at every time, whose window does not learn


def attribute_dims(sh_degree: int, temporal: bool = False) -> dict:
    k = (int(sh_degree) + 1) ** 2
    dims = {"means": 3, "sh_dc": 3, "sh_rest": 3 * (k - 1), "opacity": 1, "log_scales": 3, "quats": 4}
    if temporal:
        dims.update({"t_centre": 1, "t_log_scale": 1})
    return dims


@ti.func
def _temporal_terms(a, tc, tls, t):
    """Effective logit of ``sigmoid(a) w``, ``w = exp(-z^2 / 2)``, ``z = (t - tc) / exp(tls)``,
    computed as ``a - z^2 / 2 - softplus(a + ln(1 - w))`` (exactly ``a`` where w == 1), with
    ``z``, ``w`` and ``r = 1 / (e^-a + 1 - w)`` for the gradients."""
    sigma = ti.exp(tls)
    z = (t - tc) / sigma
    w = ti.exp(-0.5 * z * z)
    u = 1.0 - w
    sp = 0.0
    if u > 0.0:
        x = a + ti.log(u)
        sp = ti.max(x, 0.0) + ti.log(1.0 + ti.exp(-ti.abs(x)))
    r = 1.0 / ti.max(ti.exp(-a) + u, 1e-30)
    return a - 0.5 * z * z - sp, z, w, r, sigma


@ti.kernel
def _temporal(o_opacity: ti.template(), pre: ti.template(), tc: ti.template(), tls: ti.template(), t: float,
              n: ti.i32):
    for i in range(n):
        a = o_opacity[i]
        pre[i] = a
        if tls[i] < TIMELESS:
            eff, _z, _w, _r, _s = _temporal_terms(a, tc[i], tls[i], t)
            o_opacity[i] = eff


@ti.kernel
def _temporal_grad(g_opacity: ti.template(), pre: ti.template(), tc: ti.template(), tls: ti.template(), t: float,
                   n: ti.i32, dt: ti.template()):
    """``g_opacity`` (dL/d effective logit) becomes dL/d logit in place; dL/d t_centre and
    t_log_scale are ADDED to their ``.grad``; ``dt[None]`` += dL/dt."""
    for i in range(n):
        if tls[i] < TIMELESS:
            g = g_opacity[i]
            _eff, z, w, r, sigma = _temporal_terms(pre[i], tc[i], tls[i], t)
            g_opacity[i] = g * (1.0 - r * (1.0 - w))
            gz = -g * z * (1.0 + r * w)
            tc.grad[i] += -gz / sigma
            tls.grad[i] += -gz * z
            dt[None] += gz / sigma


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

    def __init__(self, capacity: int, sh_degree: int, temporal: bool = False):
        self.capacity = int(capacity)
        self.sh_degree = int(sh_degree)
        self.temporal = bool(temporal)
        self.n_coeffs = (self.sh_degree + 1) ** 2
        self.dims = attribute_dims(self.sh_degree, self.temporal)
        cap = self.capacity
        # sh_rest of degree 0 has no values: a 1-entry field keeps the kernels' arguments uniform
        self.params = {a: ti.field(float, shape=max(1, cap * d), needs_grad=True) for a, d in self.dims.items()}
        self.n = 0
        self.version = 0       # counts set(): what was composed before it is stale
        # the rasterizer's inputs (deformed when a deformation is given)
        self.means = ti.field(float, shape=(cap, 3))
        self.log_scales = ti.field(float, shape=(cap, 3))
        self.quats = ti.field(float, shape=(cap, 4))
        self.opacity = ti.field(float, shape=cap)
        self.sh = ti.field(float, shape=(cap, 3 * self.n_coeffs))
        self._none = ti.field(float, shape=(1, 1), needs_grad=True)
        if self.temporal:
            self._pre = ti.field(float, shape=cap)        # the logits before the temporal factor
            self._dt = ti.field(float, shape=())
        self._t = None

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
        """Replace every Gaussian by ``arrays`` (as :meth:`get` gives); the rows past them become 0.
        Without ``t_centre`` / ``t_log_scale`` a temporal cloud's Gaussians are present at every time."""
        n = len(arrays["means"])
        if self.temporal:
            arrays = {"t_centre": np.zeros(n), "t_log_scale": np.full(n, TIMELESS), **arrays}
        if n > self.capacity:
            raise ValueError(f"{n} Gaussians exceed the capacity {self.capacity} (gaussians.max_gaussians)")
        for a, d in self.dims.items():
            full = np.zeros(self.params[a].shape[0], runtime.np_float())
            if d:
                full[: n * d] = np.asarray(arrays[a], np.float64).reshape(n * d)
            self.params[a].from_numpy(full)
        self.n = n
        self.version += 1

    # ------------------------------------------------------------------ deformed views
    def compose(self, deltas: dict | None = None, t: float | None = None) -> None:
        """Rasterizer inputs = canonical values (+ ``deltas[name]``, a 2-D field per head of
        :data:`DELTAS` that is present); a temporal cloud's opacities at normalised time ``t``
        (``sigmoid(logit) exp(-((t - t_centre) / exp(t_log_scale))^2 / 2)``, as a logit)."""
        args, use = self._delta_args(deltas)
        p = self.params
        _compose(p["means"], p["sh_dc"], p["sh_rest"], p["opacity"], p["log_scales"], p["quats"], *args, use,
                 self.means, self.log_scales, self.quats, self.opacity, self.sh, self.n, self.n_coeffs)
        if self.temporal:
            if t is None:
                raise ValueError("a cloud with temporal opacities composes at a time")
            self._t = float(t)
            _temporal(self.opacity, self._pre, p["t_centre"], p["t_log_scale"], self._t, self.n)

    def scatter(self, ras, deltas: dict | None = None) -> float:
        """The rasterizer's gradients (``ras.d_*``, rows ``< n``): ADDED to the canonical parameters'
        gradients, WRITTEN to the deltas' ``.grad``; returns dL/dt through the temporal opacities
        (0 without them). ``ras.d_opacity_logits`` becomes dL/d logit before the temporal factor."""
        args, use = self._delta_args(deltas)
        p = self.params
        dt = 0.0
        if self.temporal:
            self._dt[None] = 0.0
            _temporal_grad(ras.d_opacity_logits, self._pre, p["t_centre"], p["t_log_scale"], self._t, self.n, self._dt)
            dt = float(self._dt[None])
        _scatter(ras.d_means, ras.d_log_scales, ras.d_quats, ras.d_opacity_logits, ras.d_sh, p["means"], p["sh_dc"],
                 p["sh_rest"], p["opacity"], p["log_scales"], p["quats"], *args, use, self.n, self.n_coeffs)
        return dt

    def _delta_args(self, deltas):
        deltas = deltas or {}
        use = tuple(name in deltas for name in DELTAS)
        return [deltas.get(name, self._none) for name in DELTAS], use
