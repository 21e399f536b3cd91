"""The K-Planes hybrid field written with PyTorch: the peer that benchmarks/field.py times.

The same function as ``taichi_syncnerf.models.kplanes.fields.RadianceField`` (hybrid decoder): six
planes per scale (xy, xz, yz, xt, yt, zt) looked up with ``torch.nn.functional.grid_sample``
(bilinear, ``align_corners=True``, border padding: the project's clamp), the elementwise product
over the planes, scales concatenated; density MLP (ReLU) -> ``trunc_exp(raw[0] + bias)`` and 15
geometry features; the real spherical harmonics of the ray's view direction next to the geometry
features; colour MLP (ReLU), sigmoid. Parameters are copied from a Taichi ``RadianceField`` so both
compute the same numbers (benchmarks/field.py compares them before timing).

torch is used here only, in benchmarks/ (never in the package).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from taichi_syncnerf.kernels.planes import PLANES

EXP_CLAMP = 15.0
SH_C0 = 0.28209479177387814
SH_C1 = 0.48860251190291987
SH_C2 = (1.0925484305920792, 0.94617469575755997, 0.31539156525251999, 0.54627421529603959)
SH_C3 = (0.59004358992664352, 2.8906114426405538, 0.45704579946446572, 0.3731763325901154,
         1.4453057213202769)


class _TruncExp(torch.autograd.Function):
    """exp(min(x, 15)) with the gradient exp(clip(x, -15, 15)) (the project's trunc_exp)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x.clamp(max=EXP_CLAMP))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(-EXP_CLAMP, EXP_CLAMP))


def sh4(d: torch.Tensor) -> torch.Tensor:
    """Real SH, 4 bands (16 coefficients) of unit directions (R, 3): kernels/sh.py's polynomials."""
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-30)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    x2, y2, z2 = x * x, y * y, z * z
    c2, c3 = SH_C2, SH_C3
    return torch.stack([
        torch.full_like(x, SH_C0), -SH_C1 * y, SH_C1 * z, -SH_C1 * x,
        c2[0] * x * y, -c2[0] * y * z, c2[1] * z2 - c2[2], -c2[0] * x * z, c2[3] * (x2 - y2),
        c3[0] * y * (y2 - 3 * x2), c3[1] * x * y * z, c3[2] * y * (1 - 5 * z2), c3[3] * z * (5 * z2 - 3),
        c3[2] * x * (1 - 5 * z2), c3[4] * z * (x2 - y2), c3[0] * x * (3 * y2 - x2)], dim=1)


def _mlp(layers):
    mods = []
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(w, np.float32)))
            lin.bias.copy_(torch.from_numpy(np.asarray(b, np.float32)))
        mods.append(lin)
        if i + 1 < len(layers):
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


class TorchHybridField(torch.nn.Module):
    """Built from a Taichi ``RadianceField`` (hybrid decoder): the same parameters, in f32."""

    def __init__(self, field, device="cpu"):
        super().__init__()
        enc = field.encoder
        self.n_scales, self.n_geo, self.bias = enc.n_scales, field.n_geo, field.bias
        params = enc.get_params()
        self.planes = torch.nn.ParameterList()
        for s in range(enc.n_scales):
            for name, _, _ in PLANES:
                plane = enc.plane_array(s, name, params)  # (height = res_b, width = res_a, F)
                t = torch.from_numpy(np.ascontiguousarray(plane.transpose(2, 0, 1)[None], np.float32))
                self.planes.append(torch.nn.Parameter(t))
        self.density_mlp = _mlp(field.density_mlp.layers())
        self.color_mlp = _mlp(field.color_mlp.layers())
        self.to(device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 4) in [-1, 1] -> features (N, n_scales * F)."""
        out = []
        for s in range(self.n_scales):
            prod = None
            for p, (_, a, b) in enumerate(PLANES):
                grid = torch.stack([x[:, a], x[:, b]], dim=-1).view(1, 1, -1, 2)
                v = F.grid_sample(self.planes[s * len(PLANES) + p], grid, mode="bilinear",
                                  padding_mode="border", align_corners=True)  # (1, F, 1, N)
                v = v[0, :, 0].t()
                prod = v if prod is None else prod * v
            out.append(prod)
        return torch.cat(out, dim=1)

    def forward(self, x: torch.Tensor, dirs: torch.Tensor, ray_of: torch.Tensor):
        """Density (N,) and colour (N, 3) at points x (N, 4); dirs (R, 3); ray_of (N,) int64."""
        h = self.density_mlp(self.encode(x))
        sigma = _TruncExp.apply(h[:, 0] + self.bias)
        cin = torch.cat([sh4(dirs)[ray_of], h[:, 1:1 + self.n_geo]], dim=1)
        rgb = torch.sigmoid(self.color_mlp(cin))
        return sigma, rgb


def step(model, x, dirs, ray_of, g_sigma, g_rgb, sync=lambda: None):
    """One timed forward + backward (parameter and coordinate gradients); returns seconds of
    (forward, backward). ``x`` must have ``requires_grad``."""
    import time

    for p in model.parameters():
        p.grad = None
    x.grad = None
    sync()
    t0 = time.perf_counter()
    sigma, rgb = model(x, dirs, ray_of)
    sync()
    t1 = time.perf_counter()
    ((sigma * g_sigma).sum() + (rgb * g_rgb).sum()).backward()
    sync()
    return t1 - t0, time.perf_counter() - t1
