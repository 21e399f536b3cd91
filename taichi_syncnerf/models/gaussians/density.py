"""Adaptive density control (3DGS; GAUSSIAN_REFERENCE.md section 6), bounded by the capacity.

Statistics, per Gaussian, while ``step < densify_until``: for every rendered view where it is
visible (radius > 0) the norm of its view-space mean gradient in NDC units
(:attr:`Rasterizer.d_mean2d_norm_ndc`) is added and a count incremented; its largest screen radius
is kept. Every ``densify_every`` steps from ``densify_from`` (and before ``densify_until``):

* g = sum / count; Gaussians with ``g >= grad_threshold`` grow: the small ones (largest scale
  ``<= percent_dense x extent``) are cloned (an exact copy), the large ones split into two children
  at ``p + R(q) n``, ``n ~ N(0, diag(S^2))``, scales ``S / 1.6``, other values copied, the parent
  removed. New Gaussians start with zero Adam moments. When the capacity (``max_gaussians``; in the
  coarse stage ``static_capacity`` x ``max_gaussians``, so that the fine stage has room for what only
  moves) cannot take them all, those with the largest ``g`` go first; likewise when one step would
  add more than ``max_growth`` x ``max_gaussians`` (a textured scene's Gaussians split exponentially
  and fill any bound within a few steps: the bound on a step's growth leaves the room to the largest
  gradients of later steps, such as a mover's region once the deformation reaches for it);
* pruned: opacity below ``min_opacity``; after the first opacity reset also a screen radius above
  ``max_screen_radius`` pixels or a largest scale above ``max_world_scale x extent``; pruning only
  runs while the count exceeds ``prune_above``;
* the statistics restart.

Every ``opacity_reset_every`` steps (null: never) opacities become ``min(o, 0.01)`` and their
Adam moments restart.
"""

import numpy as np
import taichi as ti


@ti.kernel
def _accumulate(radius: ti.template(), norm: ti.template(), grad_sum: ti.template(), count: ti.template(),
                max_radius: ti.template(), n: ti.i32):
    for i in range(n):
        if radius[i] > 0:
            grad_sum[i] += norm[i]
            count[i] += 1.0
            max_radius[i] = ti.max(max_radius[i], ti.cast(radius[i], float))


def _logit(o):
    o = np.clip(o, 1e-6, 1.0 - 1e-6)
    return np.log(o / (1.0 - o))


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _rotations(q: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).reshape(-1, 3, 3)


class DensityControl:
    """Statistics and the clone / split / prune / reset edits of a ``GaussianCloud`` (``cfg``: the
    ``gaussians`` section; ``extent``: the scene extent)."""

    def __init__(self, cfg: dict, capacity: int, extent: float):
        self.cfg = cfg
        self.extent = float(extent)
        self.grad_sum = ti.field(float, shape=capacity)
        self.count = ti.field(float, shape=capacity)
        self.max_radius = ti.field(float, shape=capacity)

    def accumulate(self, ras, n: int) -> None:
        _accumulate(ras.radius, ras.d_mean2d_norm_ndc, self.grad_sum, self.count, self.max_radius, n)

    def reset_stats(self) -> None:
        for f in (self.grad_sum, self.count, self.max_radius):
            f.fill(0.0)

    def state_arrays(self, n: int) -> dict:
        return {"density/grad_sum": self.grad_sum.to_numpy()[:n], "density/count": self.count.to_numpy()[:n],
                "density/max_radius": self.max_radius.to_numpy()[:n]}

    def load_state_arrays(self, arrays: dict, n: int) -> None:
        for key, f in (("grad_sum", self.grad_sum), ("count", self.count), ("max_radius", self.max_radius)):
            full = np.zeros(f.shape[0], f.to_numpy().dtype)
            full[:n] = arrays.get(f"density/{key}", np.zeros(n))[:n]
            f.from_numpy(full)

    # ------------------------------------------------------------------ the schedule
    def due(self, step: int) -> tuple[bool, bool]:
        """(densify-and-prune, opacity reset) after training step ``step`` (0-based)."""
        c = self.cfg
        k = step + 1
        densify = c["densify_from"] < k < c["densify_until"] and k % c["densify_every"] == 0
        every = c["opacity_reset_every"]
        reset = every is not None and k < c["densify_until"] and k % int(every) == 0
        return densify, reset

    def densify_and_prune(self, cloud, optimizer, step: int, rng: np.random.Generator,
                          limit: int | None = None) -> dict:
        """Grow, prune and restart the statistics; the count grows to at most ``limit`` (default:
        the capacity)."""
        c = self.cfg
        n = cloud.n
        a = cloud.get()
        count = self.count.to_numpy()[:n]
        g = self.grad_sum.to_numpy()[:n] / np.maximum(count, 1.0)
        scale_max = np.exp(a["log_scales"]).max(1)
        grow = g >= float(c["grad_threshold"])
        small = scale_max <= float(c["percent_dense"]) * self.extent
        clone, split = np.flatnonzero(grow & small), np.flatnonzero(grow & ~small)
        room = (cloud.capacity if limit is None else min(cloud.capacity, int(limit))) - n
        if c.get("max_growth") is not None:
            room = min(room, int(float(c["max_growth"]) * cloud.capacity))
        # a split adds one net Gaussian, a clone one: the largest gradients first when room is short
        order = np.concatenate([clone, split])[np.argsort(-g[np.concatenate([clone, split])], kind="stable")]
        order = order[:max(room, 0)]
        clone, split = np.intersect1d(clone, order), np.intersect1d(split, order)
        new = {k: [v[clone]] for k, v in a.items()}
        if len(split):
            S = np.exp(a["log_scales"][split])
            R = _rotations(a["quats"][split])
            for _ in range(2):
                child = {k: v[split].copy() for k, v in a.items()}
                child["means"] = a["means"][split] + np.einsum("nij,nj->ni", R, rng.normal(size=S.shape) * S)
                child["log_scales"] = np.log(S / 1.6)
                for k in a:
                    new[k].append(child[k])
        keep = np.ones(n, bool)
        keep[split] = False
        pruned = 0
        if n > int(c["prune_above"]):
            dead = _sigmoid(a["opacity"]) < float(c["min_opacity"])
            reset = c["opacity_reset_every"]
            if reset is not None and step + 1 > int(reset):
                dead |= self.max_radius.to_numpy()[:n] > float(c["max_screen_radius"])
                dead |= scale_max > float(c["max_world_scale"]) * self.extent
            pruned = int((dead & keep).sum())
            keep &= ~dead
        rows = {k: np.concatenate([a[k][keep]] + new[k]) for k in a}
        n_new = len(rows["means"]) - int(keep.sum())
        self.replace_rows(cloud, optimizer, rows, keep, n_new)
        self.reset_stats()
        return {"cloned": int(len(clone)), "split": int(len(split)), "pruned": pruned, "gaussians": cloud.n}

    def reset_opacity(self, cloud, optimizer) -> None:
        a = cloud.get()
        a["opacity"] = np.minimum(a["opacity"], _logit(0.01))
        cloud.set(a)
        m, v = optimizer.moments("opacity")
        optimizer.set_moments("opacity", np.zeros_like(m), np.zeros_like(v))

    @staticmethod
    def replace_rows(cloud, optimizer, rows: dict, keep: np.ndarray, n_new: int) -> None:
        """The cloud becomes ``rows``: the rows of ``keep`` (a mask of the current ones), in order, then
        ``n_new`` new ones; the kept rows keep their Adam moments, the new ones start at zero."""
        n_old = cloud.n
        moments = {}
        for name in cloud.groups():
            d = cloud.dims[name]
            m, v = optimizer.moments(name)
            mm, vv = np.zeros_like(m), np.zeros_like(v)
            k = int(keep.sum()) * d
            mm[:k] = m[: n_old * d].reshape(n_old, d)[keep].ravel()
            vv[:k] = v[: n_old * d].reshape(n_old, d)[keep].ravel()
            moments[name] = (mm, vv)
        cloud.set(rows)
        for name, (mm, vv) in moments.items():
            optimizer.set_moments(name, mm, vv)
