"""float64 numpy twin of kernels/adam.py (PyTorch's Adam, textbook form)."""
import numpy as np


def adam_update(p, g, m, v, t, lr, betas=(0.9, 0.99), eps=1e-15, mask=None):
    """One Adam step at step count ``t`` (1-based). Returns new ``(p, m, v)``; entries with
    ``mask == 0`` keep their parameter and moments."""
    b1, b2 = betas
    m_new = b1 * m + (1.0 - b1) * g
    v_new = b2 * v + (1.0 - b2) * g * g
    m_hat = m_new / (1.0 - b1**t)
    v_hat = v_new / (1.0 - b2**t)
    p_new = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    if mask is not None:
        keep = np.asarray(mask) == 0
        p_new = np.where(keep, p, p_new)
        m_new = np.where(keep, m, m_new)
        v_new = np.where(keep, v, v_new)
    return p_new, m_new, v_new


class Adam:
    """groups: dict name -> dict(param=array, lr, betas, eps, frozen, mask); arrays are updated
    in place by :meth:`step` given a dict name -> gradient array."""

    def __init__(self, groups):
        self.groups = groups
        self.state = {k: dict(m=np.zeros_like(g["param"]), v=np.zeros_like(g["param"]), step=0)
                      for k, g in groups.items()}

    def step(self, grads, lr_scale=1.0):
        for name, g in self.groups.items():
            if g.get("frozen", False):
                continue
            s = self.state[name]
            s["step"] += 1
            g["param"], s["m"], s["v"] = adam_update(
                g["param"], grads[name], s["m"], s["v"], s["step"], g["lr"] * lr_scale,
                g.get("betas", (0.9, 0.99)), g.get("eps", 1e-15), g.get("mask"))
