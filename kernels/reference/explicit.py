"""float64 numpy twin of kernels/explicit.py (K-Planes' explicit colour decoder).

Written per ray with matrix products: for ray r with sample rows ``idx`` and basis ``B_r`` (3, D)
(``B_r[c, f] = basis[r, c * D + f]``)::

    out[idx]         = feat[idx] @ B_r.T
    d_feat[idx]      = d_out[idx] @ B_r
    d_basis[r]       = (d_out[idx].T @ feat[idx]).ravel()      (channel-major, like basis)
"""
import numpy as np


def _rays(ray_start, ray_count, n_rays):
    for r in range(n_rays):
        a, c = int(ray_start[r]), int(ray_count[r])
        yield r, np.arange(a, a + c)


def explicit_color_forward(feat, basis, ray_start, ray_count, n_rays, dim):
    """feat (S, >= dim), basis (>= n_rays, >= 3 * dim) -> out (S, 3); rows of other samples are 0."""
    feat = np.asarray(feat, dtype=np.float64)[:, :dim]
    basis = np.asarray(basis, dtype=np.float64)
    out = np.zeros((len(feat), 3))
    for r, idx in _rays(ray_start, ray_count, n_rays):
        out[idx] = feat[idx] @ basis[r, :3 * dim].reshape(3, dim).T
    return out


def explicit_color_backward(feat, basis, ray_start, ray_count, d_out, n_rays, dim):
    """Gradients of ``sum(d_out * out)``: returns d_feat (S, dim) (0 for samples of no ray < n_rays)
    and d_basis (n_rays, 3 * dim)."""
    feat = np.asarray(feat, dtype=np.float64)[:, :dim]
    basis = np.asarray(basis, dtype=np.float64)
    d_out = np.asarray(d_out, dtype=np.float64)[:, :3]
    d_feat = np.zeros_like(feat)
    d_basis = np.zeros((n_rays, 3 * dim))
    for r, idx in _rays(ray_start, ray_count, n_rays):
        d_feat[idx] = d_out[idx] @ basis[r, :3 * dim].reshape(3, dim)
        d_basis[r] = (d_out[idx].T @ feat[idx]).ravel()
    return d_feat, d_basis
