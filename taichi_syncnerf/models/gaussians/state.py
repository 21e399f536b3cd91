"""Sync-4DGS's optimiser groups, learning rates and checkpoint arrays (a mixin of the model).

Groups: one per Gaussian attribute (``means``, ``sh_dc``, ``sh_rest``, ``opacity``, ``log_scales``,
``quats``), the deformation's ``deform.planes``, ``deform.trunk`` and ``deform.head_*``, and
``offsets``. Rates (GAUSSIAN_REFERENCE.md section 5): the means decay exponentially from
``lr_position_init`` to ``lr_position_final`` (x the length ``lr_length``: the scene extent, or with
``gaussians.lr_extent: depth`` the median distance of the initial Gaussians from their nearest
training camera) over ``position_lr_steps`` steps of the current stage; the planes and MLPs from
``lr_grid_*`` / ``lr_mlp_*`` (x the same length) over
``deform_lr_steps`` steps of the fine stage; ``sh_rest`` learns at ``lr_feature / 20``. The offsets
learn at ``train.lr * offsets.lr_scale`` times the training loop's ``lr_scale`` (``train.schedule``),
as in the other families; the Gaussians' and the deformation's rates follow only their own decays.
Adam: betas (0.9, 0.999), eps 1e-15.

Checkpoints hold the ``n`` Gaussians only: ``gaussians/count``, ``gaussians/<attribute>`` (n, dim),
their Adam moments (``adam/<attribute>/m`` of n x dim values), the density statistics, the
deformation's box, parameters and stage; loading writes them into the capacity and zeroes the rest.
"""
from __future__ import annotations

import math

import numpy as np

from taichi_syncnerf import runtime
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.checkpoint import Prefixed
from taichi_syncnerf.kernels.adam import Adam, ParamGroup


def exp_decay(lr0: float, lr1: float, k: int, steps: int) -> float:
    """3DGS's exponential decay from ``lr0`` to ``lr1`` over ``steps`` steps (held after)."""
    tau = min(max(k, 0) / max(int(steps), 1), 1.0)
    if lr0 <= 0.0 or lr1 <= 0.0:
        return lr0 * (1.0 - tau) + lr1 * tau
    return math.exp((1.0 - tau) * math.log(lr0) + tau * math.log(lr1))


class GaussianState:
    """Optimiser and checkpoint half of :class:`~taichi_syncnerf.models.gaussians.model.SyncGaussians`."""

    def _build_optimizer(self) -> None:
        g, e = self.g, self.lr_length
        lrs = {"means": g["lr_position_init"] * e, "sh_dc": g["lr_feature"], "sh_rest": g["lr_feature"] / 20.0,
               "opacity": g["lr_opacity"], "log_scales": g["lr_scaling"], "quats": g["lr_rotation"],
               "t_centre": g["lr_time_centre"], "t_log_scale": g["lr_time_scale"]}
        groups = [ParamGroup(a, self.cloud.params[a], float(lrs[a]), betas=(0.9, 0.999)) for a in self.cloud.groups()]
        for name, field in self.deform.named_params().items():
            lr = g["lr_grid_init"] if name == "planes" else g["lr_mlp_init"]
            groups.append(ParamGroup(f"deform.{name}", field, float(lr) * e, betas=(0.9, 0.999), frozen=True))
        groups.append(ParamGroup(**self.offsets.param_group()))
        self.base_lr = {grp.name: grp.lr for grp in groups}
        self.lrs = dict(self.base_lr)
        self.optimizer = Adam(groups)

    def _rate(self, name: str, step: int) -> float:
        g, e = self.g, self.lr_length
        stage_start = int(g["static_steps"]) if self.fine else 0
        if name == "means":
            return exp_decay(g["lr_position_init"] * e, g["lr_position_final"] * e, step - stage_start,
                             g["position_lr_steps"])
        if name.startswith("deform."):
            key = "grid" if name == "deform.planes" else "mlp"
            return exp_decay(g[f"lr_{key}_init"] * e, g[f"lr_{key}_final"] * e, step - stage_start,
                             g["deform_lr_steps"])
        return self.base_lr[name]

    def _optimizer_step(self, step: int, lr_scale: float, offsets_frozen: bool, offsets_only: bool) -> None:
        for name in self.base_lr:
            is_off = name == "offsets"
            frozen = ((is_off and (offsets_frozen or not self.sync)) or (offsets_only and not is_off)
                      or (name.startswith("deform.") and not self.fine))
            self.optimizer.freeze(name, frozen)
            lr = self._rate(name, step) * (lr_scale if is_off else 1.0)
            self.optimizer.set_lr(name, lr)
            self.lrs[name] = lr
        self.optimizer.step()
        self.params_version += 1

    def current_lrs(self) -> dict:
        return {"lr": self.lrs["means"], "lr_offsets": self.lrs["offsets"], "lr_deform": self.lrs["deform.planes"]}

    # ------------------------------------------------------------------ checkpoints
    def state_arrays(self) -> dict:
        n = self.cloud.n
        out = {f"gaussians/{a}": v for a, v in self.cloud.get().items() if self.cloud.dims[a]}
        out["gaussians/count"] = np.array(n, np.int64)
        out["gaussians/box"] = self.deform.box.copy()
        out["gaussians/extent"] = np.array(self.extent)
        out["gaussians/lr_length"] = np.array(self.lr_length)
        out["gaussians/fine"] = np.array(int(self.fine))
        out["gaussians/sh_active"] = np.array(int(self.sh_active))
        out.update({f"deform/{k}": f.to_numpy() for k, f in self.deform.named_params().items()})
        out.update(self.density.state_arrays(n))
        out.update(self.offsets.state_arrays())
        for k, v in self.optimizer.state_dict().items():
            name, _, what = k.rpartition("/")
            if name in self.cloud.dims and what in ("m", "v"):
                v = np.asarray(v)[: n * self.cloud.dims[name]]
            out[f"adam/{k}"] = np.asarray(v)
        return out

    def load_state_arrays(self, arrays: dict, where: str, optimizer: bool = True) -> None:
        def need(key):
            if key not in arrays:
                raise UserError(f"{where}: checkpoint has no entry {key} (not a sync-4dgs checkpoint?)")
            return arrays[key]

        n = int(need("gaussians/count"))
        if n > self.cloud.capacity:
            raise UserError(f"{where}: {n} Gaussians exceed gaussians.max_gaussians = {self.cloud.capacity}")
        values = {}
        for a, d in self.cloud.dims.items():
            v = np.asarray(need(f"gaussians/{a}")) if d else np.zeros((n, 0))
            if v.shape[0] != n or (v.size and v.size != n * d):
                raise UserError(f"{where}: gaussians/{a} has shape {v.shape}, expected ({n}, {d}) "
                                "(was gaussians.sh_degree changed?)")
            values[a] = v.reshape(n) if a == "opacity" else v.reshape(n, d)
        self.cloud.set(values)
        self._init = None
        self.deform.set_box(need("gaussians/box"))
        self.lr_length = float(arrays.get("gaussians/lr_length", self.extent))
        for k, f in self.deform.named_params().items():
            a = need(f"deform/{k}")
            if a.shape != tuple(f.shape):
                raise UserError(f"{where}: deform/{k} has shape {a.shape}, the model expects {tuple(f.shape)} "
                                "(was the config changed?)")
            f.from_numpy(a.astype(runtime.np_float()))
        self.params_version += 1
        self.fine = bool(int(need("gaussians/fine")))
        self.sh_active = int(need("gaussians/sh_active"))
        self.density.load_state_arrays(arrays, n)
        self.offsets.load_state_arrays(arrays, where)
        if optimizer:
            state = dict(Prefixed(arrays, "adam/"))
            for name, d in self.cloud.dims.items():
                for what in ("m", "v"):
                    key = f"{name}/{what}"
                    if key in state:
                        full = np.zeros(self.cloud.params[name].shape[0])
                        full[: n * d] = np.asarray(state[key])[: n * d]
                        state[key] = full
            try:
                self.optimizer.load_state_dict(state)
            except ValueError as e:
                raise UserError(f"{where}: {e}") from None

    # ------------------------------------------------------------------ export
    def gaussians_at(self, time: float) -> dict:
        """The raw Gaussian arrays (as :meth:`GaussianCloud.get`) deformed at normalised scene time
        ``time`` (no offset: scene time is the test camera's clock); canonical before the fine stage."""
        self._ensure_init()
        c = self.cloud
        self._compose_at(float(time), self.fine, reuse=True)
        n, k = c.n, c.n_coeffs
        sh = c.sh.to_numpy()[:n].astype(np.float64)
        return {"means": c.means.to_numpy()[:n].astype(np.float64), "sh_dc": sh[:, :3], "sh_rest": sh[:, 3:3 * k],
                "opacity": c.opacity.to_numpy()[:n].astype(np.float64),
                "log_scales": c.log_scales.to_numpy()[:n].astype(np.float64),
                "quats": c.quats.to_numpy()[:n].astype(np.float64)}
