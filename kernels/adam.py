"""Adam over parameter groups of flat Taichi fields, with gradient zeroing fused into the update.

Each group is one flat field ``param`` (shape ``(P,)``, ``needs_grad=True``) with its own learning
rate, betas, eps, step counter and ``frozen`` switch, and optionally a per-element mask (entries
with mask 0 are held fixed: no update, no moment change; e.g. the reference camera's time offset).
The update is PyTorch's Adam (no weight decay, no amsgrad)::

    m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2 ;  t = group step count (after increment)
    p -= lr * lr_scale / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

``step()`` updates every non-frozen group and zeroes every group's gradient (frozen ones too) in
the same kernel pass. The kernel compiles once per distinct field (Taichi ``ti.template()``), which
is fine for the handful of groups of a model.

Moments: by default every group's ``m`` and ``v`` are allocated with the optimiser. With
``Adam(groups, lazy_moments=True)`` a group's moments are allocated at its first update (or when a
state with a non-zero step count is loaded into it), each group's pair in an SNode tree of its own
that :meth:`Adam.free` destroys: a group that stays frozen (or an optimiser that never steps, as
when a model is only rendered) holds no moments, and a model can release the moments of its large
groups before it allocates their replacements. Until then its moments read as zeros (what they
would hold), so the updates are the same either way.

Example::

    opt = Adam([ParamGroup("field", model.params, lr=1e-2),
                ParamGroup("offsets", offsets, lr=1e-3, mask=trainable_cams)])
    ... backward passes accumulate into model.params.grad, offsets.grad ...
    opt.step(lr_scale=schedule(step))
    np.savez(path, **opt.state_dict())
"""
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import taichi as ti

STATE_VERSION = 1


@dataclass
class ParamGroup:
    """One optimised flat field. ``mask``: optional bool/int array (P,); 0 holds an entry fixed."""

    name: str
    param: Any
    lr: float
    betas: Tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-15
    frozen: bool = False
    mask: Optional[np.ndarray] = None


@ti.kernel
def _adam_update(p: ti.template(), m: ti.template(), v: ti.template(), mask: ti.template(),
                 use_mask: ti.template(), step_size: float, b1: float, b2: float,
                 inv_sqrt_bc2: float, eps: float):
    for i in p:
        g = p.grad[i]
        p.grad[i] = 0.0
        active = 1
        if ti.static(use_mask):
            active = mask[i]
        if active != 0:
            mi = b1 * m[i] + (1.0 - b1) * g
            vi = b2 * v[i] + (1.0 - b2) * g * g
            m[i] = mi
            v[i] = vi
            p[i] -= step_size * mi / (ti.sqrt(vi) * inv_sqrt_bc2 + eps)


@ti.kernel
def _zero_grad(p: ti.template()):
    for i in p:
        p.grad[i] = 0.0


def _has_grad(field) -> bool:
    try:
        return bool(field.snode.ptr.has_adjoint())
    except AttributeError:
        return False


class _State:
    def __init__(self, group: ParamGroup, lazy: bool = False):
        p = group.param
        if len(p.shape) != 1:
            raise ValueError(f"group {group.name!r}: param must be a flat 1-D field, got shape {p.shape}")
        if not _has_grad(p):
            raise ValueError(f"group {group.name!r}: param field needs needs_grad=True")
        b1, b2 = group.betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0) or group.eps < 0 or group.lr < 0:
            raise ValueError(f"group {group.name!r}: need 0 <= betas < 1, eps >= 0, lr >= 0")
        self.group = group
        self.size = p.shape[0]
        self.dtype = p.dtype
        self.m = self.v = self.tree = None
        if not lazy:
            self.m = ti.field(p.dtype, shape=self.size)
            self.v = ti.field(p.dtype, shape=self.size)
        self.step = 0
        self.mask = None
        if group.mask is not None:
            self.set_mask(group.mask)

    @property
    def allocated(self) -> bool:
        return self.m is not None

    def allocate(self) -> None:
        """The moments (zeros) in an SNode tree of their own (lazy moments), if not yet there."""
        if self.m is not None:
            return
        fb = ti.FieldsBuilder()
        self.m = ti.field(self.dtype)
        self.v = ti.field(self.dtype)
        fb.dense(ti.i, self.size).place(self.m)
        fb.dense(ti.i, self.size).place(self.v)
        self.tree = fb.finalize()
        self.m.fill(0.0)
        self.v.fill(0.0)

    def free(self) -> None:
        """Destroy lazily allocated moments (they read as zeros again)."""
        if self.tree is not None:
            self.tree.destroy()
            self.m = self.v = self.tree = None

    def moment_arrays(self, to_numpy=None) -> tuple:
        if self.m is None:
            return np.zeros(self.size, _np_dtype(self)), np.zeros(self.size, _np_dtype(self))
        to_numpy = to_numpy or (lambda f: f.to_numpy())
        return to_numpy(self.m), to_numpy(self.v)

    def set_mask(self, mask) -> None:
        if mask is None:
            self.mask = None
            return
        mask = np.asarray(mask)
        if mask.shape != (self.size,):
            raise ValueError(f"group {self.group.name!r}: mask shape {mask.shape} != ({self.size},)")
        if self.mask is None:
            self.mask = ti.field(ti.i32, shape=self.size)
        self.mask.from_numpy((mask != 0).astype(np.int32))


class Adam:
    """Adam over named parameter groups (see the module docstring).

    groups: sequence of :class:`ParamGroup` (or dicts with the same keys); names must be unique
        and may not contain ``/``.
    lazy_moments: allocate each group's moments at its first update, in SNode trees that
        :meth:`free` destroys (see the module docstring); default: with the optimiser.
    """

    def __init__(self, groups: Sequence, lazy_moments: bool = False):
        self.lazy_moments = bool(lazy_moments)
        self._states = {}
        seen = set()
        for g in groups:
            g = g if isinstance(g, ParamGroup) else ParamGroup(**g)
            if not g.name or "/" in g.name or g.name in self._states:
                raise ValueError(f"group names must be unique, non-empty and without '/': {g.name!r}")
            if id(g.param) in seen:
                raise ValueError(f"group {g.name!r}: field already belongs to another group")
            seen.add(id(g.param))
            self._states[g.name] = _State(g, self.lazy_moments)

    # ------------------------------------------------------------------ access
    @property
    def names(self):
        return list(self._states)

    def group(self, name: str) -> ParamGroup:
        return self._get(name).group

    def step_count(self, name: str) -> int:
        return self._get(name).step

    def _get(self, name: str) -> _State:
        if name not in self._states:
            raise KeyError(f"no parameter group {name!r}; groups: {', '.join(self._states)}")
        return self._states[name]

    def set_lr(self, name: str, lr: float) -> None:
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self._get(name).group.lr = float(lr)

    def freeze(self, name: str, frozen: bool = True) -> None:
        self._get(name).group.frozen = bool(frozen)

    def set_mask(self, name: str, mask) -> None:
        """Per-element mask (P,) for group ``name``; 0 holds the entry fixed. ``None`` clears it."""
        self._get(name).set_mask(mask)

    # ------------------------------------------------------------------ updates
    def step(self, lr_scale: float = 1.0) -> None:
        """One Adam step on every non-frozen group (learning rate ``lr * lr_scale``); zeroes the
        gradients of ALL groups."""
        if lr_scale < 0:
            raise ValueError(f"lr_scale must be >= 0, got {lr_scale}")
        for s in self._states.values():
            g = s.group
            if g.frozen:
                _zero_grad(g.param)
                continue
            s.allocate()
            s.step += 1
            b1, b2 = g.betas
            step_size = g.lr * lr_scale / (1.0 - b1**s.step)
            inv_sqrt_bc2 = 1.0 / np.sqrt(1.0 - b2**s.step)
            mask = s.mask if s.mask is not None else g.param
            _adam_update(g.param, s.m, s.v, mask, s.mask is not None, step_size, b1, b2,
                         inv_sqrt_bc2, g.eps)

    def moments(self, name: str) -> tuple:
        """``(m, v)`` of group ``name`` as numpy arrays (P,)."""
        return self._get(name).moment_arrays()

    def moments_bytes(self) -> int:
        """Bytes of the moments allocated now (every group's, or with lazy moments those updated)."""
        return sum(2 * s.size * np.dtype(_np_dtype(s)).itemsize for s in self._states.values() if s.allocated)

    def free(self) -> None:
        """Release the lazily allocated moments of every group (``lazy_moments`` only; the moments
        then read as zeros and the step counts restart at 0). The optimiser stays usable."""
        if not self.lazy_moments:
            raise ValueError("free() needs an optimiser with lazy_moments=True")
        for s in self._states.values():
            s.free()
            s.step = 0

    def set_moments(self, name: str, m, v, step: int | None = None) -> None:
        """Replace group ``name``'s moments (arrays (P,)) and, when given, its step count; how a model
        whose rows are added and removed (Gaussians) keeps the moments of the rows it keeps."""
        s = self._get(name)
        m, v = np.asarray(m), np.asarray(v)
        if m.shape != (s.size,) or v.shape != (s.size,):
            raise ValueError(f"group {name!r}: moments of shape {m.shape}, {v.shape}, expected ({s.size},)")
        dtype = _np_dtype(s)
        s.allocate()
        s.m.from_numpy(m.astype(dtype, copy=False))
        s.v.from_numpy(v.astype(dtype, copy=False))
        if step is not None:
            s.step = int(step)

    def zero_grad(self) -> None:
        for s in self._states.values():
            _zero_grad(s.group.param)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, to_numpy=None) -> dict:
        """Plain data for ``np.savez``: ``{name}/m``, ``{name}/v`` arrays, ``{name}/step`` int,
        ``{name}/lr`` float, ``{name}/frozen`` bool, and ``adam_version``. ``to_numpy``: how a
        moment field becomes an array (default ``field.to_numpy()``); moments not allocated (lazy
        moments) are zeros."""
        out = {"adam_version": STATE_VERSION}
        for name, s in self._states.items():
            out[f"{name}/m"], out[f"{name}/v"] = s.moment_arrays(to_numpy)
            out[f"{name}/step"] = int(s.step)
            out[f"{name}/lr"] = float(s.group.lr)
            out[f"{name}/frozen"] = bool(s.group.frozen)
        return out

    def load_state_dict(self, state) -> None:
        """Restore from :meth:`state_dict` output (values may be 0-d numpy arrays, as from
        ``np.load``). The groups must match by name and size; raises ``ValueError`` otherwise."""
        version = int(np.asarray(state.get("adam_version", -1)))
        if version != STATE_VERSION:
            raise ValueError(f"optimizer state version {version} is not {STATE_VERSION}")
        names = {k.split("/", 1)[0] for k in state if "/" in k}
        if names != set(self._states):
            raise ValueError(f"optimizer state has groups {sorted(names)}, expected {sorted(self._states)}")
        for name, s in self._states.items():
            try:
                m, v = np.asarray(state[f"{name}/m"]), np.asarray(state[f"{name}/v"])
                step = int(np.asarray(state[f"{name}/step"]))
                float(np.asarray(state[f"{name}/lr"]))          # present and numeric (read in the second pass)
                bool(np.asarray(state[f"{name}/frozen"]))
            except KeyError as e:
                raise ValueError(f"optimizer state misses {e.args[0]!r}") from None
            if m.shape != (s.size,) or v.shape != (s.size,):
                raise ValueError(f"group {name!r}: state size {m.shape} does not match ({s.size},)")
            if step < 0:
                raise ValueError(f"group {name!r}: negative step count {step}")
        for name, s in self._states.items():
            # one moment array in memory at a time (``state`` may read them from a file on lookup)
            dtype = _np_dtype(s)
            step = int(np.asarray(state[f"{name}/step"]))
            needed = s.allocated or step > 0 or any(np.asarray(state[f"{name}/{k}"]).any() for k in ("m", "v"))
            if needed:
                s.allocate()
                for k in ("m", "v"):
                    getattr(s, k).from_numpy(np.asarray(state[f"{name}/{k}"]).astype(dtype, copy=False))
            s.step = step
            s.group.lr = float(np.asarray(state[f"{name}/lr"]))
            s.group.frozen = bool(np.asarray(state[f"{name}/frozen"]))


def _np_dtype(field):
    """numpy dtype of a field (or of a group state's moments)."""
    return np.float64 if field.dtype == ti.f64 else np.float32
