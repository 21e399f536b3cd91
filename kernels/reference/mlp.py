"""float64 numpy twin of kernels/mlp.py: a ReLU MLP with a linear output, forward and backward.

``layers`` is ``[(W (out_l, in_l), b (out_l,)), ...]`` in the mathematical orientation (what
``MLP.layers()`` returns); ``inp`` is ``(n, in_dim)``.
"""
from typing import List, Sequence, Tuple

import numpy as np

Layers = Sequence[Tuple[np.ndarray, np.ndarray]]


def _activations(layers: Layers, inp: np.ndarray) -> List[np.ndarray]:
    """[inp, h_1, ..., h_{L-1}, out]: hidden h after ReLU, out linear."""
    acts = [np.asarray(inp, dtype=np.float64)]
    for l, (w, b) in enumerate(layers):
        z = acts[-1] @ np.asarray(w, np.float64).T + np.asarray(b, np.float64)
        acts.append(np.maximum(z, 0.0) if l < len(layers) - 1 else z)
    return acts


def forward(layers: Layers, inp: np.ndarray) -> np.ndarray:
    """out (n, out_dim) = MLP(inp (n, in_dim))."""
    return _activations(layers, inp)[-1]


def backward(layers: Layers, inp: np.ndarray, out_grad: np.ndarray):
    """Gradients of ``sum(out * out_grad)``.

    Returns ``([(dW (out_l, in_l), db (out_l,)), ...], d_inp (n, in_dim))``. ReLU'(0) is taken as 0.
    """
    acts = _activations(layers, inp)
    g = np.asarray(out_grad, dtype=np.float64)
    grads = [None] * len(layers)
    for l in range(len(layers) - 1, -1, -1):
        w = np.asarray(layers[l][0], np.float64)
        grads[l] = (g.T @ acts[l], g.sum(axis=0))
        g = g @ w
        if l > 0:
            g = g * (acts[l] > 0.0)
    return grads, g
