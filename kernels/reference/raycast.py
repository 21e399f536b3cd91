"""float64 numpy twin of kernels/raycast.py (RayCaster.render): the same casts, in the same order,
vectorised over the supersampled rays."""
import numpy as np


def render(dirs, bg_rgb, bg_alpha, bg_depth, bg8, objects, regions, light, ambient, diffuse, background,
           supersample):
    """One frame as kernels/raycast.py renders it; arguments as ``RayCaster.set_view`` and
    ``RayCaster.render`` take them. Returns (H, W, 3) uint8."""
    s = int(supersample)
    dirs = np.asarray(dirs, np.float64)
    hs, ws = dirs.shape[:2]
    h, w = hs // s, ws // s
    col = np.array(bg_rgb, np.float64)
    alpha = np.array(bg_alpha, np.float64)
    depth = np.array(bg_depth, np.float64)
    light = np.asarray(light, np.float64)
    objects = np.asarray(objects, np.float64).reshape(-1, 31)
    regions = np.asarray(regions, np.int64).reshape(-1, 4)
    for o, (i0, i1, j0, j1) in zip(objects, regions):
        d = dirs[i0:i1, j0:j1]
        dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
        dep = depth[i0:i1, j0:j1]
        R = o[4:13].reshape(3, 3)
        oc = o[1:4]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if o[0] == 0:
                a = dx * dx + dy * dy + dz * dz
                b = dx * oc[0] + dy * oc[1] + dz * oc[2]
                disc = b * b - a * o[16]
                t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
                hit = (disc > 0) & (t > 0) & (t < dep)
                n = [(oc[i] + t * d[..., i]) * o[17] for i in range(3)]
                loc = [n[0] * R[0, j] + n[1] * R[1, j] + n[2] * R[2, j] for j in range(3)]
                tex = 0.5 + 0.5 * np.sin(o[21] * loc[0] + o[22] * loc[2] + o[24]) * np.cos(o[23] * loc[1])
            else:
                dl = [dx * R[0, i] + dy * R[1, i] + dz * R[2, i] for i in range(3)]
                tn, tf = [], []
                for i in range(3):
                    inv = 1.0 / dl[i]
                    t1, t2 = (-o[13 + i] - o[18 + i]) * inv, (o[13 + i] - o[18 + i]) * inv
                    tn.append(np.minimum(t1, t2))
                    tf.append(np.maximum(t1, t2))
                t = np.maximum(np.maximum(tn[0], tn[1]), tn[2])
                tmax = np.minimum(np.minimum(tf[0], tf[1]), tf[2])
                hit = (tmax >= t) & (t > 0) & (t < dep)
                axis = np.where((tn[0] >= tn[1]) & (tn[0] >= tn[2]), 0, np.where(tn[1] >= tn[2], 1, 2))
                local = np.stack([(o[18 + i] + t * dl[i]) / o[13 + i] for i in range(3)], -1)
                nl = np.zeros_like(local)
                np.put_along_axis(nl, axis[..., None], np.where(np.take_along_axis(local, axis[..., None], -1) >= 0,
                                                                1.0, -1.0), -1)
                n = [nl[..., 0] * R[j, 0] + nl[..., 1] * R[j, 1] + nl[..., 2] * R[j, 2] for j in range(3)]
                clipped = np.clip(local, -1.0, 1.0)
                u = np.take_along_axis(clipped, ((axis + 1) % 3)[..., None], -1)[..., 0]
                v = np.take_along_axis(clipped, ((axis + 2) % 3)[..., None], -1)[..., 0]
                tex = (0.5 + 0.5 * np.sin(o[21] * u + o[24] + axis) * np.cos(o[23] * v)) * (0.9 + 0.05 * axis)
            lam = np.maximum(n[0] * light[0] + n[1] * light[1] + n[2] * light[2], 0.0)
            shade = ambient + diffuse * lam
        for c in range(3):
            col[i0:i1, j0:j1, c] = np.where(hit, (o[25 + c] + tex * o[28 + c]) * shade, col[i0:i1, j0:j1, c])
        alpha[i0:i1, j0:j1] = np.where(hit, 1.0, alpha[i0:i1, j0:j1])
        dep[...] = np.where(hit, t, dep)
    acc = np.zeros((h, w, 3))
    acc_a = np.zeros((h, w))
    for a in range(s):
        for b in range(s):
            acc += col[a::s, b::s]
            acc_a += alpha[a::s, b::s]
    scale = 1.0 / (s * s) if s > 1 else 1.0
    img = acc * scale + (1.0 - acc_a * scale)[..., None] * np.asarray(background, np.float64)
    out = np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    inside = np.zeros((h, w), bool)
    for i0, i1, j0, j1 in regions:
        inside[i0 // s:-(-i1 // s), j0 // s:-(-j1 // s)] = True
    return np.where(inside[..., None], out, np.asarray(bg8, np.uint8))
