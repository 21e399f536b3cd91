"""Ray casting of moving spheres and boxes over a precomputed background: the frame loop of the
synthetic scene generator (taichi_syncnerf/data/synthetic), one output pixel per thread.

A camera's view is set once (:meth:`RayCaster.set_view`): per supersampled ray (s x s per pixel,
``(Hs, Ws) = (s H, s W)``) its direction (camera-z component -1, so a ray parameter is a depth)
and the background it sees (colour, coverage alpha, depth; ``inf`` where nothing), plus the
background's uint8 frame. Each frame (:meth:`RayCaster.render`) gets one parameter row per object
(layout below, computed by the caller in float32 as the numpy renderer does) and one screen region
per object ``(i0, i1, j0, j1)`` in supersampled pixels, aligned to s: an object is tested only
against the rays of its region, a pixel outside every region is the background frame.

Per ray, objects are tested in order; a hit counts when ``0 < t < depth`` (the background's, or a
nearer object's already found), and replaces colour, alpha (1) and depth. Shading is Lambertian
with one directional light plus ambient: ``albedo * (ambient + diffuse * max(<n, light>, 0))``.

* sphere (kind 0): ``disc = b^2 - |d|^2 c0`` with ``b = <d, oc>``, ``t = (-b - sqrt(disc)) / |d|^2``;
  normal ``(oc + t d) / r``; texture at ``l = normal R`` (object-local):
  ``s = 0.5 + 0.5 sin(A l0 + B l2 + P) cos(C l1)``;
* box (kind 1): slabs in object-local axes (``d R``, ``ol = oc R``), entry at the largest near
  plane (its axis the face, ties to the lower axis); local point ``(ol + t d R) / h``, normal the
  face's sign, ``normal = n_local R^T``; texture on the face's two other axes ``u, v`` (clipped to
  [-1, 1]): ``s = (0.5 + 0.5 sin(A u + P + axis) cos(C v)) (0.9 + 0.05 axis)``;
* albedo ``colour_a + s (colour_b - colour_a)``.

The pixel is the box filter (mean) of its s x s rays, composited over ``background``:
``uint8(clip(255 (rgb + (1 - alpha) background) + 0.5, 0, 255))`` (truncation).

Object row layout (:data:`N_PARAMS` floats): ``0`` kind, ``1:4`` oc = camera origin - centre,
``4:13`` R row-major (local-to-world rotation), ``13:16`` h (half extents; a sphere's radius in
13), ``16`` c0 = <oc, oc> - r^2, ``17`` 1 / r, ``18:21`` ol = oc R, ``21:25`` A, B, C, P,
``25:28`` colour_a, ``28:31`` colour_b - colour_a.

The numpy float64 twin is kernels/reference/raycast.py (same method, :func:`render`).
"""
import numpy as np
import taichi as ti

N_PARAMS = 31
SPHERE, BOX = 0, 1


@ti.func
def _texture_sphere(obj: ti.template(), k, l0, l1, l2):
    return 0.5 + 0.5 * ti.sin(obj[k, 21] * l0 + obj[k, 22] * l2 + obj[k, 24]) * ti.cos(obj[k, 23] * l1)


@ti.func
def _hit_sphere(obj: ti.template(), k, dx, dy, dz, depth):
    """(hit, t, normal) of the ray ``d`` against sphere ``k``."""
    ox, oy, oz = obj[k, 1], obj[k, 2], obj[k, 3]
    a = dx * dx + dy * dy + dz * dz
    b = dx * ox + dy * oy + dz * oz
    disc = b * b - a * obj[k, 16]
    hit = 0
    t = 0.0
    n = ti.Vector([0.0, 0.0, 0.0])
    if disc > 0.0:
        t = (-b - ti.sqrt(disc)) / a
        if t > 0.0 and t < depth:
            hit = 1
            ir = obj[k, 17]
            n = ti.Vector([(ox + t * dx) * ir, (oy + t * dy) * ir, (oz + t * dz) * ir])
    return hit, t, n


@ti.func
def _rot(obj: ti.template(), k, i, j):
    return obj[k, 4 + 3 * i + j]


@ti.func
def _shade_sphere(obj: ti.template(), k, n):
    l0 = n[0] * _rot(obj, k, 0, 0) + n[1] * _rot(obj, k, 1, 0) + n[2] * _rot(obj, k, 2, 0)
    l1 = n[0] * _rot(obj, k, 0, 1) + n[1] * _rot(obj, k, 1, 1) + n[2] * _rot(obj, k, 2, 1)
    l2 = n[0] * _rot(obj, k, 0, 2) + n[1] * _rot(obj, k, 1, 2) + n[2] * _rot(obj, k, 2, 2)
    return _texture_sphere(obj, k, l0, l1, l2)


@ti.func
def _hit_box(obj: ti.template(), k, dx, dy, dz, depth):
    """(hit, t, normal, texture value) of the ray ``d`` against box ``k``."""
    tn = ti.Vector([0.0, 0.0, 0.0])
    tf = ti.Vector([0.0, 0.0, 0.0])
    dl = ti.Vector([0.0, 0.0, 0.0])
    for i in ti.static(range(3)):
        dl[i] = dx * _rot(obj, k, 0, i) + dy * _rot(obj, k, 1, i) + dz * _rot(obj, k, 2, i)
        inv = 1.0 / dl[i]
        h, ol = obj[k, 13 + i], obj[k, 18 + i]
        t1 = (-h - ol) * inv
        t2 = (h - ol) * inv
        tn[i] = ti.min(t1, t2)
        tf[i] = ti.max(t1, t2)
    tmin = ti.max(ti.max(tn[0], tn[1]), tn[2])
    tmax = ti.min(ti.min(tf[0], tf[1]), tf[2])
    hit = 0
    n = ti.Vector([0.0, 0.0, 0.0])
    s = 0.0
    if tmax >= tmin and tmin > 0.0 and tmin < depth:
        hit = 1
        axis = 2
        if tn[0] >= tn[1] and tn[0] >= tn[2]:
            axis = 0
        elif tn[1] >= tn[2]:
            axis = 1
        local = ti.Vector([0.0, 0.0, 0.0])
        for i in ti.static(range(3)):
            local[i] = (obj[k, 18 + i] + tmin * dl[i]) / obj[k, 13 + i]
        nl = ti.Vector([0.0, 0.0, 0.0])
        u, v = local[1], local[2]  # the face's two other axes, in order (axis + 1, axis + 2) mod 3
        if axis == 0:
            nl[0] = 1.0 if local[0] >= 0.0 else -1.0
        elif axis == 1:
            nl[1] = 1.0 if local[1] >= 0.0 else -1.0
            u, v = local[2], local[0]
        else:
            nl[2] = 1.0 if local[2] >= 0.0 else -1.0
            u, v = local[0], local[1]
        for j in ti.static(range(3)):
            n[j] = nl[0] * _rot(obj, k, j, 0) + nl[1] * _rot(obj, k, j, 1) + nl[2] * _rot(obj, k, j, 2)
        u = ti.min(ti.max(u, -1.0), 1.0)
        v = ti.min(ti.max(v, -1.0), 1.0)
        s = 0.5 + 0.5 * ti.sin(obj[k, 21] * u + obj[k, 24] + axis) * ti.cos(obj[k, 23] * v)
        s = s * (0.9 + 0.05 * axis)
    return hit, tmin, n, s


@ti.kernel
def _render(dirs: ti.template(), bg_rgb: ti.template(), bg_alpha: ti.template(), bg_depth: ti.template(),
            bg8: ti.template(), obj: ti.template(), reg: ti.template(), out: ti.template(), n_obj: int, s: int,
            lx: float, ly: float, lz: float, ambient: float, diffuse: float, b0: float, b1: float, b2: float):
    # (scalar arguments: a ti.types.vector(3, float) annotation takes the float width at import)
    H, W = out.shape[0], out.shape[1]
    light = ti.Vector([lx, ly, lz])
    background = ti.Vector([b0, b1, b2])
    for i, j in ti.ndrange(H, W):
        inside = 0
        for k in range(n_obj):
            if reg[k, 0] <= i * s < reg[k, 1] and reg[k, 2] <= j * s < reg[k, 3]:
                inside = 1
        if inside == 0:
            for c in ti.static(range(3)):
                out[i, j, c] = bg8[i, j, c]
        else:
            acc = ti.Vector([0.0, 0.0, 0.0])
            acc_a = 0.0
            for a in range(s):
                for b in range(s):
                    ii, jj = i * s + a, j * s + b
                    dx, dy, dz = dirs[ii, jj, 0], dirs[ii, jj, 1], dirs[ii, jj, 2]
                    depth = bg_depth[ii, jj]
                    col = ti.Vector([bg_rgb[ii, jj, 0], bg_rgb[ii, jj, 1], bg_rgb[ii, jj, 2]])
                    alpha = bg_alpha[ii, jj]
                    for k in range(n_obj):
                        if reg[k, 0] <= ii < reg[k, 1] and reg[k, 2] <= jj < reg[k, 3]:
                            hit, t = 0, 0.0
                            n = ti.Vector([0.0, 0.0, 0.0])
                            tex = 0.0
                            if obj[k, 0] == 0.0:
                                hit, t, n = _hit_sphere(obj, k, dx, dy, dz, depth)
                                if hit:
                                    tex = _shade_sphere(obj, k, n)
                            else:
                                hit, t, n, tex = _hit_box(obj, k, dx, dy, dz, depth)
                            if hit:
                                lam = ti.max(n[0] * light[0] + n[1] * light[1] + n[2] * light[2], 0.0)
                                shade = ambient + diffuse * lam
                                for c in ti.static(range(3)):
                                    col[c] = (obj[k, 25 + c] + tex * obj[k, 28 + c]) * shade
                                alpha = 1.0
                                depth = t
                    acc += col
                    acc_a += alpha
            scale = 1.0
            if s > 1:
                scale = 1.0 / (s * s)
            rgb = acc * scale
            al = acc_a * scale
            for c in ti.static(range(3)):
                v = (rgb[c] + (1.0 - al) * background[c]) * 255.0 + 0.5
                out[i, j, c] = ti.cast(ti.min(ti.max(v, 0.0), 255.0), ti.u8)


@ti.data_oriented
class RayCaster:
    """One camera size: ``width`` x ``height`` pixels of ``supersample``^2 rays, up to ``max_objects``.

    Example::

        rc = RayCaster(128, 96, 2, 4)
        rc.set_view(dirs, bg_rgb, bg_alpha, bg_depth, bg8)
        frame = rc.render(objects, regions, light, 0.35, 0.65, (1.0, 1.0, 1.0))   # (96, 128, 3) uint8
    """

    def __init__(self, width: int, height: int, supersample: int, max_objects: int):
        self.width, self.height, self.s = int(width), int(height), int(supersample)
        self.max_objects = int(max_objects)
        hs, ws = self.height * self.s, self.width * self.s
        self.dirs = ti.field(float, shape=(hs, ws, 3))
        self.bg_rgb = ti.field(float, shape=(hs, ws, 3))
        self.bg_alpha = ti.field(float, shape=(hs, ws))
        self.bg_depth = ti.field(float, shape=(hs, ws))
        self.bg8 = ti.field(ti.u8, shape=(self.height, self.width, 3))
        self.out = ti.field(ti.u8, shape=(self.height, self.width, 3))
        self.obj = ti.field(float, shape=(max(1, self.max_objects), N_PARAMS))
        self.reg = ti.field(ti.i32, shape=(max(1, self.max_objects), 4))

    def set_view(self, dirs, bg_rgb, bg_alpha, bg_depth, bg8) -> None:
        """A camera's rays (Hs, Ws, 3), background colour (Hs, Ws, 3), alpha and depth (Hs, Ws)
        and uint8 background frame (H, W, 3)."""
        dt = ti.lang.util.to_numpy_type(self.dirs.dtype)
        for f, a in ((self.dirs, dirs), (self.bg_rgb, bg_rgb), (self.bg_alpha, bg_alpha), (self.bg_depth, bg_depth)):
            f.from_numpy(np.ascontiguousarray(a, dt))
        self.bg8.from_numpy(np.ascontiguousarray(bg8, np.uint8))

    def render(self, objects, regions, light, ambient: float, diffuse: float, background) -> np.ndarray:
        """One frame: ``objects`` (K, N_PARAMS), ``regions`` (K, 4) int; returns (H, W, 3) uint8."""
        objects = np.asarray(objects, np.float64).reshape(-1, N_PARAMS)
        k = len(objects)
        if k > self.max_objects:
            raise ValueError(f"{k} objects exceed the caster's {self.max_objects}")
        if k:
            dt = ti.lang.util.to_numpy_type(self.obj.dtype)
            o = np.zeros(self.obj.shape, dt)
            o[:k] = objects
            r = np.zeros(self.reg.shape, np.int32)
            r[:k] = np.asarray(regions, np.int32).reshape(-1, 4)
            self.obj.from_numpy(o)
            self.reg.from_numpy(r)
        _render(self.dirs, self.bg_rgb, self.bg_alpha, self.bg_depth, self.bg8, self.obj, self.reg, self.out, k,
                self.s, *(float(v) for v in light), float(ambient), float(diffuse), *(float(v) for v in background))
        return self.out.to_numpy()
