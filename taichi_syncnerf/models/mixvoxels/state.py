"""Grid growth, the alpha mask with box shrinking, and checkpoint state of Sync-MixVoxels (a
mixin of :class:`.model.SyncMixVoxels`)."""
from __future__ import annotations

import math

import numpy as np
import taichi as ti

from taichi_syncnerf import runtime
from taichi_syncnerf.checkpoint import load_optimizer_state
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.models.mixvoxels.spill import host_copy

MASK_MAX_RES = 128  # the alpha mask's grid follows the VM grid, at most this many cells per axis


def grid_resolution(n_voxels: float, box) -> list[int]:
    """Per-axis resolution with about ``n_voxels`` cells over ``box`` (2, 3), cells cubic."""
    size = np.asarray(box[1], np.float64) - np.asarray(box[0], np.float64)
    side = (np.prod(size) / float(n_voxels)) ** (1.0 / 3.0)
    return [max(2, int(v)) for v in np.round(size / side)]


def voxel_schedule(mx: dict) -> list[float]:
    """Voxel counts after each upsample (log-linear from ``voxels_init`` to ``voxels_final``)."""
    n = len(mx["upsample_steps"])
    a, b = math.log(mx["voxels_init"]), math.log(mx["voxels_final"])
    return [math.exp(a + (b - a) * (i + 1) / n) for i in range(n)]


class MixVoxelsState:
    # ------------------------------------------------------------------ schedule
    def apply_schedule(self, step: int) -> None:
        """Upsample the grids and/or rebuild the alpha mask when ``step`` is one of their steps."""
        mx = self.mx
        ups = [int(s) for s in mx["upsample_steps"]]
        if step in ups:
            self.upsample(grid_resolution(voxel_schedule(mx)[ups.index(step)], self.box))
        if step in [int(s) for s in mx["alpha_mask_steps"]]:
            self.update_alpha_mask()

    def grids(self):
        return [self.static.grids, self.variation.grids, self.dynamic.grids]

    def upsample(self, res) -> None:
        """Resample every grid to ``res`` (3,); the optimiser restarts (fresh moments: the old
        ones are freed first, so that they are not held beside the old and the new grids)."""
        res = [int(r) for r in res]
        if res == self.res:
            return
        self.free_moments()
        for g in self.grids():
            g.upsample(res)
        self.res = res
        self._build_optimizer()

    def update_alpha_mask(self) -> None:
        """Occupancy from the static density on a grid of cell centres: alpha over one sample
        spacing, 3x3x3 max-pooled, above ``alpha_mask_threshold``; the sampling box shrinks to
        the cells of that (dilated) mask."""
        res = [min(r, MASK_MAX_RES) for r in self.res]
        axes = [(np.arange(r) + 0.5) / r * 2.0 - 1.0 for r in res]
        total = res[0] * res[1] * res[2]
        sigma = np.empty(total)
        fdt = runtime.np_float()
        chunk = np.zeros((self.S, 3), fdt)
        for a in range(0, total, self.S):  # the cell centres (x fastest) a chunk at a time
            b = min(total, a + self.S)
            i = np.arange(a, b)
            chunk[:b - a, 0] = axes[0][i % res[0]]
            chunk[:b - a, 1] = axes[1][i // res[0] % res[1]]
            chunk[:b - a, 2] = axes[2][i // (res[0] * res[1])]
            chunk[b - a:] = 0.0
            self.pts.from_numpy(chunk)
            self.static.density(self.pts, b - a)
            sigma[a:b] = self.static.sigma.to_numpy()[:b - a]
        step = (self.far - self.near) / self.n_samples
        alpha = (1.0 - np.exp(-sigma * step)).reshape(res[2], res[1], res[0])
        pooled = _max_pool3(alpha)
        occ = pooled > float(self.mx["alpha_mask_threshold"])
        if not occ.any():
            return  # an empty field keeps no mask (nothing would be rendered)
        self._set_mask(occ.astype(np.int32), res)
        idx = np.argwhere(occ)  # (k, 3) in (z, y, x)
        lo_c, hi_c = idx.min(0)[::-1], idx.max(0)[::-1] + 1  # the pooled mask already has a margin
        cell = (self.box[1] - self.box[0]) / np.asarray(res)
        lo = np.maximum(self.box[0] + lo_c * cell, self.box[0])
        hi = np.minimum(self.box[0] + hi_c * cell, self.box[1])
        self.sample_box = np.stack([lo, hi])

    def _set_mask(self, occ: np.ndarray, res) -> None:
        if self.occ is None or self.occ.shape[0] != occ.size:
            self.occ = ti.field(ti.i32, shape=occ.size)
        self.occ.from_numpy(occ.ravel().astype(np.int32))
        self.occ_res = [int(r) for r in res]

    # ------------------------------------------------------------------ checkpoints
    def state_arrays(self) -> dict:
        """The checkpoint's arrays. The grids and their moments (1.3 GiB at the Plenoptic preset's
        final size, on top of the fields they copy) are copied into pages of temporary files
        (:func:`host_copy`), not into anonymous memory."""
        out = {f"params/{name}": host_copy(f) for name, f, _ in self.param_groups() if name != "offsets"}
        out.update(self.offsets.state_arrays())
        out["mixvoxels/res"] = np.asarray(self.res, np.int64)
        out["mixvoxels/sample_box"] = self.sample_box
        if self.steps_done is not None:
            out["mixvoxels/steps_done"] = np.asarray(self.steps_done, np.int64)
        if self.occ is not None:
            out["mixvoxels/occ"] = self.occ.to_numpy().astype(np.int8)
            out["mixvoxels/occ_res"] = np.asarray(self.occ_res, np.int64)
        for k, v in self.optimizer.state_dict(to_numpy=host_copy).items():
            out[f"adam/{k}"] = np.asarray(v)
        return out

    def load_state_arrays(self, arrays: dict, where: str, optimizer: bool = True) -> None:
        if "mixvoxels/res" not in arrays:
            raise UserError(f"{where}: not a Sync-MixVoxels checkpoint (model.kind of the run disagrees)")
        res = [int(r) for r in arrays["mixvoxels/res"]]
        if len(res) != 3 or min(res) < 2:
            raise UserError(f"{where}: checkpoint entry mixvoxels/res is corrupt")
        self.upsample(res)
        fdt = runtime.np_float()
        self.offsets.load_state_arrays(arrays, where)
        for name, f, _ in self.param_groups():
            if name == "offsets":
                continue
            key = f"params/{name}"
            a = arrays[key] if key in arrays else None
            if a is None or a.shape != tuple(f.shape):
                raise UserError(f"{where}: checkpoint entry {key} is missing or has the wrong size "
                                "(was the run trained with another config?)")
            f.from_numpy(a.astype(fdt, copy=False))
            del a
        box = np.asarray(arrays.get("mixvoxels/sample_box", self.box), np.float64)
        self.sample_box = box.reshape(2, 3)
        self.steps_done = int(arrays["mixvoxels/steps_done"]) if "mixvoxels/steps_done" in arrays else None
        if "mixvoxels/occ" in arrays:
            self._set_mask(arrays["mixvoxels/occ"].astype(np.int32), arrays["mixvoxels/occ_res"])
        if optimizer:
            load_optimizer_state(self.optimizer, arrays, where)


def _max_pool3(a: np.ndarray) -> np.ndarray:
    """3x3x3 max pooling with stride 1 (edges padded with -inf)."""
    p = np.pad(a, 1, constant_values=-np.inf)
    out = np.full(a.shape, -np.inf)
    Z, Y, X = a.shape
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                np.maximum(out, p[dz:dz + Z, dy:dy + Y, dx:dx + X], out=out)
    return out
