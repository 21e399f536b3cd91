"""numpy float64 twins of kernels/points.py."""
import numpy as np


def points_forward(rays_o, rays_d, ray_time, ray_cam, offsets, t0, t1, ray_start, ray_count, box_lo, box_hi,
                   use_offsets=True):
    S = int(np.max(ray_start + ray_count)) if len(ray_start) else 0
    pts = np.zeros((S, 4))
    lo, hi = np.asarray(box_lo, float), np.asarray(box_hi, float)
    for r in range(len(ray_start)):
        sl = slice(ray_start[r], ray_start[r] + ray_count[r])
        mid = 0.5 * (t0[sl] + t1[sl])
        p = rays_o[r] + rays_d[r] * mid[:, None]
        pts[sl, :3] = (p - lo) / (hi - lo) * 2.0 - 1.0
        pts[sl, 3] = ray_time[r] + (offsets[ray_cam[r]] if use_offsets else 0.0)
    return pts


def points_backward(pts_grad, ray_cam, n_cams, ray_start, ray_count):
    g = np.zeros(n_cams)
    for r in range(len(ray_start)):
        g[ray_cam[r]] += pts_grad[ray_start[r]:ray_start[r] + ray_count[r], 3].sum()
    return g


def color_input_forward(sh, dout, sample_ray, n_sh, n_geo):
    return np.concatenate([sh[sample_ray, :n_sh], dout[:, 1:1 + n_geo]], axis=1)
