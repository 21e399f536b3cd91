"""Sync-MixVoxels (and the MixVoxels baseline): static and dynamic VM grids, a variation field
that routes rays and samples, all-frames rendering of the dynamic rays, per-camera time offsets
learned through an implicit time function.

One training step on a batch of rays (see :mod:`.mixvoxels_data`):

1. samples: ``n_samples`` stratified intervals per ray inside the (shrunk) box; samples in empty
   cells of the alpha mask are dropped;
2. static branch on every sample: volume rendering, L2 to each pixel's temporal mean colour;
3. variation field: each ray's maximum logit, positively weighted BCE against the label
   ``std > std_threshold``;
4. routing (from the prediction, as at test time): a ray is dynamic if sigmoid(max logit) >
   ``dynamic_threshold``; along it a sample is dynamic if sigmoid of the logits max-pooled over
   ``pool_kernel`` samples exceeds ``sample_threshold``; other samples keep their static values
   (no gradient);
5. dynamic branch on the dynamic samples of the dynamic rays, encoded once and rendered for
   every frame by the head (per-frame queries, or the time function of ``t + offset`` of the
   ray's camera); L2 over rays x frames x RGB. The dynamic rays go through this in chunks of
   consecutive rays whose samples fit :attr:`SyncMixVoxels.dynamic_chunk_bytes` of buffers
   (per sample the head keeps 12 values per frame: the reference's rays x frames x samples
   buffers are what makes it need 64 GB); each chunk's rays are rendered from a compact copy of
   their samples, parameter gradients add up over the chunks, and a batch whose dynamic rays fit
   one chunk is computed exactly as without chunks;
6. hand-written backward passes; L1 on the offsets; one Adam step (offsets in their own group).

Schedule: ``mixvoxels.stage1_steps`` steps with the per-frame head and no offsets, then the
time function with offsets (0: the time function from the first step). Grids grow at
``mixvoxels.upsample_steps`` (log-linear in the voxel count from ``voxels_init`` to
``voxels_final``; the optimiser's moments restart, as in the reference); the alpha mask and the
shrunk box are recomputed at ``mixvoxels.alpha_mask_steps``.
"""
from __future__ import annotations

import numpy as np
import taichi as ti

from taichi_syncnerf import runtime, timeline
from taichi_syncnerf.kernels import allframes, mixglue, variation
from taichi_syncnerf.kernels.adam import Adam
from taichi_syncnerf.kernels.render import VolumeRenderer
from taichi_syncnerf.kernels.sampling import RaySampler, ray_aabb
from taichi_syncnerf.models.mixvoxels.heads import PerFrameHead, TimeFunction
from taichi_syncnerf.models.mixvoxels.parts import DynamicBranch, StaticBranch, VariationField, free_trees, own_trees
from taichi_syncnerf.models.mixvoxels.state import MixVoxelsState, grid_resolution
from taichi_syncnerf.models.mixvoxels.train import MixVoxelsTraining
from taichi_syncnerf.models.base import SyncModel
from taichi_syncnerf.offsets import TimeOffsets


def model_box(cfg: dict, ndc: bool, data_bbox):
    """The grids' box: ``model.bbox`` when given; else ``mixvoxels.ndc_bbox`` on a forward-facing
    (NDC) dataset when given; else the dataset's scene box (world units on a Blender-layout
    dataset). A preset can so carry a tight NDC box and still fit world-space data."""
    if cfg["model"]["bbox"] is not None:
        return cfg["model"]["bbox"]
    ndc_box = cfg["mixvoxels"].get("ndc_bbox")
    if ndc and ndc_box is not None:
        return ndc_box
    return data_bbox


def density_shift(cfg: dict, ndc: bool) -> float:
    """The dynamic density's shift: ``mixvoxels.ndc_dynamic_density_shift`` on a forward-facing
    (NDC) dataset when given, else ``mixvoxels.dynamic_density_shift``."""
    mx = cfg["mixvoxels"]
    if ndc and mx.get("ndc_dynamic_density_shift") is not None:
        return float(mx["ndc_dynamic_density_shift"])
    return float(mx["dynamic_density_shift"])


class SyncMixVoxels(MixVoxelsTraining, MixVoxelsState, SyncModel):
    kind = "sync-mixvoxels"
    supports_variation_retraining = True
    # Buffers of one chunk of dynamic rays (the dynamic branch, its trunk MLPs and the all-frames
    # head and renderer, whose size is samples x frames): on a CPU 512 MiB, on a GPU four times that.
    dynamic_chunk_bytes = 512 << 20

    def __init__(self, cfg: dict, n_cameras: int, n_frames: int, test_index: int, ndc: bool, near: float,
                 far: float, bbox, background, max_rays: int):
        m, mx = cfg["model"], cfg["mixvoxels"]
        self.cfg, self.mx = cfg, mx
        self.sync = bool(m["sync"])
        self.n_cameras, self.n_frames, self.test_index = int(n_cameras), int(n_frames), int(test_index)
        self.near, self.far = float(near), float(far)
        box = np.asarray(model_box(cfg, ndc, bbox), np.float64).reshape(2, 3)
        self.box = box
        self.sample_box = box.copy()
        self.background = [float(v) for v in background]
        self.max_rays = R = int(max_rays)
        self.n_samples = int(mx["n_samples"])
        self.S = S = R * self.n_samples
        seed = int(cfg["train"]["seed"])
        self.res = grid_resolution(mx["voxels_init"], box)
        self.static = StaticBranch(mx, self.res, S, seed + 100)
        self.variation = VariationField(mx, self.res, S, seed + 200)
        self.Sd = Sd = self.dynamic_capacity(mx, self.n_frames, S, self.n_samples)
        self.dynamic = DynamicBranch(mx, self.res, Sd, seed + 300)
        D = self.dynamic.D
        self.per_frame = PerFrameHead(n_frames, D, seed + 400)
        self.time_fn = TimeFunction(n_cameras, n_frames, D, mx["time_freqs"], mx["time_hidden"], 64,
                                    seed + 500, int(mx.get("time_grid", 0))) if self.sync else None
        self.offsets = TimeOffsets.from_config(cfg, self.n_cameras, n_frames, self.test_index)

        self.coarse = RaySampler(R, S)
        self.packed = RaySampler(R, S)  # the samples the alpha mask keeps
        self.smp = self.coarse
        self.renderer = VolumeRenderer(R, S, colour=True)
        act = (str(mx["dynamic_density_activation"]), float(mx["dynamic_density_sharpness"]),
               density_shift(cfg, ndc))
        self.frame_head = allframes.FrameHead(Sd, n_frames, D, float(mx["density_scale"]), *act)
        self.all_renderer = allframes.AllFramesRenderer(R, n_frames, Sd)
        self.eval_head = allframes.FrameHead(Sd, 1, D, float(mx["density_scale"]), *act)
        self.eval_renderer = allframes.AllFramesRenderer(R, 1, Sd)
        # one chunk of dynamic rays with all their samples (a compact copy of the packed set)
        self.chunk = RaySampler(R, Sd)
        self.chunk_src = ti.field(ti.i32, shape=Sd)  # the packed sample of each chunk sample
        self.chunk_sigma = ti.field(float, shape=Sd)  # static density and colour of the chunk samples
        self.chunk_rgb = ti.field(float, shape=(Sd, 3))
        self.chunk_rays = ti.field(ti.i32, shape=R)
        self.chunk_rays.from_numpy(np.arange(R, dtype=np.int32))
        self.eval_zs = ti.field(float, shape=R * (D + 1), needs_grad=True)
        self.eval_zc = ti.field(float, shape=R * 3 * (D + 1), needs_grad=True)
        self.rays_o = ti.field(float, shape=(R, 3))
        self.rays_d = ti.field(float, shape=(R, 3))
        self.near_f = ti.field(float, shape=R)
        self.far_f = ti.field(float, shape=R)
        self.pts = ti.field(float, shape=(S, 3))
        self.keep = ti.field(ti.i32, shape=S)
        self.target = ti.field(float, shape=(R, 3))
        self.target_all = ti.field(float, shape=(R, n_frames, 3))
        self.label = ti.field(float, shape=R)
        self.ray_logit = ti.field(float, shape=R, needs_grad=True)
        self.argmax = ti.field(ti.i32, shape=R)
        self.ray_dyn = ti.field(ti.i32, shape=R)
        self.sample_dyn = ti.field(ti.i32, shape=S)
        self.dyn_index = ti.field(ti.i32, shape=Sd)  # per chunk sample: its row in the dynamic branch, or -1
        self.dyn_src = ti.field(ti.i32, shape=Sd)  # per dynamic sample of the chunk: its packed sample
        self.slot = ti.field(ti.i32, shape=Sd)
        self.slot_start = ti.field(ti.i32, shape=self.n_cameras + 1)
        self.occ = None  # alpha mask: int field over a grid of self.occ_res cells, or None
        self.occ_res = None
        self._cams = np.zeros(0, np.int32)
        self._times = np.zeros(0)
        self.lr = float(cfg["train"]["lr"])
        self._build_optimizer()

    @classmethod
    def dynamic_capacity(cls, mx: dict, n_frames: int, max_samples: int, n_samples: int) -> int:
        """Samples of one chunk of dynamic rays: as many as :attr:`dynamic_chunk_bytes` of the
        buffers sized by it hold (at least one ray's ``n_samples``, at most ``max_samples``)."""
        F, D, h = int(n_frames), int(mx["width"]), int(mx["trunk_hidden"])
        md, ma = sum(mx["comps_density"]), sum(mx["comps_app"])
        per_sample = (13 * F + 12                       # head: sigma, rgb, gradients; renderer: transmittance
                      + 10 + 2 * md + 4 * ma + 4 * D    # dynamic branch features, inputs, outputs, gradients
                      + (md + 2 + 2 * h + D) + (ma + 5 + 2 * h + D)  # its two trunk MLPs' buffers
                      + 16)                              # the chunk's sample set and indices
        budget = cls.dynamic_chunk_bytes * (4 if runtime.info().arch == "cuda" else 1)
        fit = budget // (per_sample * np.dtype(runtime.np_float()).itemsize)
        return int(min(max_samples, max(n_samples, fit)))

    # ------------------------------------------------------------------ parameters
    def param_groups(self) -> list[tuple[str, object, float]]:
        mx = self.mx
        grid_lr, basis_lr = self.lr, float(mx["lr_basis"])
        out = []
        for prefix, comp in (("static", self.static), ("variation", self.variation), ("dynamic", self.dynamic)):
            for name, f in comp.params().items():
                out.append((f"{prefix}.{name}", f, grid_lr if name in ("density", "appearance", "grid")
                            else basis_lr))
        for name, f in self.per_frame.params().items():
            out.append((f"per_frame.{name}", f, basis_lr))
        if self.time_fn is not None:
            for name, f in self.time_fn.params().items():
                out.append((f"time.{name}", f, basis_lr * float(mx["lr_time_scale"])))
        out.append((TimeOffsets.GROUP, self.offsets.params, self.offsets.lr))
        return out

    def _build_optimizer(self) -> None:
        """A new Adam over the current parameters, its state in SNode trees of its own: the
        previous optimiser's are freed (parts.own_trees, Adam.free). Its moments are allocated
        at each group's first update (lazy moments): a model that only renders (eval, render, the
        viewer) holds none, test-time optimisation only the offsets', and a grid growth frees the
        old grids' moments before the new grids are allocated (:meth:`.state.MixVoxelsState.upsample`)."""
        groups = [{"name": n, "param": f, "lr": lr, "frozen": n == "offsets" and not self.sync}
                  for n, f, lr in self.param_groups()]
        self.base_lr = {g["name"]: g["lr"] for g in groups}
        self.lrs = dict(self.base_lr)
        self.free_moments()
        old = getattr(self, "_optimizer_trees", [])
        with own_trees() as self._optimizer_trees:
            self.optimizer = Adam(groups, lazy_moments=True)
        free_trees(old)

    def free_moments(self) -> None:
        """Release the optimiser's moments (they restart at zero)."""
        if getattr(self, "optimizer", None) is not None:
            self.optimizer.free()

    after_training = False  # set by prepare_testoptim
    steps_done: int | None = None  # training steps behind the parameters (None: unknown, taken as all)

    def uses_time_function(self, step: int) -> bool:
        return self.time_fn is not None and (self.after_training or step >= int(self.mx["stage1_steps"]))

    def renders_with_time_function(self) -> bool:
        """The head the last training step used: the per-frame head while stage 1 lasts."""
        return self.uses_time_function(self._final_step())

    def _final_step(self) -> int:
        """The step whose schedule applies after training (testoptim, rendering)."""
        return 10 ** 12 if self.steps_done is None else self.steps_done - 1

    def density_softplus(self, step: int) -> bool:
        """Whether the dynamic density is a softplus at training ``step`` (else relu):
        ``dynamic_density_activation: softplus`` until ``dynamic_density_relu_step``."""
        mx = self.mx
        if mx["dynamic_density_activation"] != "softplus":
            return False
        k = mx.get("dynamic_density_relu_step")
        return k is None or step < int(k)

    def _set_density_activation(self, step: int) -> None:
        self.frame_head.softplus = self.eval_head.softplus = int(self.density_softplus(step))

    def _head(self, step: int):
        return self.time_fn if self.uses_time_function(step) else self.per_frame

    # ------------------------------------------------------------------ rays and samples
    def load_rays(self, origins, dirs, view_dirs, times, cams, target=None) -> int:
        """Upload rays (numpy) for :meth:`render_rays` (``view_dirs`` is ``dirs`` here)."""
        n = len(origins)
        if n > self.max_rays:
            raise ValueError(f"{n} rays exceed the model's batch capacity {self.max_rays}")
        self._upload_rays(origins, dirs)
        self._cams = np.asarray(cams, np.int32)
        self._times = np.asarray(times, np.float64)
        return n

    def _upload_rays(self, origins, dirs) -> None:
        n = len(origins)
        fdt = runtime.np_float()
        for field, a in ((self.rays_o, origins), (self.rays_d, dirs)):
            full = np.zeros((self.max_rays, 3), fdt)
            full[:n] = a
            field.from_numpy(full)
        self.near_f.fill(self.near)
        self.far_f.fill(self.far)
        ray_aabb(self.rays_o, self.rays_d, self.near_f, self.far_f, n, self.sample_box.ravel(),
                 near_min=self.near, far_max=self.far)

    def _sample(self, n: int, jitter: bool, seed: int) -> None:
        c = self.coarse
        c.stratified(self.near_f, self.far_f, n, self.n_samples, jitter=jitter, seed=seed)
        lo, hi = self.box
        mixglue.box_points(self.rays_o, self.rays_d, c.t0, c.t1, c.ray_id, self.pts, c.n_samples, *lo, *hi)
        if self.occ is None:
            self.smp = smp = c
        else:
            self.smp = smp = self.packed
            mixglue.occupancy(self.pts, self.occ, self.keep, c.n_samples, *self.occ_res)
            keep = self.keep.to_numpy()[:c.n_samples].astype(bool)
            p = c.to_numpy()
            counts = np.bincount(p["ray_id"][keep], minlength=n).astype(np.int32)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
            _upload_packed(smp, n, starts, counts, p["t0"][keep], p["t1"][keep], p["ray_id"][keep])
        mixglue.box_points(self.rays_o, self.rays_d, smp.t0, smp.t1, smp.ray_id, self.pts, smp.n_samples,
                           *lo, *hi)

    def _route(self, n: int, slots: np.ndarray | None) -> tuple[int, int]:
        """Variation field and routing on the current samples; makes the dynamic lists (numpy:
        :meth:`_chunks` and :meth:`_load_chunk` upload them a chunk at a time).

        ``slots``: per-ray slot of the head table (None: slot 0). Returns (dynamic rays, dynamic
        samples)."""
        smp, mx = self.smp, self.mx
        self.variation.forward(self.pts, smp.n_samples)
        variation.ray_max_logit(self.variation.logit, smp.ray_start, smp.ray_count, self.ray_logit, self.argmax, n)
        logits = self.ray_logit.to_numpy()[:n].astype(np.float64)
        dyn_ray = (1.0 / (1.0 + np.exp(-logits)) > float(mx["dynamic_threshold"])) & (
            self.smp.ray_count.to_numpy()[:n] > 0)
        full = np.zeros(self.max_rays, np.int32)
        full[:n] = dyn_ray
        self.ray_dyn.from_numpy(full)
        variation.route_samples(self.variation.logit, smp.ray_start, smp.ray_count, self.ray_dyn,
                                self.sample_dyn, n, int(mx["pool_kernel"]) // 2, float(mx["sample_threshold"]))
        S = smp.n_samples
        dyn = self.sample_dyn.to_numpy()[:S].astype(bool)
        src = np.flatnonzero(dyn).astype(np.int32)
        index = np.full(S, -1, np.int32)
        index[src] = np.arange(len(src), dtype=np.int32)
        rays = np.flatnonzero(dyn_ray).astype(np.int32)
        self._n_dyn_rays, self._n_dyn = len(rays), len(src)
        self._dyn_rays_np = rays
        self._dyn_src_np, self._dyn_index_np = src, index
        ray_of = smp.ray_id.to_numpy()[src]
        self._dyn_slot_np = np.zeros(len(src), np.int32) if slots is None else np.asarray(slots, np.int32)[ray_of]
        self._ray_start_np = smp.ray_start.to_numpy()[:n]
        self._ray_count_np = smp.ray_count.to_numpy()[:n]
        # dynamic samples of each dynamic ray (they lie on dynamic rays only, in ray order)
        self._dyn_per_ray = np.bincount(np.searchsorted(rays, ray_of), minlength=len(rays)) if len(rays) else \
            np.zeros(0, np.int64)
        return len(rays), len(src)

    def _chunks(self) -> list[tuple[int, int, int, int]]:
        """The dynamic rays of the last :meth:`_route` in chunks of consecutive rays whose samples
        fit ``self.Sd``: ``(a, b, da, db)``, rays ``a:b`` of the dynamic ray list and their dynamic
        samples ``da:db`` of the dynamic sample list."""
        counts = self._ray_count_np[self._dyn_rays_np].astype(np.int64)
        out, a, da, used = [], 0, 0, 0
        for j, c in enumerate(counts):
            if j > a and used + c > self.Sd:
                db = da + int(self._dyn_per_ray[a:j].sum())
                out.append((a, j, da, db))
                a, da, used = j, db, 0
            used += int(c)
        if len(counts):
            out.append((a, len(counts), da, da + int(self._dyn_per_ray[a:].sum())))
        return out

    def _load_chunk(self, a: int, b: int, da: int, db: int) -> None:
        """Upload chunk ``(a, b, da, db)`` of :meth:`_chunks`: the compact sample set of its rays
        (``self.chunk``, rays ``0 .. b - a - 1``: interval ends, static density and colour copied
        from the packed samples), the row of each of its samples in the dynamic branch
        (``dyn_index``, -1 for static samples), its dynamic samples' points and rays in the
        dynamic branch, their head slots and the slots' sample ranges."""
        smp, ch = self.smp, self.chunk
        rays = self._dyn_rays_np[a:b]
        starts, counts = self._ray_start_np[rays], self._ray_count_np[rays].astype(np.int64)
        local_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        L = int(counts.sum())
        src = (np.repeat(starts - local_start, counts) + np.arange(L)).astype(np.int32)
        _load_int(self.chunk_src, src)
        _load_int(ch.ray_start, local_start.astype(np.int32))
        _load_int(ch.ray_count, counts.astype(np.int32))
        _load_int(ch.ray_id, np.repeat(np.arange(b - a, dtype=np.int32), counts))
        ch.n_rays, ch.n_samples, ch.n_dropped = b - a, L, 0
        if L:
            mixglue.gather_scalar(smp.t0, self.chunk_src, ch.t0, L)
            mixglue.gather_scalar(smp.t1, self.chunk_src, ch.t1, L)
            mixglue.gather_scalar(self.static.sigma, self.chunk_src, self.chunk_sigma, L)
            mixglue.gather_rows(self.static.rgb, self.chunk_src, self.chunk_rgb, L, 3)
        index = self._dyn_index_np[src]
        _load_int(self.dyn_index, np.where(index >= 0, index - da, -1).astype(np.int32))
        dsrc = self._dyn_src_np[da:db]
        _load_int(self.dyn_src, dsrc)
        slot = self._dyn_slot_np[da:db]
        _load_int(self.slot, slot)
        _load_int(self.slot_start, np.searchsorted(slot, np.arange(self.n_cameras + 1)).astype(np.int32))
        if db > da:
            mixglue.gather_rows(self.pts, self.dyn_src, self.dynamic.pts, db - da, 3)
            mixglue.gather_scalar(smp.ray_id, self.dyn_src, self.dynamic.ray_of, db - da)

    # ------------------------------------------------------------------ rendering
    def render_rays_chunk(self, rays: dict) -> np.ndarray:
        n = self.load_rays(rays["origins"], rays["dirs"], rays["view_dirs"], rays["times"], rays["cams"])
        return self.render_rays(n)

    def render_rays(self, n_rays: int) -> np.ndarray:
        """Colour (n_rays, 3) of the rays loaded with :meth:`load_rays`, at their own times:
        the static render for static rays, the dynamic render at the ray's time otherwise (by the
        head of the last training step: per-frame queries during stage 1)."""
        n = int(n_rays)
        self._set_density_activation(self._final_step())
        self._sample(n, jitter=False, seed=0)
        smp = self.smp
        self.static.forward(self.pts, self.rays_d, smp.ray_id, smp.n_samples)
        self.renderer.forward(smp, self.static.sigma, self.static.rgb, n, background=self.background, threshold=0.0)
        out = self.renderer.colour.to_numpy()[:n].astype(np.float64)
        cams, times = self._cams[:n], self._times[:n]
        use_time = self.renders_with_time_function()
        key_t = times + (self.offsets.normalised()[cams] if use_time else 0.0)
        keys = np.stack([cams if use_time else np.zeros(n), key_t], 1)
        uniq, slots = np.unique(keys, axis=0, return_inverse=True)
        slots = slots.ravel().astype(np.int32)
        nd_rays, nd = self._route(n, slots=slots)
        if nd_rays == 0:
            return out
        if use_time:
            zs, zc = self.time_fn.rows_at(uniq[:, 1])
        else:
            zs, zc = self.per_frame.rows_at(timeline.time_frame(uniq[:, 1], self.n_frames))
        _load_float(self.eval_zs, zs.ravel())
        _load_float(self.eval_zc, zc.ravel())
        d = self.dynamic
        for a, b, da, db in self._chunks():
            self._load_chunk(a, b, da, db)
            d.forward(self.rays_d, db - da)
            self.eval_head.forward(d.hs, d.hc, self.eval_zs, self.eval_zc, self.slot, db - da)
            self.eval_renderer.forward(self.chunk, self.chunk_rays, b - a, self.dyn_index, self.eval_head.sigma,
                                       self.eval_head.rgb, self.chunk_sigma, self.chunk_rgb, self.background)
            out[self._dyn_rays_np[a:b]] = self.eval_renderer.colour.to_numpy()[:b - a, 0]
        return out


def _load_int(field, a) -> None:
    full = np.zeros(field.shape, np.int32)
    full[:len(a)] = a
    field.from_numpy(full)


def _load_float(field, a) -> None:
    full = np.zeros(field.shape, runtime.np_float())
    full[:len(a)] = a
    field.from_numpy(full)


def _upload_packed(dst: RaySampler, n: int, starts, counts, t0, t1, ray_id) -> None:
    _load_int(dst.ray_start, starts)
    _load_int(dst.ray_count, counts)
    _load_float(dst.t0, t0)
    _load_float(dst.t1, t1)
    _load_int(dst.ray_id, ray_id)
    dst.n_rays, dst.n_samples, dst.n_dropped = int(n), int(len(t0)), 0
