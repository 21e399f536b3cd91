"""Small parameter losses (value + gradient accumulation) and element-wise activations.

Losses return their value as a Python float and ACCUMULATE (``+=``) their gradient into the
parameter field's ``.grad``:

* :func:`offset_l1` - ``weight * sum_k mask_k |d_k|`` on per-camera time offsets (sub-gradient
  ``sign(d_k)``, 0 at 0).
* :func:`l2_penalty` - ``weight * sum_i p_i^2`` (weight decay as a loss).

Activations map ``y[i, j] = f(x[i, col + j])`` for rows ``i < n`` and ``j < width`` where
``width`` is ``y.shape[1]`` (1 when ``y`` is 1-D; a 1-D ``x`` needs ``col == 0``). Their backward
OVERWRITES ``x.grad`` at exactly those entries from ``y.grad`` (other entries untouched):

* trunc_exp (K-Planes' density activation): forward ``exp(min(x + bias, 15))``, backward
  ``dy * exp(clamp(x + bias, -15, 15))`` (a truncated derivative by design; ``bias = -1``).
* sigmoid: numerically stable forward, backward ``dy * s (1 - s)``.

:func:`softplus` is a ``ti.func`` for other kernels (the MixVoxels dynamic density, the BCE).

Example::

    trunc_exp_forward(mlp_out, sigma, n, col=0)         # sigma (N,) from column 0 of (N, 16)
    ... dL/dsigma in sigma.grad ...
    trunc_exp_backward(mlp_out, sigma, n, col=0)       # writes mlp_out.grad[:, 0]
"""
import taichi as ti

EXP_CLAMP = 15.0
_TRUNC_EXP, _SIGMOID = 0, 1


@ti.kernel
def _offset_l1(d: ti.template(), mask: ti.template(), use_mask: ti.template(), weight: float) -> float:
    total = 0.0
    for k in d:
        active = 1
        if ti.static(use_mask):
            active = mask[k]
        if active != 0:
            total += weight * ti.abs(d[k])
            s = 0.0
            if d[k] > 0.0:
                s = 1.0
            elif d[k] < 0.0:
                s = -1.0
            d.grad[k] += weight * s
    return total


@ti.kernel
def _l2_penalty(p: ti.template(), weight: float) -> float:
    total = 0.0
    for k in p:
        total += weight * p[k] * p[k]
        p.grad[k] += 2.0 * weight * p[k]
    return total


def offset_l1(offsets, weight: float, mask=None) -> float:
    """L1 penalty on time offsets.

    offsets: field (K,) with ``needs_grad``; ``offsets.grad += weight * sign(d) * mask``.
    mask: optional int field (K,); 0 excludes a camera (e.g. the fixed reference camera).
    Returns ``weight * sum_k mask_k |d_k|``.
    """
    if len(offsets.shape) != 1 or (mask is not None and tuple(mask.shape) != tuple(offsets.shape)):
        raise ValueError("offsets must be a 1-D field and mask a field of the same shape")
    return float(_offset_l1(offsets, offsets if mask is None else mask, mask is not None, weight))


def l2_penalty(param, weight: float) -> float:
    """``weight * sum(p^2)`` over a flat field (P,); ``param.grad += 2 * weight * p``."""
    if len(param.shape) != 1:
        raise ValueError("param must be a flat 1-D field")
    return float(_l2_penalty(param, weight))


# ---------------------------------------------------------------------- activations
@ti.func
def _load(f: ti.template(), i, j):
    v = 0.0
    if ti.static(len(f.shape) == 1):
        v = f[i]
    else:
        v = f[i, j]
    return v


@ti.func
def _store(f: ti.template(), i, j, v):
    if ti.static(len(f.shape) == 1):
        f[i] = v
    else:
        f[i, j] = v


@ti.func
def softplus(x):
    """``log(1 + exp(x))`` (a ``ti.func``) without the cancellation of ``log(1 + tiny)``, which
    returns an exact 0 in f32 for x below about -17 (a flat function, so no gradient)."""
    e = ti.exp(-ti.abs(x))
    tail = ti.log(1.0 + e)
    if e < 1e-3:
        tail = e * (1.0 - e * (0.5 - e * (1.0 / 3.0 - 0.25 * e)))
    return ti.max(x, 0.0) + tail


@ti.func
def _sigmoid(x):
    e = ti.exp(-ti.abs(x))
    return ti.select(x >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


@ti.kernel
def _act_forward(x: ti.template(), y: ti.template(), n: ti.i32, col: ti.i32, width: ti.i32,
                 op: ti.template(), bias: float):
    for i, j in ti.ndrange(n, width):
        v = _load(x, i, col + j)
        out = 0.0
        if ti.static(op == _TRUNC_EXP):
            out = ti.exp(ti.min(v + bias, EXP_CLAMP))
        else:
            out = _sigmoid(v)
        _store(y, i, j, out)


@ti.kernel
def _act_backward(x: ti.template(), y: ti.template(), n: ti.i32, col: ti.i32, width: ti.i32,
                  op: ti.template(), bias: float):
    for i, j in ti.ndrange(n, width):
        v = _load(x, i, col + j)
        dy = _load(y.grad, i, j)
        dx = 0.0
        if ti.static(op == _TRUNC_EXP):
            dx = dy * ti.exp(ti.min(ti.max(v + bias, -EXP_CLAMP), EXP_CLAMP))
        else:
            s = _sigmoid(v)
            dx = dy * s * (1.0 - s)
        _store(x.grad, i, col + j, dx)


def _width(x, y, n: int, col: int) -> int:
    if len(x.shape) not in (1, 2) or len(y.shape) not in (1, 2):
        raise ValueError(f"x and y must be 1-D or 2-D fields, got {x.shape} and {y.shape}")
    width = 1 if len(y.shape) == 1 else y.shape[1]
    x_cols = 1 if len(x.shape) == 1 else x.shape[1]
    if col < 0 or (len(x.shape) == 1 and col != 0) or col + width > x_cols:
        raise ValueError(f"columns {col}..{col + width - 1} do not fit x of shape {x.shape}")
    if n < 0 or n > x.shape[0] or n > y.shape[0]:
        raise ValueError(f"n={n} exceeds the rows of x {x.shape} or y {y.shape}")
    return width


def trunc_exp_forward(x, y, n: int, col: int = 0, bias: float = -1.0) -> None:
    """``y[i, j] = exp(min(x[i, col + j] + bias, 15))``; x: (N,) or (N, C), y: (N,) or (N, W)."""
    w = _width(x, y, n, col)
    if n > 0:
        _act_forward(x, y, n, col, w, _TRUNC_EXP, bias)


def trunc_exp_backward(x, y, n: int, col: int = 0, bias: float = -1.0) -> None:
    """``x.grad[i, col + j] = y.grad[i, j] * exp(clamp(x[i, col + j] + bias, -15, 15))``."""
    w = _width(x, y, n, col)
    if n > 0:
        _act_backward(x, y, n, col, w, _TRUNC_EXP, bias)


def sigmoid_forward(x, y, n: int, col: int = 0) -> None:
    """``y[i, j] = sigmoid(x[i, col + j])``; shapes as :func:`trunc_exp_forward`."""
    w = _width(x, y, n, col)
    if n > 0:
        _act_forward(x, y, n, col, w, _SIGMOID, 0.0)


def sigmoid_backward(x, y, n: int, col: int = 0) -> None:
    """``x.grad[i, col + j] = y.grad[i, j] * s (1 - s)``, ``s = sigmoid(x[i, col + j])``."""
    w = _width(x, y, n, col)
    if n > 0:
        _act_backward(x, y, n, col, w, _SIGMOID, 0.0)
