"""float64 numpy twin of kernels/render.py (VolumeRenderer.forward / backward)."""
import numpy as np


def forward(sigma, rgb, t0, t1, ray_start, ray_count, background=(0.0, 0.0, 0.0), threshold=1e-4):
    """Volume rendering of packed samples. ``rgb`` may be None (weights only).

    Returns a dict: colour (R, 3), opacity (R,), depth (R,), weights (S,), trans (S,) (transmittance
    after each sample), used (R,) int32.
    """
    R, S = len(ray_count), len(sigma)
    bg = np.asarray(background, dtype=np.float64)
    out = dict(colour=np.zeros((R, 3)), opacity=np.zeros(R), depth=np.zeros(R),
               weights=np.zeros(S), trans=np.zeros(S), used=np.zeros(R, np.int32))
    for r in range(R):
        a, c = ray_start[r], ray_count[r]
        T, k = 1.0, 0
        while k < c and T >= threshold:
            s = a + k
            e = np.exp(-sigma[s] * (t1[s] - t0[s]))
            w = T * (1.0 - e)
            out["weights"][s] = w
            out["trans"][s] = T * e
            if rgb is not None:
                out["colour"][r] += w * rgb[s]
            out["opacity"][r] += w
            out["depth"][r] += w * 0.5 * (t0[s] + t1[s])
            T *= e
            k += 1
        out["used"][r] = k
        if rgb is not None:
            out["colour"][r] += (1.0 - out["opacity"][r]) * bg
    return out


def backward(sigma, rgb, t0, t1, ray_start, ray_count, fwd, d_colour=None, d_opacity=None,
             d_depth=None, d_weights=None, background=(0.0, 0.0, 0.0)):
    """Closed-form gradients: returns (d_sigma (S,), d_rgb (S, 3) or None).

    With g_k = dL/dw_k (total) and T_{k+1} the transmittance after sample k:
    dL/dsigma_k = delta_k * (g_k T_{k+1} - sum_{j>k} g_j w_j); dL/drgb_k = w_k dL/dcolour.
    """
    R, S = len(ray_count), len(sigma)
    bg = np.asarray(background, dtype=np.float64)
    w, trans = fwd["weights"], fwd["trans"]
    d_sigma = np.zeros(S)
    d_rgb = None if rgb is None else np.zeros((S, 3))
    for r in range(R):
        a = ray_start[r]
        suffix = 0.0
        for k in range(fwd["used"][r] - 1, -1, -1):
            s = a + k
            g = 0.0
            if d_colour is not None and rgb is not None:
                g += np.dot(d_colour[r], rgb[s] - bg)
                d_rgb[s] = w[s] * d_colour[r]
            if d_opacity is not None:
                g += d_opacity[r]
            if d_depth is not None:
                g += d_depth[r] * 0.5 * (t0[s] + t1[s])
            if d_weights is not None:
                g += d_weights[s]
            d_sigma[s] = (t1[s] - t0[s]) * (g * trans[s] - suffix)
            suffix += g * w[s]
    return d_sigma, d_rgb
