"""float64 numpy twins of kernels/sampling.py (slow, obviously correct; used by the tests).

Packed results are dicts with ``ray_start``, ``ray_count`` (int32, per ray) and ``t0``, ``t1``
(float64), ``ray_id`` (int32), per sample. Functions carry the same names as the
``RaySampler`` methods and module functions of ``kernels/sampling.py``.
"""
import numpy as np

SPACINGS = {"linear": 0, "disparity": 1}
TINY_T = 1e-6  # disparity spacing clamps t to this before taking 1 / t
IMPORTANCE_SALT = 0x68E31DA4


def pcg(v):
    """PCG hash of uint32 values (vectorised)."""
    v = np.asarray(v, dtype=np.uint32)
    with np.errstate(over="ignore"):  # uint32 arithmetic wraps modulo 2**32 on purpose
        state = v * np.uint32(747796405) + np.uint32(2891336453)
        word = ((state >> ((state >> np.uint32(28)) + np.uint32(4))) ^ state) * np.uint32(277803737)
    return (word >> np.uint32(22)) ^ word


def hash_uniform(seed, a, b):
    """Uniform number in [0, 1) (24 bits) from the integers (seed, a, b)."""
    h = pcg(pcg(pcg(np.uint32(seed % 2**32)) ^ np.uint32(a)) ^ np.uint32(b))
    return float(h >> np.uint32(8)) * (1.0 / 16777216.0)


def _g(t, spacing):
    return t if spacing == "linear" else 1.0 / max(t, TINY_T)


def _g_inv(g, spacing):
    return g if spacing == "linear" else 1.0 / g


def exclusive_scan(counts, capacity):
    """Clamp counts so that their sum fits ``capacity``; return (start, count, total, requested)."""
    start = np.zeros(len(counts), np.int32)
    out = np.zeros(len(counts), np.int32)
    acc = 0
    for r, c in enumerate(counts):
        c = int(c)
        c_fit = max(min(c, capacity - acc), 0)
        start[r], out[r] = acc, c_fit
        acc += c_fit
    return start, out, acc, int(np.sum(counts))


def ray_aabb(origins, dirs, aabb, near_min=0.0, far_max=1e10):
    """Slab test. Returns near, far (R,); a ray that misses gets near = far = near_min."""
    R = len(origins)
    near = np.zeros(R)
    far = np.zeros(R)
    for r in range(R):
        lo, hi = near_min, far_max
        for a in range(3):
            o, d = origins[r, a], dirs[r, a]
            if abs(d) < 1e-12:
                if o < aabb[a] or o > aabb[a + 3]:
                    lo, hi = 1.0, 0.0
            else:
                ta, tb = (aabb[a] - o) / d, (aabb[a + 3] - o) / d
                lo, hi = max(lo, min(ta, tb)), min(hi, max(ta, tb))
        if hi > lo:
            near[r], far[r] = lo, hi
        else:
            near[r] = far[r] = near_min
    return near, far


def _pack(counts, capacity):
    start, count, total, requested = exclusive_scan(counts, capacity)
    ray_id = np.repeat(np.arange(len(counts), dtype=np.int32), count)
    return start, count, total, requested, ray_id


def stratified(near, far, n_per_ray, spacing="linear", jitter=False, seed=0, counts=None,
               capacity=None):
    """``n_per_ray`` (or ``counts[r]``) intervals tiling [near, far] of every ray with far > near."""
    R = len(near)
    want = np.full(R, n_per_ray) if counts is None else np.asarray(counts)
    want = np.where(np.asarray(far) > np.asarray(near), want, 0)
    capacity = int(np.sum(want)) if capacity is None else capacity
    start, count, total, requested, ray_id = _pack(want, capacity)
    t0 = np.zeros(total)
    t1 = np.zeros(total)
    for r in range(R):
        c = count[r]
        if c == 0:
            continue
        gn, gf = _g(near[r], spacing), _g(far[r], spacing)
        edges = np.zeros(c + 1)
        for k in range(c + 1):
            if k == 0:
                edges[k] = near[r]
            elif k == c:
                edges[k] = far[r]
            else:
                j = hash_uniform(seed, r, k) - 0.5 if jitter else 0.0
                edges[k] = _g_inv(gn + (k + j) / c * (gf - gn), spacing)
        t0[start[r]:start[r] + c] = edges[:-1]
        t1[start[r]:start[r] + c] = edges[1:]
    return dict(ray_start=start, ray_count=count, t0=t0, t1=t1, ray_id=ray_id,
                n_samples=total, n_dropped=requested - total)


def padded_weights(w, padding=0.01, blur=False, eps=1e-5):
    """Histogram of one ray used for resampling: optional mip-NeRF max-blur, + padding, floor eps."""
    w = np.maximum(np.asarray(w, dtype=np.float64), 0.0)
    if blur:
        wp = np.concatenate([w[:1], w, w[-1:]])
        wmax = np.maximum(wp[:-1], wp[1:])
        w = 0.5 * (wmax[:-1] + wmax[1:])
    w = w + padding
    total = w.sum()
    if total < eps:
        w = w + (eps - total) / len(w)
    return w


def importance(ray_start, ray_count, t0, t1, weights, n_per_ray, spacing="linear", jitter=False,
               seed=0, padding=0.01, blur=False, eps=1e-5, capacity=None):
    """Inverse-CDF resampling of the piecewise-constant PDF given by a previous packed level."""
    R = len(ray_count)
    want = np.where(np.asarray(ray_count) > 0, n_per_ray, 0)
    capacity = int(np.sum(want)) if capacity is None else capacity
    start, count, total, requested, ray_id = _pack(want, capacity)
    n0 = np.zeros(total)
    n1 = np.zeros(total)
    for r in range(R):
        c = count[r]
        if c == 0:
            continue
        a, m = ray_start[r], ray_count[r]
        w = padded_weights(weights[a:a + m], padding, blur, eps)
        cum = np.concatenate([[0.0], np.cumsum(w)])
        W = cum[-1]
        edges = np.zeros(c + 1)
        for k in range(c + 1):
            xi = hash_uniform(seed ^ IMPORTANCE_SALT, r, k) if jitter else 0.5
            u = (k + xi) / (c + 1) * W
            i = int(np.searchsorted(cum[1:m], u, side="right"))  # first i with cum[i+1] > u
            frac = min(max((u - cum[i]) / w[i], 0.0), 1.0) if w[i] > 0 else 0.0
            ga, gb = _g(t0[a + i], spacing), _g(t1[a + i], spacing)
            e = _g_inv(ga + frac * (gb - ga), spacing)
            e = min(max(e, t0[a + i]), t1[a + i])
            edges[k] = max(e, edges[k - 1]) if k > 0 else e
        n0[start[r]:start[r] + c] = edges[:-1]
        n1[start[r]:start[r] + c] = edges[1:]
    return dict(ray_start=start, ray_count=count, t0=n0, t1=n1, ray_id=ray_id,
                n_samples=total, n_dropped=requested - total)


def normalized_coords(ray_start, ray_count, t0, t1, near, far, spacing="linear"):
    """Per-sample interval ends mapped to s in [0, 1] of the ray's [near, far] in spacing space."""
    s0 = np.zeros(len(t0))
    s1 = np.zeros(len(t1))
    for r in range(len(ray_count)):
        a, m = ray_start[r], ray_count[r]
        gn, gf = _g(near[r], spacing), _g(far[r], spacing)
        if m == 0 or gf == gn:
            continue
        for s in range(a, a + m):
            s0[s] = min(max((_g(t0[s], spacing) - gn) / (gf - gn), 0.0), 1.0)
            s1[s] = min(max((_g(t1[s], spacing) - gn) / (gf - gn), 0.0), 1.0)
    return s0, s1


def positions(ray_id, t0, t1, origins, dirs):
    """Sample positions o + d * (t0 + t1) / 2, shape (S, 3)."""
    mid = 0.5 * (np.asarray(t0) + np.asarray(t1))
    return origins[ray_id] + dirs[ray_id] * mid[:, None]
