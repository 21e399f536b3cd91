"""Sample points: packed ray samples to normalised space-time coordinates, and back.

This is where the per-camera time offsets enter the field: a sample of a ray from camera ``k`` at
frame time ``t`` is looked up at time ``t + offsets[k]``. The backward pass gathers the gradient of
the time coordinate of every sample into ``offsets.grad`` (one sum per ray, then one atomic add per
ray), which is the only path by which the offsets learn.

Fields (N_max rows, only rows < n touched):
  rays_o, rays_d  (R, 3)   ray origins and directions (world, or NDC for forward-facing scenes)
  ray_time        (R,)     normalised frame time of the ray, in [-0.8, 0.8]
  ray_cam         (R,)     int32 camera index of the ray
  offsets         (C,)     per-camera time offsets in normalised time units (needs_grad)
  t0, t1          (S,)     packed sample intervals; ray_start/ray_count (R,) int32
  pts             (S, 4)   output: (x, y, z) mapped from the box [lo, hi] to [-1, 1], then time
"""

import taichi as ti


@ti.kernel
def _points_forward(
    rays_o: ti.template(), rays_d: ti.template(), ray_time: ti.template(), ray_cam: ti.template(),
    offsets: ti.template(), t0: ti.template(), t1: ti.template(), ray_start: ti.template(),
    ray_count: ti.template(), pts: ti.template(), n_rays: ti.i32,
    lo: ti.types.vector(3, float), hi: ti.types.vector(3, float), use_offsets: ti.i32,
):
    for r in range(n_rays):
        cam = ray_cam[r]
        t = ray_time[r]
        if use_offsets != 0:
            t += offsets[cam]
        start = ray_start[r]
        for k in range(ray_count[r]):
            s = start + k
            mid = 0.5 * (t0[s] + t1[s])
            for a in ti.static(range(3)):
                p = rays_o[r, a] + rays_d[r, a] * mid
                pts[s, a] = (p - lo[a]) / (hi[a] - lo[a]) * 2.0 - 1.0
            pts[s, 3] = t


@ti.kernel
def _points_backward(
    pts: ti.template(), ray_cam: ti.template(), offsets: ti.template(), ray_start: ti.template(),
    ray_count: ti.template(), n_rays: ti.i32,
):
    for r in range(n_rays):
        acc = 0.0
        start = ray_start[r]
        for k in range(ray_count[r]):
            acc += pts.grad[start + k, 3]
        if ray_count[r] > 0:
            ti.atomic_add(offsets.grad[ray_cam[r]], acc)


def points_forward(rays_o, rays_d, ray_time, ray_cam, offsets, t0, t1, ray_start, ray_count, pts,
                   n_rays: int, box_lo, box_hi, use_offsets: bool = True) -> None:
    """Write ``pts`` (S, 4) for the packed samples of the first ``n_rays`` rays."""
    _points_forward(rays_o, rays_d, ray_time, ray_cam, offsets, t0, t1, ray_start, ray_count, pts,
                    int(n_rays), ti.Vector([float(v) for v in box_lo]),
                    ti.Vector([float(v) for v in box_hi]), int(bool(use_offsets)))


def points_backward(pts, ray_cam, offsets, ray_start, ray_count, n_rays: int) -> None:
    """ACCUMULATE d loss / d offsets[k] = sum of ``pts.grad[:, 3]`` over samples of camera k's rays."""
    _points_backward(pts, ray_cam, offsets, ray_start, ray_count, int(n_rays))


@ti.kernel
def _color_input_forward(sh: ti.template(), dout: ti.template(), sample_ray: ti.template(),
                         cin: ti.template(), n_samples: ti.i32, n_sh: ti.i32, n_geo: ti.i32):
    for s in range(n_samples):
        r = sample_ray[s]
        for j in range(n_sh):
            cin[s, j] = sh[r, j]
        for j in range(n_geo):
            cin[s, n_sh + j] = dout[s, 1 + j]


@ti.kernel
def _color_input_backward(dout: ti.template(), cin: ti.template(), n_samples: ti.i32, n_sh: ti.i32,
                          n_geo: ti.i32):
    for s in range(n_samples):
        for j in range(n_geo):
            dout.grad[s, 1 + j] = cin.grad[s, n_sh + j]


def color_input_forward(sh, dout, sample_ray, cin, n_samples: int, n_sh: int, n_geo: int) -> None:
    """``cin[s] = [sh[ray(s), :n_sh], dout[s, 1 : 1 + n_geo]]`` (colour MLP input per sample)."""
    _color_input_forward(sh, dout, sample_ray, cin, int(n_samples), int(n_sh), int(n_geo))


def color_input_backward(dout, cin, n_samples: int, n_sh: int, n_geo: int) -> None:
    """OVERWRITE ``dout.grad[:, 1 : 1 + n_geo]`` with ``cin.grad[:, n_sh:]`` (the geometry features)."""
    _color_input_backward(dout, cin, int(n_samples), int(n_sh), int(n_geo))
