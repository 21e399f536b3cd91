"""Radiance and density fields assembled from the kernels.

Both fields take packed sample points ``pts`` (S, 4) in normalised space-time coordinates and
keep every intermediate they need for their hand-written backward pass in buffers sized
``max_points``. Their ``backward`` reads the gradient of their outputs (``sigma.grad`` and, for
the radiance field, ``rgb.grad``), ACCUMULATES into parameter gradients and OVERWRITES
``pts.grad`` (whose time column carries the offsets' gradient).
"""
from __future__ import annotations

import taichi as ti

from taichi_syncnerf import runtime

from taichi_syncnerf.kernels import explicit
from taichi_syncnerf.kernels import losses as act
from taichi_syncnerf.kernels import points as glue
from taichi_syncnerf.kernels.hashgrid import HashGridEncoder
from taichi_syncnerf.kernels.mlp import MLP
from taichi_syncnerf.kernels.planes import PlaneEncoder
from taichi_syncnerf.kernels.sh import sh_encode


class _Component:
    """Parameters by name, for the optimiser and for checkpoints."""

    def named_params(self) -> dict:
        raise NotImplementedError

    def state_arrays(self, prefix: str) -> dict:
        return {f"{prefix}/{k}": f.to_numpy() for k, f in self.named_params().items()}

    def load_state_arrays(self, prefix: str, arrays: dict, where: str) -> None:
        from taichi_syncnerf.errors import UserError

        for k, f in self.named_params().items():
            key = f"{prefix}/{k}"
            if key not in arrays:
                raise UserError(f"{where}: checkpoint has no entry {key}")
            a = arrays[key]
            if a.shape != tuple(f.shape):
                raise UserError(f"{where}: {key} has shape {a.shape}, the model expects {tuple(f.shape)} "
                                "(was the config changed?)")
            f.from_numpy(a.astype(runtime.np_float()))


def _regularize_planes(encoder, tv: float, smooth: float, l1: float) -> dict:
    out = {}
    if not isinstance(encoder, PlaneEncoder) or not (tv or smooth or l1):
        return out
    from taichi_syncnerf.kernels.plane_regularizers import plane_regularizers

    values = plane_regularizers(encoder, tv, smooth, l1)
    if tv:
        out["plane_tv"] = values["plane_tv"]
    if encoder.dims == 4:
        if smooth:
            out["time_smoothness"] = values["time_smoothness"]
        if l1:
            out["l1_time_planes"] = values["time_l1"]
    return out


class DensityField(_Component):
    """Proposal density: a single-scale 4-D K-Planes (or hash-grid) encoder and a tiny MLP."""

    def __init__(self, cfg: dict, space_res: int, time_res: int, max_points: int, seed: int,
                 density_bias: float):
        kind = cfg["encoder"]
        if kind == "planes":
            self.encoder = PlaneEncoder(4, int(cfg["features"]), [int(space_res)], int(time_res), max_points,
                                        seed=seed)
        else:
            self.encoder = HashGridEncoder(4, int(cfg["hash_levels"]), 2, int(cfg["hash_log2_table"]),
                                           int(cfg["hash_base_res"]), max_res=int(cfg["hash_max_res"]),
                                           max_points=max_points, seed=seed)
        d = self.encoder.output_dim
        self.mlp = MLP(d, [int(cfg["hidden"])], 1, max_points, seed=seed + 1)
        self.bias = float(density_bias)
        self.feat = ti.field(float, shape=(max_points, d), needs_grad=True)
        self.raw = ti.field(float, shape=(max_points, 1), needs_grad=True)
        self.sigma = ti.field(float, shape=max_points, needs_grad=True)

    def named_params(self) -> dict:
        return {"encoder": self.encoder.params, "mlp": self.mlp.params}

    def forward(self, pts, n: int) -> None:
        self.encoder.forward(pts, self.feat, n)
        self.mlp.forward(self.feat, self.raw, n)
        act.trunc_exp_forward(self.raw, self.sigma, n, bias=self.bias)

    def backward(self, pts, n: int, coord_grad: bool = True) -> None:
        act.trunc_exp_backward(self.raw, self.sigma, n, bias=self.bias)
        self.mlp.backward(self.feat, self.raw, n, input_grad=True)
        self.encoder.backward(pts, self.feat, n, coord_grad=coord_grad)

    def regularize(self, tv: float, smooth: float, l1: float) -> dict:
        return _regularize_planes(self.encoder, tv, smooth, l1)


class RadianceField(_Component):
    """The K-Planes field: multiscale planes and a hybrid or explicit decoder.

    hybrid: density MLP (features -> hidden -> 1 + geo) and a colour MLP on the SH of the view
    direction and the geo features, sigmoid. explicit: density is one linear layer of the features;
    colour = sigmoid(sum_f feature_f * basis_{c,f}), the basis (3 x D per ray) given by an MLP of
    the SH of the view direction.
    """

    def __init__(self, cfg: dict, time_res: int, max_points: int, max_rays: int, seed: int):
        m = cfg
        self.encoder = PlaneEncoder(4, int(m["features"]), [int(r) for r in m["space_res"]], int(time_res),
                                    max_points, seed=seed)
        d = self.encoder.output_dim
        self.dim = d
        self.explicit = m["decoder"] == "explicit"
        self.n_geo = 0 if self.explicit else int(m["geo_features"])
        self.sh_degree = int(m["sh_degree"])
        self.n_sh = self.sh_degree ** 2
        self.bias = float(m["density_bias"])
        self.feat = ti.field(float, shape=(max_points, d), needs_grad=True)
        self.dout = ti.field(float, shape=(max_points, 1 + self.n_geo), needs_grad=True)
        self.craw = ti.field(float, shape=(max_points, 3), needs_grad=True)
        self.sigma = ti.field(float, shape=max_points, needs_grad=True)
        self.rgb = ti.field(float, shape=(max_points, 3), needs_grad=True)
        self.sh = ti.field(float, shape=(max_rays, self.n_sh), needs_grad=True)
        if self.explicit:
            self.density_mlp = MLP(d, [], 1, max_points, seed=seed + 1)
            self.basis_mlp = MLP(self.n_sh, [int(m["explicit_basis_hidden"])], 3 * d, max_rays, seed=seed + 2)
            self.basis = ti.field(float, shape=(max_rays, 3 * d), needs_grad=True)
        else:
            self.density_mlp = MLP(d, [int(m["density_hidden"])], 1 + self.n_geo, max_points, seed=seed + 1)
            self.color_mlp = MLP(self.n_sh + self.n_geo, [int(w) for w in m["color_hidden"]], 3, max_points,
                                 seed=seed + 2)
            self.cin = ti.field(float, shape=(max_points, self.n_sh + self.n_geo), needs_grad=True)

    def named_params(self) -> dict:
        out = {"encoder": self.encoder.params, "density_mlp": self.density_mlp.params}
        if self.explicit:
            out["basis_mlp"] = self.basis_mlp.params
        else:
            out["color_mlp"] = self.color_mlp.params
        return out

    def encode_directions(self, dirs, n_rays: int) -> None:
        """SH of the (unit) view direction of each ray: ``sh`` (R, degree**2)."""
        sh_encode(dirs, self.sh, n_rays, self.sh_degree)

    def forward(self, pts, samples, n_rays: int) -> None:
        """Density ``sigma`` (S,) and colour ``rgb`` (S, 3) at the packed samples of ``samples``."""
        n = samples.n_samples
        self.encoder.forward(pts, self.feat, n)
        self.density_mlp.forward(self.feat, self.dout, n)
        act.trunc_exp_forward(self.dout, self.sigma, n, bias=self.bias)
        if self.explicit:
            self.basis_mlp.forward(self.sh, self.basis, n_rays)
            explicit.explicit_color_forward(self.feat, self.basis, samples.ray_start, samples.ray_count,
                                            self.craw, n_rays, self.dim)
        else:
            glue.color_input_forward(self.sh, self.dout, samples.ray_id, self.cin, n, self.n_sh, self.n_geo)
            self.color_mlp.forward(self.cin, self.craw, n)
        act.sigmoid_forward(self.craw, self.rgb, n)

    def backward(self, pts, samples, n_rays: int, coord_grad: bool = True) -> None:
        n = samples.n_samples
        act.sigmoid_backward(self.craw, self.rgb, n)
        act.trunc_exp_backward(self.dout, self.sigma, n, bias=self.bias)
        if self.explicit:
            self.density_mlp.backward(self.feat, self.dout, n, input_grad=True)
            explicit.explicit_color_backward(self.feat, self.basis, samples.ray_start, samples.ray_count,
                                             self.craw, n_rays, self.dim)
            self.basis_mlp.backward(self.sh, self.basis, n_rays, input_grad=False)
        else:
            self.color_mlp.backward(self.cin, self.craw, n, input_grad=True)
            glue.color_input_backward(self.dout, self.cin, n, self.n_sh, self.n_geo)
            self.density_mlp.backward(self.feat, self.dout, n, input_grad=True)
        self.encoder.backward(pts, self.feat, n, coord_grad=coord_grad)

    def regularize(self, tv: float, smooth: float, l1: float) -> dict:
        return _regularize_planes(self.encoder, tv, smooth, l1)
