"""Float64 numpy twins of kernels/allframes.py."""
import numpy as np


def head(hs, hc, zs, zc, slot, n_frames, scale=1.0, activation="relu"):
    """sigma (N, F), rgb (N, F, 3) of the per-(slot, frame) head (density ``activation``: relu or
    softplus)."""
    hs, hc = np.asarray(hs, np.float64), np.asarray(hc, np.float64)
    D = hs.shape[1]
    rows = np.asarray(slot)[:, None] * n_frames + np.arange(n_frames)[None, :]  # (N, F)
    zsr = np.asarray(zs, np.float64)[rows]  # (N, F, D+1)
    a = np.einsum("nd,nfd->nf", hs, zsr[..., :D]) + zsr[..., D]
    sigma = scale * (np.logaddexp(0.0, a) if activation == "softplus" else np.maximum(a, 0.0))
    zcr = np.asarray(zc, np.float64)[rows].reshape(len(hs), n_frames, 3, D + 1)
    pre = np.einsum("nd,nfcd->nfc", hc, zcr[..., :D]) + zcr[..., D]
    return sigma, 1.0 / (1.0 + np.exp(-pre))


def render(t0, t1, ray_start, ray_count, rays, dyn_index, sigma, rgb, sigma_st, rgb_st, background):
    """Colour (n_rays, F, 3) of the dynamic rays ``rays`` for every frame."""
    F = sigma.shape[1]
    out = np.zeros((len(rays), F, 3))
    for j, r in enumerate(rays):
        for f in range(F):
            T, acc = 1.0, np.zeros(3)
            for s in range(ray_start[r], ray_start[r] + ray_count[r]):
                i = dyn_index[s]
                sg, c = (sigma[i, f], rgb[i, f]) if i >= 0 else (sigma_st[s], rgb_st[s])
                a = 1.0 - np.exp(-sg * (t1[s] - t0[s]))
                acc += T * a * c
                T *= 1.0 - a
            out[j, f] = acc + T * np.asarray(background)
    return out
