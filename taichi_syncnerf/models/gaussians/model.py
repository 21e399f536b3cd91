"""Sync-4DGS: 3D Gaussians, the 4DGaussians deformation field and per-camera time offsets.

One training step on a batch of whole training images (the ``images`` sampler), per image:

1. time ``t = t(frame) + d_cam`` (:mod:`taichi_syncnerf.timeline`, the camera's offset);
2. in the fine stage (from ``gaussians.static_steps``) the deformation field gives every
   Gaussian's deltas at ``t`` (:mod:`.deform`); the coarse stage renders the canonical Gaussians;
3. the tile rasterizer (:mod:`taichi_syncnerf.kernels.splat`) renders the camera, OpenGL
   camera-to-world in the dataset's world (never NDC);
4. loss ``(1 - w) L1 + w D-SSIM`` (:mod:`.loss`), rasterizer backward, deformation backward; the
   summed dL/dt is the gradient of the camera's offset;
5. after the batch: the plane regularisers (fine stage), the offsets' L1, one Adam step (the
   4DGaussians learning rates and decays, the offsets in their own group), density control
   (:mod:`.density`).

The fine stage starts with a new Adam state for the Gaussians (4DGaussians restarts its optimiser)
and with the density statistics cleared; the offsets train from ``offsets.start_step`` (set it at
or after the fine stage: before it they have no gradient). Implements :mod:`taichi_syncnerf.models.base`.
"""
from __future__ import annotations

import math

import numpy as np

from taichi_syncnerf.models.base import SyncModel
from taichi_syncnerf.models.gaussians.cloud import DELTAS, GaussianCloud
from taichi_syncnerf.models.gaussians.deform import Deformation
from taichi_syncnerf.models.gaussians.density import DensityControl
from taichi_syncnerf.models.gaussians.loss import image_loss
from taichi_syncnerf.models.gaussians.state import GaussianState
from taichi_syncnerf.offsets import TimeOffsets


def median_camera_distance(points: np.ndarray, centres: np.ndarray, chunk: int = 65536) -> float:
    """The median over ``points`` of the distance to the nearest of ``centres``."""
    p = np.asarray(points, np.float64)
    c = np.asarray(centres, np.float64)
    near = np.concatenate([np.linalg.norm(p[a:a + chunk, None] - c[None], axis=2).min(1)
                           for a in range(0, len(p), chunk)])
    return max(float(np.median(near)), 1e-9)


def resolve_time_res(value, n_frames: int) -> int:
    return max(2, int(math.ceil(n_frames / 2))) if value == "auto" else int(value)


class SyncGaussians(GaussianState, SyncModel):
    """The whole model (see the module docstring); ``extent`` is the scene extent (3DGS), the
    initial Gaussians come from ``init()`` at the first training step."""

    kind = "sync-4dgs"

    def __init__(self, cfg: dict, n_cameras: int, n_frames: int, test_index: int, background, width: int,
                 height: int, extent: float, init=None, centres=None, source=None):
        g = cfg["gaussians"]
        self.cfg, self.g = cfg, g
        self.sync = bool(cfg["model"]["sync"])
        self.n_frames = int(n_frames)
        self.background = tuple(float(v) for v in background)
        self.size = (int(width), int(height))
        self.max_rays = int(width) * int(height)
        self.extent = float(extent) if extent > 1e-9 else 1.0
        self.lr_length = self.extent
        self._centres = None if centres is None else np.asarray(centres, np.float64).reshape(-1, 3)
        seed = int(cfg["train"]["seed"])
        cap = int(g["max_gaussians"])
        self.cloud = GaussianCloud(cap, int(g["sh_degree"]), bool(g["temporal_opacity"]))
        widths = {"position": 3, "scale": 3, "rotation": 4, "opacity": 1, "sh": 3 * self.cloud.n_coeffs}
        heads = {h: widths[h] for h in DELTAS if h in g["deform_heads"]}
        self.deform = Deformation(g, cap, heads, resolve_time_res(g["time_res"], n_frames), [[-1.0] * 3, [1.0] * 3],
                                  seed + 5)
        self.density = DensityControl(g, cap, self.extent)
        self.offsets = TimeOffsets.from_config(cfg, n_cameras, n_frames, test_index)
        self._init = init
        self._source = source                    # the training images, for spawn_points
        self._rasterizers = []
        self.params_version = 0                  # counts optimizer steps and checkpoint loads
        self._composed_for = None                # what the cloud's rasterizer inputs were composed for
        self.fine = False
        self.sh_active = 0
        self._rng = np.random.default_rng(seed + 23)
        self._build_optimizer()

    @classmethod
    def build(cls, cfg: dict, source) -> "SyncGaussians":
        from taichi_syncnerf.models.gaussians.points import camera_extent, initial_gaussians

        c2w = np.asarray(source.ds.c2w[source.train_indices], np.float64)
        return cls(cfg, source.n_cameras, source.n_frames, source.test_index, source.background, source.width,
                   source.height, camera_extent(c2w), init=lambda: initial_gaussians(source, cfg),
                   centres=c2w[:, :3, 3], source=source)

    @classmethod
    def min_frames(cls, cfg: dict) -> tuple[int, str]:
        from taichi_syncnerf.errors import ConfigError

        g = cfg["gaussians"]
        if not float(g["time_smoothness"]):
            return 2, "a time offset needs at least 2 frames"
        if g["time_res"] == "auto":
            return 5, "gaussians.time_smoothness needs gaussians.time_res >= 3, and time_res: auto is half the frames"
        if int(g["time_res"]) < 3:
            raise ConfigError(f"gaussians.time_smoothness needs gaussians.time_res >= 3, got {g['time_res']} "
                              "(or set gaussians.time_smoothness: 0)")
        return 2, "a time offset needs at least 2 frames"

    # ------------------------------------------------------------------ rendering
    def _rasterizer(self, width: int, height: int):
        from taichi_syncnerf.kernels.splat import Rasterizer

        for ras in self._rasterizers:
            if ras.width >= width and ras.height >= height:
                return ras
        w, h = max(width, self.size[0]), max(height, self.size[1])
        ras = Rasterizer(self.cloud.capacity, w, h, self.cloud.sh_degree)
        self._rasterizers.append(ras)
        return ras

    def _forward(self, intrinsics, c2w, t: float, deform: bool, backward: bool = True):
        """Rasterize the Gaussians at time ``t`` for one camera; returns (rasterizer, deltas or None).
        ``backward=False``: an image only (the rasterizer's render-only kernel); the Gaussians are
        not deformed again when they already are for this time and these parameters (a camera that
        moves while the time stands: the viewer), and the deltas returned are None."""
        from taichi_syncnerf.kernels.splat import Camera

        self._ensure_init()
        deltas = self._compose_at(t, deform, reuse=not backward)
        ras = self._rasterizer(int(intrinsics.width), int(intrinsics.height))
        c = self.cloud
        ras.forward(c.means, c.log_scales, c.quats, c.opacity, c.sh, c.n, Camera.from_opengl_c2w(intrinsics, c2w),
                    self.background, sh_degree=self.sh_active, backward=backward)
        return ras, deltas

    def _compose_at(self, t: float, deform: bool, reuse: bool):
        """The cloud's rasterizer inputs at time ``t`` (deformed when ``deform``); returns the deltas,
        or None when ``reuse`` and the inputs already are for this time and these parameters (the
        cloud's ``version``, counting its ``set``, and ``params_version``, counting optimizer steps
        and checkpoint loads)."""
        key = (float(t), bool(deform), self.cloud.n, self.cloud.version, self.params_version)
        if reuse and key == self._composed_for:
            return None
        deltas = self.deform.forward(self.cloud.params["means"], self.cloud.n, t) if deform else None
        self.cloud.compose(deltas, t)
        self._composed_for = key
        return deltas

    def view_time(self, time: float, cam: int) -> float:
        return float(time) + float(self.offsets.params[int(cam)])

    def render_view_layers(self, view, layers: bool = False, cancel=None) -> dict | None:
        h, w = view.height, view.width
        ras, _ = self._forward(view.intrinsics, view.c2w, self.view_time(view.time, view.cam), self.fine,
                               backward=False)
        out = {"rgb": ras.read_colour(w, h)}
        if layers:
            out["depth"] = ras.depth.to_numpy()[:h, :w].astype(np.float64)
            out["opacity"] = ras.alpha.to_numpy()[:h, :w].astype(np.float64)
        return out

    def render_pixels(self, view, x, y) -> np.ndarray:
        return self.render_view(view)[np.asarray(y, np.int64), np.asarray(x, np.int64)]

    def render_rays_chunk(self, rays: dict) -> np.ndarray:
        raise NotImplementedError("sync-4dgs renders whole views (render_view), not single rays")

    # ------------------------------------------------------------------ training
    def train_on(self, batch: dict, step: int, lr_scale: float, offsets_frozen: bool,
                 offsets_only: bool = False) -> dict:
        self._ensure_init()
        if not offsets_only:
            self._set_stage(step)
            self.sh_active = min(self.cloud.sh_degree, step // max(1, int(self.g["sh_increase_every"])))
        views = batch["views"]
        stats = {"loss": 0.0, "mse": 0.0}
        time_grads = np.zeros(self.offsets.n_cameras)
        for v in views:
            s = self.forward_backward(v, 1.0 / len(views), accumulate_density=not offsets_only)
            stats["loss"] += s["loss"] / len(views)
            stats["mse"] += s["mse"] / len(views)
            time_grads[v["cam"]] += s["time_grad"]
        if self.fine and not offsets_only:
            from taichi_syncnerf.kernels.plane_regularizers import plane_regularizers

            regs = plane_regularizers(self.deform.encoder, self.g["plane_tv"], self.g["time_smoothness"],
                                      self.g["l1_time_planes"])
            stats.update({k: v for k, v in regs.items() if v})
            stats["loss"] += sum(regs.values())
        train_offsets = self.sync and self.fine and not offsets_frozen
        if train_offsets:
            stats["offsets_l1"] = self.offsets.l1()
            stats["loss"] += stats["offsets_l1"]
        self.offsets.apply_mask_to_grad()
        self._optimizer_step(step, lr_scale, not train_offsets, offsets_only)
        if not offsets_only:
            stats.update(self._density_step(step))
        stats["psnr"] = -10.0 * math.log10(max(stats["mse"], 1e-12))
        stats["gaussians"] = float(self.cloud.n)
        stats["time_grad_abs"] = float(np.abs(time_grads).sum())
        return stats

    def forward_backward(self, view: dict, weight: float = 1.0, accumulate_density: bool = False) -> dict:
        """Loss of one training image (``cam``, ``time``, ``intrinsics``, ``c2w``, ``rgb`` (h, w, 3)) and
        its gradient times ``weight`` ACCUMULATED into every parameter group (the camera's offset
        through the deformation's time); ``time_grad`` is dLoss/dt (unweighted)."""
        intr = view["intrinsics"]
        h, w = int(intr.height), int(intr.width)
        cam = int(view["cam"])
        ras, deltas = self._forward(intr, view["c2w"], self.view_time(view["time"], cam), self.fine)
        pred = ras.read_colour(w, h, clip=False)
        gt = np.asarray(view["rgb"], np.float64)
        loss, grad = image_loss(pred, gt, float(self.g["ssim_weight"]))
        ras.backward(d_colour=grad * weight)
        if accumulate_density:
            self.density.accumulate(ras, self.cloud.n)
        dt = self.cloud.scatter(ras, deltas) / weight
        if deltas is not None:
            dt += self.deform.backward(self.cloud.params["means"], self.cloud.n) / weight
        if self.sync and dt:
            self.offsets.params.grad[cam] += dt * weight
        return {"loss": loss, "mse": float(np.mean((pred - gt) ** 2)), "time_grad": dt}

    def _set_stage(self, step: int) -> None:
        fine = step >= int(self.g["static_steps"])
        if fine and not self.fine:               # 4DGaussians: a new optimiser and new statistics
            for name in self.cloud.groups():
                m, v = self.optimizer.moments(name)
                self.optimizer.set_moments(name, np.zeros_like(m), np.zeros_like(v), step=0)
            self.density.reset_stats()
        self.fine = fine

    def _density_step(self, step: int) -> dict:
        densify, reset = self.density.due(step)
        out = {}
        if densify:
            limit = None if self.fine else int(float(self.g["static_capacity"]) * self.cloud.capacity)
            out = {k: float(v) for k, v in self.density.densify_and_prune(self.cloud, self.optimizer, step,
                                                                          self._rng, limit).items()}
        if densify and self.fine and int(self.g["spawn_points"]) and self._source is not None:
            out["spawned"] = float(self._spawn())
        if reset:
            self.density.reset_opacity(self.cloud, self.optimizer)
        return out

    def _spawn(self) -> int:
        """``gaussians.spawn_points`` new Gaussians where a random training image is rendered worst
        (:func:`~taichi_syncnerf.models.gaussians.points.error_points`), placed in the canonical space
        as ``p - deformation(p, t)``; returns how many."""
        from taichi_syncnerf.models.gaussians.points import error_points, gaussians_from_points
        from taichi_syncnerf.timeline import frame_unit, normalised_to_frames

        src, g, cloud = self._source, self.g, self.cloud
        room = min(int(g["spawn_points"]), cloud.capacity - cloud.n)
        if room <= 0:
            return 0
        cam = int(self._rng.choice(np.asarray(src.train_indices)))
        frame = int(self._rng.integers(0, src.n_frames))
        view = src.view(cam, frame)
        t = self.view_time(view.time, cam)
        ras, _ = self._forward(view.intrinsics, view.c2w, t, True, backward=False)
        pred = ras.read_colour(view.width, view.height, clip=False)
        offsets = normalised_to_frames(self.offsets.params.to_numpy().astype(np.float64), src.n_frames)
        pts, colours, pixel = error_points(src, cam, frame, pred, offsets, room, float(g["spawn_error"]), self._rng,
                                           self.cfg["model"]["bbox"], int(g["init_depth_candidates"]))
        if not len(pts):
            return 0
        new = gaussians_from_points(pts, colours, float(g["spawn_opacity"]), cloud.sh_degree, np.log(pixel))
        if cloud.temporal:                      # seen at t: present around t
            new["t_centre"] = np.full((len(pts), 1), t)
            width = float(g["spawn_time_scale"]) * frame_unit(src.n_frames)
            new["t_log_scale"] = np.full((len(pts), 1), np.log(width))
        n_old = cloud.n
        rows = {k: np.concatenate([v, new[k]]) for k, v in cloud.get().items()}
        self.density.replace_rows(cloud, self.optimizer, rows, np.ones(n_old, bool), len(pts))
        if "position" in self.deform.heads:     # where the deformation at t moves them is where they were seen
            dp = self.deform.forward(cloud.params["means"], cloud.n, t)["position"].to_numpy()[n_old:cloud.n]
            rows["means"][n_old:] -= dp
            cloud.set(rows)
        return len(pts)

    def prepare_testoptim(self, test_index: int, lr: float) -> None:
        self.offsets.only(test_index, lr)
        self.sync = True
        self.base_lr["offsets"] = float(lr)

    def _ensure_init(self) -> None:
        if self.cloud.n == 0 and self._init is not None:
            arrays = self._init()
            self._init = None
            self.cloud.set(arrays)
            p = arrays["means"]
            margin = 1e-3 * max(float(np.ptp(p, axis=0).max()), 1e-6)
            self.deform.set_box([p.min(0) - margin, p.max(0) + margin])
            if self.g["lr_extent"] == "depth" and self._centres is not None and len(p):
                self.lr_length = median_camera_distance(p, self._centres)
