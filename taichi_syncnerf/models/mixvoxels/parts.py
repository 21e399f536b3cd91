"""The three fields of Sync-MixVoxels, each a set of VM grids and small MLPs with forward and
backward over a packed sample set.

* :class:`StaticBranch`: static density ``sigma = scale * relu(sum of VM products)`` and static
  colour ``sigmoid(MLP([VM appearance products, unit view direction]))``.
* :class:`VariationField`: per-sample logit ``sum of VM products`` (dynamic-ness).
* :class:`DynamicBranch`: per-sample trunk features ``hs = MLP_s(VM density products)`` and
  ``hc = MLP_c([VM appearance products, unit view direction])`` that the all-frames head
  (kernels/allframes.py) combines with the per-(slot, frame) queries.

The reference's linear "basis" layer after the VM products is folded into the first layer of
the MLP that follows it (a product of two linear maps is one linear map).

Taichi frees a field only with the SNode tree that holds it: the grids (and the optimiser, in
model.py) are allocated in trees of their own (:func:`own_trees`), which a grid growth destroys
(:func:`free_trees`) once the new grids hold the resampled values, so that the grids of every size
on the way to the final one do not all stay in memory (4.3 GiB at the Plenoptic preset instead of
the final 1.7 GiB).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import taichi as ti

from taichi_syncnerf.kernels import mixglue
from taichi_syncnerf.kernels.mlp import MLP
from taichi_syncnerf.kernels.vm import VMEncoder, resample


def xavier_layers(dims, first_gain: float, last_gain: float, seed: int):
    """Xavier-uniform weights (gain ``first_gain`` on the first layer, ``last_gain`` on the last,
    1 in between) and zero biases, as the reference initialises its time MLPs."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        gain = first_gain if i == 0 else (last_gain if i == len(dims) - 2 else 1.0)
        bound = gain * math.sqrt(6.0 / (a + b))
        layers.append((rng.uniform(-bound, bound, (b, a)), np.zeros(b)))
    return layers


@contextmanager
def own_trees():
    """The Taichi fields allocated in the block are placed in SNode trees of their own: the list
    this yields, for :func:`free_trees`. (Fields allocated before the block are finalised into
    their trees first; the trees Taichi finalises while the block runs, at each kernel launch and
    at its end, are recorded.)"""
    from taichi._snode.fields_builder import FieldsBuilder
    from taichi.lang import impl

    runtime = impl.get_runtime()
    runtime.materialize()
    trees = []
    original = FieldsBuilder.finalize

    def finalize(self, raise_warning=True):
        tree = original(self, raise_warning)
        trees.append(tree)
        return tree

    FieldsBuilder.finalize = finalize
    try:
        yield trees
        runtime.materialize()
    finally:
        FieldsBuilder.finalize = original


def free_trees(trees: list) -> None:
    """Destroy the trees of :func:`own_trees` (their fields must never be used again). Taichi then
    compiles its kernels again at their next launch (from its offline cache where it can)."""
    for tree in trees:
        if not tree.destroyed:
            tree.destroy()
    trees.clear()


class _Grids:
    """Named VM encoders that can be upsampled together (in SNode trees of their own, freed when
    they are upsampled)."""

    def __init__(self, specs: dict, res, max_points: int, seed: int, init_std: float):
        self.specs = specs
        self.max_points = max_points
        self.init_std = init_std
        with own_trees() as self._trees:
            self.enc = {name: VMEncoder(comps, res, max_points, seed=seed + i, init_std=init_std)
                        for i, (name, comps) in enumerate(specs.items())}

    def upsample(self, res) -> None:
        old, old_trees = self.enc, self._trees
        with own_trees() as self._trees:
            self.enc = {name: VMEncoder(enc.comps, res, self.max_points, init_std=0.0) for name, enc in old.items()}
        for name, new in self.enc.items():
            resample(old[name], new)
        free_trees(old_trees)


@ti.data_oriented
class StaticBranch:
    def __init__(self, mx: dict, res, max_samples: int, seed: int):
        S = int(max_samples)
        self.scale = float(mx["density_scale"])
        self.grids = _Grids({"density": mx["comps_density"], "appearance": mx["comps_app"]}, res, S, seed,
                            float(mx["init_std"]))
        md, ma = sum(mx["comps_density"]), sum(mx["comps_app"])
        self.md, self.ma = md, ma
        h = int(mx["static_hidden"])
        self.mlp = MLP(ma + 3, [h, h], 3, S, seed=seed + 11)
        self.f_d = ti.field(float, shape=(S, md), needs_grad=True)
        self.f_a = ti.field(float, shape=(S, ma), needs_grad=True)
        self.inp = ti.field(float, shape=(S, ma + 3), needs_grad=True)
        self.out = ti.field(float, shape=(S, 3), needs_grad=True)
        self.sigma = ti.field(float, shape=S, needs_grad=True)
        self.rgb = ti.field(float, shape=(S, 3), needs_grad=True)

    def params(self) -> dict:
        return {"density": self.grids.enc["density"].params, "appearance": self.grids.enc["appearance"].params,
                "mlp": self.mlp.params}

    def density(self, pts, n: int) -> None:
        self.grids.enc["density"].forward(pts, self.f_d, n)
        mixglue.sum_activate(self.f_d, self.sigma, n, self.md, self.scale, 1)

    def forward(self, pts, dirs, ray_of, n: int) -> None:
        self.density(pts, n)
        self.grids.enc["appearance"].forward(pts, self.f_a, n)
        mixglue.concat_dirs(self.f_a, dirs, ray_of, self.inp, n, self.ma)
        self.mlp.forward(self.inp, self.out, n)
        mixglue.sigmoid3(self.out, self.rgb, n)

    def backward(self, pts, n: int) -> None:
        """From ``sigma.grad`` and ``rgb.grad``."""
        mixglue.sigmoid3_backward(self.out, self.rgb, n)
        self.mlp.backward(self.inp, self.out, n)
        mixglue.concat_dirs_backward(self.f_a, self.inp, n, self.ma)
        self.grids.enc["appearance"].backward(pts, self.f_a, n, coord_grad=False)
        mixglue.sum_activate_backward(self.f_d, self.sigma, n, self.md, self.scale, 1)
        self.grids.enc["density"].backward(pts, self.f_d, n, coord_grad=False)


@ti.data_oriented
class VariationField:
    def __init__(self, mx: dict, res, max_samples: int, seed: int):
        S = int(max_samples)
        self.grids = _Grids({"variation": mx["comps_density"]}, res, S, seed, float(mx["init_std"]))
        self.m = sum(mx["comps_density"])
        self.feat = ti.field(float, shape=(S, self.m), needs_grad=True)
        self.logit = ti.field(float, shape=S, needs_grad=True)

    def params(self) -> dict:
        return {"grid": self.grids.enc["variation"].params}

    def forward(self, pts, n: int) -> None:
        self.grids.enc["variation"].forward(pts, self.feat, n)
        mixglue.sum_activate(self.feat, self.logit, n, self.m, 1.0, 0)

    def backward(self, pts, n: int) -> None:
        mixglue.sum_activate_backward(self.feat, self.logit, n, self.m, 1.0, 0)
        self.grids.enc["variation"].backward(pts, self.feat, n, coord_grad=False)


@ti.data_oriented
class DynamicBranch:
    def __init__(self, mx: dict, res, max_samples: int, seed: int):
        S = int(max_samples)
        self.grids = _Grids({"density": mx["comps_density"], "appearance": mx["comps_app"]}, res, S, seed,
                            float(mx["init_std"]))
        md, ma = sum(mx["comps_density"]), sum(mx["comps_app"])
        self.md, self.ma = md, ma
        h, D = int(mx["trunk_hidden"]), int(mx["width"])
        self.D = D
        self.mlp_s = MLP(md, [h], D, S, seed=seed + 21)
        self.mlp_c = MLP(ma + 3, [h], D, S, seed=seed + 22)
        self.pts = ti.field(float, shape=(S, 3))
        self.ray_of = ti.field(ti.i32, shape=S)
        self.f_d = ti.field(float, shape=(S, md), needs_grad=True)
        self.f_a = ti.field(float, shape=(S, ma), needs_grad=True)
        self.inp = ti.field(float, shape=(S, ma + 3), needs_grad=True)
        self.hs = ti.field(float, shape=(S, D), needs_grad=True)
        self.hc = ti.field(float, shape=(S, D), needs_grad=True)

    def params(self) -> dict:
        return {"density": self.grids.enc["density"].params, "appearance": self.grids.enc["appearance"].params,
                "trunk_s": self.mlp_s.params, "trunk_c": self.mlp_c.params}

    def forward(self, dirs, n: int) -> None:
        """On the gathered samples ``self.pts`` (rows < n) whose rays are ``self.ray_of``."""
        self.grids.enc["density"].forward(self.pts, self.f_d, n)
        self.mlp_s.forward(self.f_d, self.hs, n)
        self.grids.enc["appearance"].forward(self.pts, self.f_a, n)
        mixglue.concat_dirs(self.f_a, dirs, self.ray_of, self.inp, n, self.ma)
        self.mlp_c.forward(self.inp, self.hc, n)

    def backward(self, n: int) -> None:
        """From ``hs.grad`` and ``hc.grad``."""
        self.mlp_s.backward(self.f_d, self.hs, n)
        self.grids.enc["density"].backward(self.pts, self.f_d, n, coord_grad=False)
        self.mlp_c.backward(self.inp, self.hc, n)
        mixglue.concat_dirs_backward(self.f_a, self.inp, n, self.ma)
        self.grids.enc["appearance"].backward(self.pts, self.f_a, n, coord_grad=False)
