"""The training step of Sync-MixVoxels (a mixin of :class:`.model.SyncMixVoxels`)."""
from __future__ import annotations

import numpy as np

from taichi_syncnerf import runtime
from taichi_syncnerf.kernels import allframes, ray_losses, variation


class MixVoxelsTraining:
    # ------------------------------------------------------------------ the shared model contract
    def train_on(self, batch: dict, step: int, lr_scale: float, offsets_frozen: bool,
                 offsets_only: bool = False) -> dict:
        """Grid growth / alpha mask due at ``step``, loss and gradients, one optimiser step."""
        if not offsets_only:
            self.apply_schedule(step)
            self.steps_done = step + 1
        stats = self.forward_backward(batch, step, seed=step + 1, jitter=True, offsets_frozen=offsets_frozen,
                                      offsets_only=offsets_only)
        self._optimizer_step(step, lr_scale, offsets_frozen, offsets_only)
        return stats

    def retrain_variation(self, batch: dict, step: int, lr_scale: float) -> dict:
        """One step of the variation field alone on ``batch`` (testoptim: the test video); its BCE
        only, every other group frozen. ``stats["routing_agreement"]``: share of rays whose
        routing (dynamic or not) matches the label ``std > std_threshold``."""
        stats = self.forward_backward(batch, step, seed=step + 1, jitter=True, offsets_frozen=True,
                                      variation_only=True)
        self._optimizer_step(step, lr_scale, True, False, variation_only=True)
        return stats

    def current_lrs(self) -> dict:
        return {"lr": self.lrs["static.density"], "lr_offsets": self.lrs["offsets"]}

    def prepare_testoptim(self, test_index: int, lr: float) -> None:
        """Only camera ``test_index``'s offset trains (everything else frozen in ``train_on``
        with ``offsets_only``), at learning rate ``lr``."""
        self.offsets.only(test_index, lr)
        self.base_lr["offsets"] = float(lr)
        self.after_training = True  # the time function is in use whatever the testoptim step

    # ------------------------------------------------------------------ loss and gradients
    def forward_backward(self, batch: dict, step: int, seed: int, jitter: bool, offsets_frozen: bool = False,
                         offsets_only: bool = False, variation_only: bool = False) -> dict:
        """Total loss (``stats["loss"]``) and its gradient ACCUMULATED into every parameter group
        (``variation_only``: the variation BCE alone, no dynamic pass)."""
        mx = self.mx
        self._set_density_activation(self._final_step() if self.after_training else step)
        n = len(batch["cams"])
        if n > self.max_rays:
            raise ValueError(f"{n} rays exceed the model's batch capacity {self.max_rays}")
        self._upload_rays(batch["origins"], batch["dirs"])
        fdt = runtime.np_float()
        tgt = np.zeros((self.max_rays, 3), fdt)
        tgt[:n] = batch["mean_rgb"]
        self.target.from_numpy(tgt)
        lab = np.zeros(self.max_rays, fdt)
        lab[:n] = np.asarray(batch["std"]) > float(mx["std_threshold"])
        self.label.from_numpy(lab)
        self._sample(n, jitter, seed)
        smp = self.smp
        S = smp.n_samples
        stats, loss = {}, 0.0
        st = self.static
        st.forward(self.pts, self.rays_d, smp.ray_id, S)
        self.renderer.forward(smp, st.sigma, st.rgb, n, background=self.background, threshold=0.0)
        mse_static = ray_losses.mse(self.renderer.colour, self.target, n)
        stats["mse_static"] = mse_static
        if not (offsets_only or variation_only):
            self.renderer.backward(smp, st.sigma, st.rgb, n, d_colour=True)
            st.backward(self.pts, S)
            loss += mse_static
        head = self._head(step)
        use_time = head is self.time_fn
        n_rays_dyn, nd = self._route(n, batch["cams"] if use_time else None)
        if not offsets_only:
            w = float(mx["bce_weight"])
            bce = variation.weighted_bce(self.ray_logit, self.label, n, float(mx["bce_pos_weight"]), weight=w)
            variation.ray_max_logit_backward(self.variation.logit, smp.ray_start, smp.ray_count, self.ray_logit,
                                             self.argmax, n)
            self.variation.backward(self.pts, S)
            stats["bce"] = bce
            loss += w * bce
        stats["dynamic_rays"] = n_rays_dyn / max(n, 1)
        mse_dyn = 0.0
        if variation_only:
            stats["routing_agreement"] = float(np.mean(self.ray_dyn.to_numpy()[:n] == (lab[:n] > 0.5))) if n else 1.0
            stats["mse"] = mse_static
            stats["psnr"] = -10.0 * np.log10(max(mse_static, 1e-12))
            stats["loss"] = loss
            return stats
        if n_rays_dyn > 0 and nd > 0:
            mse_dyn = self._dynamic_pass(batch, head, n_rays_dyn, nd, backward_branch=not offsets_only)
            loss += mse_dyn
        stats["mse_dynamic"] = mse_dyn
        # composite: static rays against their mean colour, dynamic rays against every frame
        stats["mse"] = (mse_static * (n - n_rays_dyn) + mse_dyn * n_rays_dyn) / max(n, 1)
        stats["psnr"] = -10.0 * np.log10(max(stats["mse"], 1e-12))
        if use_time and not offsets_frozen:
            stats["offsets_l1"] = self.offsets.l1()
            loss += stats["offsets_l1"]
        self.offsets.apply_mask_to_grad()
        stats["loss"] = loss
        return stats

    def _dynamic_pass(self, batch, head, n_rays_dyn: int, nd: int, backward_branch: bool) -> float:
        """The dynamic rays' L2 over every frame, a chunk of rays at a time (:meth:`_chunks`):
        each chunk's gradients reach the branch and the head's tables (which add up), the head's
        backward runs once at the end. Returns the mean over all dynamic rays x frames x RGB."""
        head.compute(self.offsets)
        d, fh, ren = self.dynamic, self.frame_head, self.all_renderer
        fdt = runtime.np_float()
        mse = 0.0
        for a, b, da, db in self._chunks():
            nr, nc = b - a, db - da
            self._load_chunk(a, b, da, db)
            tgt = np.zeros(self.target_all.shape, fdt)
            tgt[:nr] = batch["all_frames"](self._dyn_rays_np[a:b])
            self.target_all.from_numpy(tgt)
            d.forward(self.rays_d, nc)
            fh.forward(d.hs, d.hc, head.zs, head.zc, self.slot, nc)
            args = (self.chunk, self.chunk_rays, nr, self.dyn_index, fh.sigma, fh.rgb, self.chunk_sigma,
                    self.chunk_rgb)
            ren.forward(*args, background=self.background)
            share = nr / n_rays_dyn  # this chunk's share of the mean (1.0 for one chunk)
            mse += share * allframes.mse(ren.colour, self.target_all, nr, weight=share)
            ren.backward(*args)
            fh.backward(d.hs, d.hc, head.zs, head.zc, self.slot, self.slot_start, head.n_slots, nc)
            if backward_branch:
                d.backward(nc)
        head.backward(self.offsets)
        return mse

    def _optimizer_step(self, step: int, lr_scale: float, offsets_frozen: bool, offsets_only: bool,
                        variation_only: bool = False) -> None:
        use_time = self.uses_time_function(step)
        for name, lr in self.base_lr.items():
            is_off = name == "offsets"
            frozen = ((is_off and (offsets_frozen or not use_time)) or (offsets_only and not is_off)
                      or (variation_only and not name.startswith("variation."))
                      or (name.startswith("time.") and not use_time)
                      or (name.startswith("per_frame.") and use_time))
            self.optimizer.freeze(name, frozen)
            self.optimizer.set_lr(name, lr * lr_scale)
            self.lrs[name] = lr * lr_scale
        self.optimizer.step()
