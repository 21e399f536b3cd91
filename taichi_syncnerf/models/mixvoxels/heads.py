"""The two heads that turn a dynamic sample's trunk features into per-frame density and colour
(through kernels/allframes.FrameHead): flat query tables, one row per (slot, frame).

* :class:`PerFrameHead` (MixVoxels, and stage 1 of Sync-MixVoxels): one learned query and bias
  per frame (the reference's last linear layer ``width -> T`` / ``width -> 3 T``); one slot.
* :class:`TimeFunction` (Sync-MixVoxels): the query of camera k at frame f is
  ``MLP(gamma(t_f + offset_k))`` (kernels/timefn.py), one slot per camera, no bias; with
  ``grid_features > 0`` the input also holds a learned per-frame latent read at ``t_f + offset_k``
  (one grid shared by both MLPs). Its backward carries the table gradient through the MLPs and
  the encoding into ``offsets.grad``.
"""
from __future__ import annotations

import numpy as np
import taichi as ti

from taichi_syncnerf import runtime, timeline
from taichi_syncnerf.kernels import mixglue, timefn
from taichi_syncnerf.kernels.mlp import MLP, flatten
from taichi_syncnerf.models.mixvoxels.parts import xavier_layers


@ti.data_oriented
class PerFrameHead:
    def __init__(self, n_frames: int, width: int, seed: int):
        F, D = int(n_frames), int(width)
        self.F, self.D, self.n_slots = F, D, 1
        self.zs = ti.field(float, shape=F * (D + 1), needs_grad=True)
        self.zc = ti.field(float, shape=F * 3 * (D + 1), needs_grad=True)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(D)  # nn.Linear default, as the reference's last layer
        self.zs.from_numpy(rng.uniform(-bound, bound, self.zs.shape[0]).astype(runtime.np_float()))
        self.zc.from_numpy(rng.uniform(-bound, bound, self.zc.shape[0]).astype(runtime.np_float()))

    def params(self) -> dict:
        return {"zs": self.zs, "zc": self.zc}

    def compute(self, offsets) -> None:
        """Tables are the parameters themselves."""

    def backward(self, offsets) -> None:
        """The head's table gradient already is the parameters' gradient."""

    def rows_at(self, frames: np.ndarray):
        """Query rows at fractional frame indices (Q,), interpolated linearly between frames:
        ``(Q, D + 1)`` and ``(Q, 3 (D + 1))``."""
        f = np.clip(np.asarray(frames, np.float64), 0, self.F - 1)
        f0 = np.minimum(np.floor(f).astype(int), max(self.F - 2, 0))
        w = (f - f0)[:, None]
        f1 = np.minimum(f0 + 1, self.F - 1)
        zs = self.zs.to_numpy().reshape(self.F, -1)
        zc = self.zc.to_numpy().reshape(self.F, -1)
        return (1 - w) * zs[f0] + w * zs[f1], (1 - w) * zc[f0] + w * zc[f1]


@ti.data_oriented
class TimeFunction:
    def __init__(self, n_cameras: int, n_frames: int, width: int, n_freqs: int, hidden: int, max_eval_rows: int,
                 seed: int, grid_features: int = 0):
        C, F, D, L, G = int(n_cameras), int(n_frames), int(width), int(n_freqs), int(grid_features)
        self.C, self.F, self.D, self.L, self.G, self.n_slots = C, F, D, L, G, C
        rows = max(C * F, int(max_eval_rows))
        self.mlp_s = MLP(2 * L + G, [int(hidden)], D, rows, seed=seed)
        self.mlp_c = MLP(2 * L + G, [int(hidden)], 3 * D, rows, seed=seed + 1)
        for k, mlp in enumerate((self.mlp_s, self.mlp_c)):
            mlp.set_params(flatten(xavier_layers(mlp.dims, np.sqrt(2.0), 0.3, seed + 7 + k)))
        self.grid = ti.field(float, shape=F * G, needs_grad=True) if G > 0 else None
        self.tab_s = ti.field(float, shape=(rows, 2 * L + G), needs_grad=True)
        self.tab_c = ti.field(float, shape=(rows, 2 * L + G), needs_grad=True)
        self.out_s = ti.field(float, shape=(rows, D), needs_grad=True)
        self.out_c = ti.field(float, shape=(rows, 3 * D), needs_grad=True)
        self.zs = ti.field(float, shape=C * F * (D + 1), needs_grad=True)
        self.zc = ti.field(float, shape=C * F * 3 * (D + 1), needs_grad=True)
        self.dt = ti.field(float, shape=C * F)
        self.times = ti.field(float, shape=rows)

    def params(self) -> dict:
        out = {"mlp_s": self.mlp_s.params, "mlp_c": self.mlp_c.params}
        if self.grid is not None:
            out["grid"] = self.grid
        return out

    def compute(self, offsets) -> None:
        """Tables of every (camera, frame) with the current offsets; zeroes the table gradients."""
        C, F, L, D, G = self.C, self.F, self.L, self.D, self.G
        for tab, mlp, out, z, ch in ((self.tab_s, self.mlp_s, self.out_s, self.zs, 1),
                                     (self.tab_c, self.mlp_c, self.out_c, self.zc, 3)):
            timefn.time_encoding(offsets.params, tab, C, F, L, 1, timeline.T_SPAN)
            if G:
                timefn.time_grid_encoding(offsets.params, self.grid, tab, C, F, G, 2 * L, 1, timeline.T_SPAN)
            mlp.forward(tab, out, C * F)
            mixglue.pack_rows(out, z, C * F, ch, D)
            z.grad.fill(0.0)

    def backward(self, offsets) -> None:
        """From the tables' gradient: MLP gradients, and ``offsets.grad += dL/doffsets``."""
        C, F, L, D, G = self.C, self.F, self.L, self.D, self.G
        for tab, mlp, out, z, ch in ((self.tab_s, self.mlp_s, self.out_s, self.zs, 1),
                                     (self.tab_c, self.mlp_c, self.out_c, self.zc, 3)):
            mixglue.pack_rows_backward(out, z, C * F, ch, D)
            mlp.backward(tab, out, C * F)
            timefn.time_encoding_backward(offsets.params, tab, self.dt, C, F, L, 1, timeline.T_SPAN)
            if G:
                timefn.time_grid_encoding_backward(offsets.params, self.grid, tab, self.dt, C, F, G, 2 * L, 1,
                                                   timeline.T_SPAN)

    def rows_at(self, times: np.ndarray):
        """Query rows at normalised times (offsets included) (Q,): ``(Q, D + 1)``, ``(Q, 3 (D + 1))``."""
        t = np.asarray(times, np.float64)
        Q = len(t)
        if Q > self.times.shape[0]:
            raise ValueError(f"{Q} distinct (camera, time) pairs in one batch exceed {self.times.shape[0]}")
        pad = np.zeros(self.times.shape[0])
        pad[:Q] = t
        self.times.from_numpy(pad.astype(runtime.np_float()))
        outs = []
        for tab, mlp, out in ((self.tab_s, self.mlp_s, self.out_s), (self.tab_c, self.mlp_c, self.out_c)):
            timefn.time_encoding_at(self.times, tab, Q, self.L, timeline.T_LO, timeline.T_SPAN)
            if self.G:
                timefn.time_grid_encoding_at(self.times, self.grid, tab, Q, self.F, self.G, 2 * self.L, timeline.T_LO,
                                             timeline.T_SPAN)
            mlp.forward(tab, out, Q)
            o = out.to_numpy()[:Q].reshape(Q, -1, self.D)
            outs.append(np.concatenate([o, np.zeros((Q, o.shape[1], 1))], axis=2).reshape(Q, -1))
        return outs[0], outs[1]
