"""Sync-K-Planes: a K-Planes field, proposal samplers and per-camera time offsets, trained jointly.

One training step on a batch of rays:

1. proposal levels: stratified samples, then importance resampling from each level's weights;
   each level's density field gives weights (no colour);
2. the radiance field at the final samples gives density and colour; volume rendering;
3. losses: MSE to the pixels, distortion on the final weights, interlevel between the final
   (constant) weights and each proposal level's weights, plane regularisers, L1 on the offsets;
4. hand-written backward through renderer, decoders and encoders down to the sample
   coordinates, whose time column is gathered into the offsets' gradient;
5. one Adam step over the parameter groups (the offsets in their own group).
"""
from __future__ import annotations

import math

import numpy as np
import taichi as ti

from taichi_syncnerf import runtime
from taichi_syncnerf.checkpoint import load_optimizer_state

from taichi_syncnerf.kernels import points as glue
from taichi_syncnerf.kernels.adam import Adam
from taichi_syncnerf.kernels import ray_losses
from taichi_syncnerf.kernels.render import VolumeRenderer
from taichi_syncnerf.kernels.sampling import RaySampler
from taichi_syncnerf.models.kplanes.fields import DensityField, RadianceField
from taichi_syncnerf.models.base import SyncModel
from taichi_syncnerf.offsets import TimeOffsets


def resolve_time_res(value, n_frames: int) -> int:
    return max(2, int(math.ceil(n_frames / 2))) if value == "auto" else int(value)


class SyncKPlanes(SyncModel):
    """The whole model. ``scene`` describes cameras/frames/bounds (see taichi_syncnerf.data).

    Implements the model contract of :mod:`taichi_syncnerf.models.base`.
    """

    kind = "sync-kplanes"

    def __init__(self, cfg: dict, n_cameras: int, n_frames: int, test_index: int, ndc: bool,
                 near: float, far: float, bbox, background, max_rays: int):
        m, kp = cfg["model"], cfg["kplanes"]
        self.cfg = cfg
        self.ndc = bool(ndc)
        self.near, self.far = float(near), float(far)
        self.spacing = "linear"
        bbox = np.asarray(m["bbox"] if m["bbox"] is not None else bbox, dtype=np.float64).reshape(2, 3)
        self.box_lo, self.box_hi = bbox[0].tolist(), bbox[1].tolist()
        self.background = [float(v) for v in background]
        self.threshold = float(kp["early_stop_transmittance"])
        self.max_rays = int(max_rays)
        seed = int(cfg["train"]["seed"])
        self.sync = bool(m["sync"])
        self.n_cameras = int(n_cameras)
        self.test_index = int(test_index)

        levels = [int(n) for n in kp["proposal"]["samples"]]
        self.prop_samples = levels
        self.n_samples = int(kp["n_samples"])
        R = self.max_rays
        self.samplers = [RaySampler(R, R * n) for n in levels] + [RaySampler(R, R * self.n_samples)]
        prop_res = list(kp["proposal"]["space_res"])
        if len(prop_res) < len(levels):
            prop_res = prop_res + [prop_res[-1]] * (len(levels) - len(prop_res))
        p_time = resolve_time_res(kp["proposal"]["time_res"], n_frames)
        self.proposals = [DensityField(kp["proposal"], prop_res[i], p_time, R * n, seed + 10 * (i + 1),
                                       float(kp["density_bias"])) for i, n in enumerate(levels)]
        self.field = RadianceField(kp, resolve_time_res(kp["time_res"], n_frames), R * self.n_samples, R, seed)
        self.prop_renderers = [VolumeRenderer(R, R * n, colour=False) for n in levels]
        self.renderer = VolumeRenderer(R, R * self.n_samples, colour=True)
        self.prop_pts = [ti.field(float, shape=(R * n, 4), needs_grad=True) for n in levels]
        self.pts = ti.field(float, shape=(R * self.n_samples, 4), needs_grad=True)

        self.offsets = TimeOffsets.from_config(cfg, self.n_cameras, n_frames, self.test_index)

        # per-ray inputs
        self.rays_o = ti.field(float, shape=(R, 3))
        self.rays_d = ti.field(float, shape=(R, 3))
        self.view_dirs = ti.field(float, shape=(R, 3))
        self.ray_time = ti.field(float, shape=R)
        self.ray_cam = ti.field(ti.i32, shape=R)
        self.near_f = ti.field(float, shape=R)
        self.far_f = ti.field(float, shape=R)
        self.target = ti.field(float, shape=(R, 3))

        lr = float(cfg["train"]["lr"])
        groups = []
        for name, comp in self.components().items():
            for pname, f in comp.named_params().items():
                groups.append({"name": f"{name}.{pname}", "param": f, "lr": lr})
        groups.append(self.offsets.param_group())
        self.base_lr = {g["name"]: g["lr"] for g in groups}
        self.lrs = dict(self.base_lr)
        self.optimizer = Adam(groups)

    @classmethod
    def min_frames(cls, cfg: dict) -> tuple[int, str]:
        """Time smoothness (a second difference along time) needs time planes of 3 rows or more:
        with ``time_res: auto`` (``ceil(F / 2)``) that is 5 frames; an explicit ``time_res`` below 3
        with a smoothness weight is a config error."""
        from taichi_syncnerf.errors import ConfigError

        kp, reg = cfg["kplanes"], cfg["kplanes"]["regularizers"]
        need, why = 2, "a time offset needs at least 2 frames"
        levels = [("kplanes.time_res", kp["time_res"], reg["time_smoothness"], "kplanes.regularizers.time_smoothness")]
        if kp["proposal"]["samples"]:
            levels.append(("kplanes.proposal.time_res", kp["proposal"]["time_res"],
                           reg["time_smoothness_proposal"], "kplanes.regularizers.time_smoothness_proposal"))
        for key, res, weight, wkey in levels:
            if not float(weight):
                continue
            if res == "auto":
                if need < 5:
                    need, why = 5, f"{wkey} needs {key} >= 3, and {key}: auto is half the frame count"
            elif int(res) < 3:
                raise ConfigError(f"{wkey} needs {key} >= 3, got {res} (or set {wkey}: 0)")
        return need, why

    # ------------------------------------------------------------------ parameters

    def components(self) -> dict:
        comps = {"field": self.field}
        for i, p in enumerate(self.proposals):
            comps[f"proposal{i}"] = p
        return comps

    def state_arrays(self) -> dict:
        out = {}
        for name, comp in self.components().items():
            out.update(comp.state_arrays(name))
        out.update(self.offsets.state_arrays())
        for k, v in self.optimizer.state_dict().items():
            out[f"adam/{k}"] = np.asarray(v)
        return out

    def load_state_arrays(self, arrays: dict, where: str, optimizer: bool = True) -> None:
        for name, comp in self.components().items():
            comp.load_state_arrays(name, arrays, where)
        self.offsets.load_state_arrays(arrays, where)
        if optimizer:
            load_optimizer_state(self.optimizer, arrays, where)

    # ------------------------------------------------------------------ rays

    def load_rays(self, origins, dirs, view_dirs, times, cams, target=None) -> int:
        """Upload a batch of rays (numpy) into the per-ray fields; returns the ray count."""
        n = len(times)
        if n > self.max_rays:
            raise ValueError(f"{n} rays exceed the model's batch capacity {self.max_rays}")
        pad = self.max_rays - n

        def up(field, arr, dtype):
            a = np.asarray(arr, dtype=dtype)
            if pad:
                a = np.concatenate([a, np.zeros((pad,) + a.shape[1:], dtype)], 0)
            field.from_numpy(a)

        fdt = runtime.np_float()
        up(self.rays_o, origins, fdt)
        up(self.rays_d, dirs, fdt)
        up(self.view_dirs, view_dirs, fdt)
        up(self.ray_time, times, fdt)
        up(self.ray_cam, cams, np.int32)
        self.near_f.fill(self.near)
        self.far_f.fill(self.far)
        if target is not None:
            up(self.target, target, fdt)
        return n

    # ------------------------------------------------------------------ forward

    def _sample(self, n_rays: int, jitter: bool, seed: int) -> None:
        first = self.samplers[0]
        first_n = self.prop_samples[0] if self.prop_samples else self.n_samples
        first.stratified(self.near_f, self.far_f, n_rays, first_n, spacing=self.spacing, jitter=jitter,
                         seed=seed)
        for i, prop in enumerate(self.proposals):
            smp = self.samplers[i]
            pts = self.prop_pts[i]
            glue.points_forward(self.rays_o, self.rays_d, self.ray_time, self.ray_cam, self.offsets.params,
                                smp.t0, smp.t1, smp.ray_start, smp.ray_count, pts, n_rays,
                                self.box_lo, self.box_hi, self.sync)
            prop.forward(pts, smp.n_samples)
            self.prop_renderers[i].forward(smp, prop.sigma, None, n_rays)
            nxt = self.samplers[i + 1]
            n_next = self.prop_samples[i + 1] if i + 1 < len(self.prop_samples) else self.n_samples
            nxt.importance(smp, self.prop_renderers[i].weights, n_rays, n_next, spacing=self.spacing,
                           jitter=jitter, seed=seed + 7919 * (i + 1))

    def _field_forward(self, n_rays: int) -> None:
        smp = self.samplers[-1]
        glue.points_forward(self.rays_o, self.rays_d, self.ray_time, self.ray_cam, self.offsets.params,
                            smp.t0, smp.t1, smp.ray_start, smp.ray_count, self.pts, n_rays,
                            self.box_lo, self.box_hi, self.sync)
        self.field.encode_directions(self.view_dirs, n_rays)
        self.field.forward(self.pts, smp, n_rays)
        self.renderer.forward(smp, self.field.sigma, self.field.rgb, n_rays, background=self.background,
                             threshold=self.threshold)

    def render_rays_chunk(self, rays: dict) -> np.ndarray:
        n = self.load_rays(rays["origins"], rays["dirs"], rays["view_dirs"], rays["times"], rays["cams"])
        return self.render_rays(n)

    def ray_layers(self, n: int) -> dict:
        """Depth (weighted distance along the ray) and opacity of the last rendered chunk's rays."""
        return {"depth": self.renderer.depth.to_numpy()[:n], "opacity": self.renderer.opacity.to_numpy()[:n]}

    def render_rays(self, n_rays: int) -> np.ndarray:
        """Colour (n_rays, 3) of the rays loaded with :meth:`load_rays` (deterministic sampling)."""
        self._sample(n_rays, jitter=False, seed=0)
        self._field_forward(n_rays)
        return self.renderer.colour.to_numpy()[:n_rays]

    # ------------------------------------------------------------------ the shared model interface

    def train_on(self, batch: dict, step: int, lr_scale: float, offsets_frozen: bool,
                 offsets_only: bool = False) -> dict:
        n = self.load_rays(batch["origins"], batch["dirs"], batch["view_dirs"], batch["times"], batch["cams"],
                           batch["rgb"])
        return self.train_step(n, step, lr_scale, offsets_frozen, offsets_only)

    def prepare_testoptim(self, test_index: int, lr: float) -> None:
        """Only camera ``test_index``'s offset trains, at learning rate ``lr``; the field reads offsets."""
        self.offsets.only(test_index, lr)
        self.sync = True
        self.base_lr["offsets"] = float(lr)

    # ------------------------------------------------------------------ training

    def train_step(self, n_rays: int, step: int, lr_scale: float, offsets_frozen: bool,
                   offsets_only: bool = False) -> dict:
        """Loss, gradients and one optimiser step on the rays loaded with :meth:`load_rays`."""
        stats = self.forward_backward(n_rays, seed=step + 1, jitter=True, offsets_frozen=offsets_frozen,
                                      offsets_only=offsets_only)
        self._optimizer_step(lr_scale, offsets_frozen, offsets_only)
        return stats

    def forward_backward(self, n_rays: int, seed: int, jitter: bool, offsets_frozen: bool = False,
                         offsets_only: bool = False) -> dict:
        """Total loss (``stats["loss"]``) and its gradient ACCUMULATED into every parameter group."""
        reg = self.cfg["kplanes"]["regularizers"]
        self._sample(n_rays, jitter=jitter, seed=seed)
        self._field_forward(n_rays)
        smp = self.samplers[-1]
        stats = {}
        mse = ray_losses.mse(self.renderer.colour, self.target, n_rays)
        stats["mse"] = mse
        stats["psnr"] = -10.0 * math.log10(max(mse, 1e-12))
        # distortion and interlevel work on the final weights
        smp.normalized_coords(self.near_f, self.far_f, self.spacing)
        if reg["distortion"] > 0:
            stats["distortion"] = ray_losses.distortion(self.renderer.weights, smp, n_rays,
                                                        scale=float(reg["distortion"]))
        loss = mse + stats.get("distortion", 0.0)
        self.renderer.backward(smp, self.field.sigma, self.field.rgb, n_rays, d_colour=True,
                               d_weights="distortion" in stats)
        self.field.backward(self.pts, smp, n_rays, coord_grad=self.sync)
        if self.sync:
            glue.points_backward(self.pts, self.ray_cam, self.offsets.params, smp.ray_start, smp.ray_count,
                                 n_rays)
        inter = 0.0
        prop_time_grad = self.sync and bool(self.cfg["kplanes"]["proposal"]["offsets_grad"])
        for i, prop in enumerate(self.proposals):
            psmp = self.samplers[i]
            prend = self.prop_renderers[i]
            inter += ray_losses.interlevel(smp, self.renderer.weights, psmp, prend.weights, n_rays,
                                           scale=float(reg["interlevel"]))
            prend.backward(psmp, prop.sigma, None, n_rays, d_colour=False, d_weights=True)
            prop.backward(self.prop_pts[i], psmp.n_samples, coord_grad=prop_time_grad)
            if prop_time_grad:
                glue.points_backward(self.prop_pts[i], self.ray_cam, self.offsets.params, psmp.ray_start,
                                     psmp.ray_count, n_rays)
        if self.proposals:
            stats["interlevel"] = inter
            loss += inter
        if not offsets_only:
            regs = self.field.regularize(reg["plane_tv"], reg["time_smoothness"], reg["l1_time_planes"])
            for i, prop in enumerate(self.proposals):
                for k, v in prop.regularize(reg["plane_tv_proposal"], reg["time_smoothness_proposal"],
                                            reg["l1_time_planes_proposal"]).items():
                    regs[f"{k}_proposal"] = regs.get(f"{k}_proposal", 0.0) + v
            stats.update(regs)
            loss += sum(regs.values())
        if self.sync and not offsets_frozen:
            stats["offsets_l1"] = self.offsets.l1()
            loss += stats["offsets_l1"]
        self.offsets.apply_mask_to_grad()
        stats["loss"] = loss
        return stats

    def _optimizer_step(self, lr_scale: float, offsets_frozen: bool, offsets_only: bool) -> None:
        for name, lr in self.base_lr.items():
            is_off = name == "offsets"
            frozen = (is_off and (offsets_frozen or not self.sync)) or (offsets_only and not is_off)
            self.optimizer.freeze(name, frozen)
            self.optimizer.set_lr(name, lr * lr_scale)
            self.lrs[name] = lr * lr_scale
        self.optimizer.step()

    def current_lrs(self) -> dict:
        return {"lr": self.lrs["field.encoder"], "lr_offsets": self.lrs["offsets"]}
