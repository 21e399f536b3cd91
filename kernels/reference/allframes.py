"""Float64 numpy twins of kernels/allframes.py."""
import numpy as np


def head(hs, hc, zs, zc, slot, n_frames, scale=1.0, activation="relu", sharpness=1.0, shift=0.0):
    """sigma (N, F), rgb (N, F, 3) of the per-(slot, frame) head (density ``activation``: relu or
    ``softplus(sharpness a) / sharpness``, of ``a`` + ``shift``)."""
    hs, hc = np.asarray(hs, np.float64), np.asarray(hc, np.float64)
    D = hs.shape[1]
    rows = np.asarray(slot)[:, None] * n_frames + np.arange(n_frames)[None, :]  # (N, F)
    zsr = np.asarray(zs, np.float64)[rows]  # (N, F, D+1)
    a = np.einsum("nd,nfd->nf", hs, zsr[..., :D]) + zsr[..., D] + shift
    b = float(sharpness)
    sigma = scale * (np.logaddexp(0.0, b * a) / b if activation == "softplus" else np.maximum(a, 0.0))
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


def head_backward(hs, hc, zs, zc, slot, n_frames, d_sigma, d_rgb, scale=1.0, activation="relu", sharpness=1.0):
    """Gradients ``(dhs, dhc, dzs, dzc)`` of ``L = sum(sigma * d_sigma) + sum(rgb * d_rgb)`` of
    :func:`head` (``dzs``, ``dzc`` shaped like ``zs``, ``zc``: (K F, D + 1), (K F, 3 (D + 1)))."""
    hs, hc = np.asarray(hs, np.float64), np.asarray(hc, np.float64)
    N, D = hs.shape
    zs, zc = np.asarray(zs, np.float64).reshape(-1, D + 1), np.asarray(zc, np.float64).reshape(-1, 3 * (D + 1))
    rows = np.asarray(slot)[:, None] * n_frames + np.arange(n_frames)[None, :]
    zsr, zcr = zs[rows], zc[rows].reshape(N, n_frames, 3, D + 1)
    a = np.einsum("nd,nfd->nf", hs, zsr[..., :D]) + zsr[..., D]
    da = 1.0 / (1.0 + np.exp(-sharpness * a)) if activation == "softplus" else (a > 0).astype(np.float64)
    gs = np.asarray(d_sigma, np.float64) * scale * da  # (N, F)
    pre = np.einsum("nd,nfcd->nfc", hc, zcr[..., :D]) + zcr[..., D]
    v = 1.0 / (1.0 + np.exp(-pre))
    gc = np.asarray(d_rgb, np.float64) * v * (1 - v)  # (N, F, 3)
    dhs = np.einsum("nf,nfd->nd", gs, zsr[..., :D])
    dhc = np.einsum("nfc,nfcd->nd", gc, zcr[..., :D])
    dzs, dzc = np.zeros_like(zs), np.zeros_like(zc).reshape(-1, 3, D + 1)
    np.add.at(dzs, rows, np.concatenate([gs[..., None] * hs[:, None, :], gs[..., None]], -1))
    np.add.at(dzc, rows, np.concatenate([gc[..., None] * hc[:, None, None, :], gc[..., None]], -1))
    return dhs, dhc, dzs, dzc.reshape(zc.shape)


def render_backward(t0, t1, ray_start, ray_count, rays, dyn_index, sigma, rgb, sigma_st, rgb_st, background,
                    d_colour):
    """Gradients ``(dsigma, drgb)`` of the dynamic values of :func:`render` for
    ``L = sum(colour * d_colour)`` (the static values are held fixed)."""
    dsig, drgb = np.zeros(np.shape(sigma)), np.zeros(np.shape(rgb))
    bg = np.asarray(background, np.float64)
    for j, r in enumerate(rays):
        idx = np.arange(ray_start[r], ray_start[r] + ray_count[r])
        delta = np.asarray(t1, np.float64)[idx] - np.asarray(t0, np.float64)[idx]
        for f in range(np.shape(sigma)[1]):
            di = np.asarray(dyn_index)[idx]
            sg = np.where(di >= 0, np.asarray(sigma)[np.maximum(di, 0), f], np.asarray(sigma_st)[idx])
            c = np.where((di >= 0)[:, None], np.asarray(rgb)[np.maximum(di, 0), f], np.asarray(rgb_st)[idx])
            alpha = 1.0 - np.exp(-sg * delta)
            T = np.concatenate([[1.0], np.cumprod(1.0 - alpha)])  # T_0 .. T_end
            w = T[:-1] * alpha
            dC = np.asarray(d_colour, np.float64)[j, f]
            g = c @ dC  # (K,)
            gw = g * w
            suffix = np.concatenate([np.cumsum(gw[::-1])[::-1][1:], [0.0]])  # sum_{j > k} g_j w_j
            ds = delta * (g * T[1:] - suffix - (dC @ bg) * T[-1])
            for k in np.flatnonzero(di >= 0):
                dsig[di[k], f] = ds[k]
                drgb[di[k], f] = w[k] * dC
    return dsig, drgb
