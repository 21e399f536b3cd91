"""Vectorised numpy ray casting of a :class:`~.scene.Scene` from one camera.

The static room is cast once per camera (at the supersampled resolution); each frame only casts
rays inside the screen-space bounding box of each object's projected bounding box, then filters
those regions down to the output resolution. Cost per frame is proportional to the area the
objects cover, not to the image size.

Example::

    r = ViewRenderer(default_scene(), n3dv_rig(1, 128, 96)[0], supersample=2)
    rgb, alpha = r.render(0.25)            # (96, 128, 3) premultiplied colour, (96, 128) alpha
"""
from __future__ import annotations

import numpy as np

from taichi_syncnerf.data.synthetic.rig import Camera
from taichi_syncnerf.data.synthetic.scene import (ID_FLOOR, ID_NONE, ID_WALL, MovingObject, Scene,
                                              apply3)


class ViewRenderer:
    """Renders one camera's view of a scene at any scene time.

    Args:
        scene: the scene.
        camera: the camera (its width/height are the output size).
        supersample: s; s x s rays per pixel, box-filtered (antialiasing). 1 casts exactly
            through pixel centres.

    Internal buffers are planar, at the supersampled size (Hs, Ws) = (s H, s W): ray directions
    ``planes`` (3 x (Hs, Ws), camera-z component -1 so a ray parameter is a depth), colour
    ``col`` (3, Hs, Ws), ``alpha``, ``depth`` and object ``ids`` (Hs, Ws).
    """

    def __init__(self, scene: Scene, camera: Camera, supersample: int = 2):
        self.scene, self.camera, self.s = scene, camera, int(supersample)
        dirs = camera.pixel_directions(self.s)                      # (Hs, Ws, 3)
        self.planes = [np.ascontiguousarray(dirs[..., i]) for i in range(3)]
        self.dd = self.planes[0] ** 2 + self.planes[1] ** 2 + self.planes[2] ** 2
        self.origin = camera.position.astype(np.float32)
        hs, ws = self.shape = dirs.shape[:2]
        del dirs
        self.bg_col = np.zeros((3, hs, ws), np.float32)
        self.bg_alpha = np.zeros((hs, ws), np.float32)
        self.bg_depth = np.full((hs, ws), np.inf, np.float32)
        self.bg_id = np.full((hs, ws), ID_NONE, np.int16)
        if scene.background:
            self._cast_room()
        self.bg_col_1x = self._box(self.bg_col)                     # (3, H, W)
        self.bg_alpha_1x = self._box(self.bg_alpha)
        self.col, self.alpha = self.bg_col.copy(), self.bg_alpha.copy()
        self.depth, self.ids = self.bg_depth.copy(), self.bg_id.copy()
        self._bg8_key = self._bg8 = None

    # ----------------------------------------------------------------------------- background
    def _cast_room(self) -> None:
        sc, o, (dx, dy, dz) = self.scene, self.origin, self.planes
        with np.errstate(divide="ignore", invalid="ignore"):
            t_wall = np.where(dy > 0, (sc.wall_y - o[1]) / dy, np.inf).astype(np.float32)
            t_floor = np.where(dz < 0, (sc.floor_z - o[2]) / dz, np.inf).astype(np.float32)
        wall = t_wall <= t_floor
        t = np.minimum(t_wall, t_floor)
        hit = np.isfinite(t)
        tz = np.where(hit, t, 0.0)
        px, py, pz = o[0] + tz * dx, o[1] + tz * dy, o[2] + tz * dz
        w_col = sc.shade(sc.wall_albedo(px, pz), np.float32([0.0, -1.0, 0.0]))
        f_col = sc.shade(sc.floor_albedo(px, py), np.float32([0.0, 0.0, 1.0]))
        sky = np.asarray(sc.sky, np.float32)
        for c in range(3):
            self.bg_col[c] = np.where(hit, np.where(wall, w_col[..., c], f_col[..., c]), sky[c])
        self.bg_alpha[...] = 1.0
        self.bg_depth[...] = t
        self.bg_id[...] = np.where(wall, ID_WALL, ID_FLOOR)

    # ----------------------------------------------------------------------------- objects
    def _region(self, corners: np.ndarray):
        """Supersampled pixel box (i0, i1, j0, j1), aligned to s, holding the projection of the
        convex hull of ``corners`` (8, 3); None if it is off screen."""
        s = self.s
        hs, ws = self.shape
        uv, depth = self.camera.project(corners)
        if depth.min() <= 1e-3:                          # reaches behind the camera: cast all
            return 0, hs, 0, ws
        (umin, vmin), (umax, vmax) = uv.min(0), uv.max(0)
        j0 = max(int(np.floor(umin * s)) - 1, 0) // s * s
        j1 = min(-(-(int(np.ceil(umax * s)) + 1) // s) * s, ws)
        i0 = max(int(np.floor(vmin * s)) - 1, 0) // s * s
        i1 = min(-(-(int(np.ceil(vmax * s)) + 1) // s) * s, hs)
        if j0 >= j1 or i0 >= i1:
            return None
        return i0, i1, j0, j1

    def _corners(self, obj: MovingObject, centre: np.ndarray, rot: np.ndarray) -> np.ndarray:
        """(8, 3) corners of a box enclosing the object: the oriented box itself, or for a
        sphere the cube aligned with the camera axes."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
        if obj.kind == "sphere":
            axes, half = self.camera.c2w[:3, :3], np.full(3, obj.size[0] * 1.01)
        else:
            axes, half = rot, np.asarray(obj.size, float) * 1.01
        return centre + (signs * half) @ axes.T

    def _cast_object(self, k: int, obj: MovingObject, centre: np.ndarray, rot: np.ndarray,
                     reg) -> None:
        i0, i1, j0, j1 = reg
        dx, dy, dz = (p[i0:i1, j0:j1] for p in self.planes)
        depth = self.depth[i0:i1, j0:j1]
        oc = (self.origin - centre).astype(np.float32)
        rot32 = rot.astype(np.float32)
        if obj.kind == "sphere":
            r = float(obj.size[0])
            a = self.dd[i0:i1, j0:j1]
            b = dx * oc[0] + dy * oc[1] + dz * oc[2]
            disc = b * b - a * np.float32(oc @ oc - r * r)
            hit = disc > 0
            t = np.full(disc.shape, np.inf, np.float32)
            t[hit] = (-b[hit] - np.sqrt(disc[hit])) / a[hit]
            hit &= (t > 0) & (t < depth)
            if not hit.any():
                return
            th = t[hit]
            d = np.stack([dx[hit], dy[hit], dz[hit]], -1)
            normal = (oc + th[:, None] * d) * np.float32(1.0 / r)
            albedo = obj.texture(apply3(normal, rot32))
        else:
            h = np.asarray(obj.size, np.float32)
            ol = oc @ rot32
            tn, tf = [], []
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                for i in range(3):
                    inv = 1.0 / (dx * rot32[0, i] + dy * rot32[1, i] + dz * rot32[2, i])
                    t1, t2 = (-h[i] - ol[i]) * inv, (h[i] - ol[i]) * inv
                    tn.append(np.minimum(t1, t2))
                    tf.append(np.maximum(t1, t2))
                tmin = np.maximum(np.maximum(tn[0], tn[1]), tn[2])
                tmax = np.minimum(np.minimum(tf[0], tf[1]), tf[2])
                hit = (tmax >= tmin) & (tmin > 0) & (tmin < depth)
            if not hit.any():
                return
            th = tmin[hit]
            tn_h = [x[hit] for x in tn]
            axis = np.where((tn_h[0] >= tn_h[1]) & (tn_h[0] >= tn_h[2]), 0,
                            np.where(tn_h[1] >= tn_h[2], 1, 2))
            d = np.stack([dx[hit], dy[hit], dz[hit]], -1)
            local = (ol + th[:, None] * apply3(d, rot32)) / h
            rows = np.arange(axis.size)
            nl = np.zeros_like(local)
            nl[rows, axis] = np.where(local[rows, axis] >= 0, 1.0, -1.0)
            normal = apply3(nl, rot32.T)
            albedo = obj.texture(np.clip(local, -1.0, 1.0), axis)
        col = self.scene.shade(albedo, normal)
        for c in range(3):
            self.col[c, i0:i1, j0:j1][hit] = col[:, c]
        self.alpha[i0:i1, j0:j1][hit] = 1.0
        depth[hit] = th
        self.ids[i0:i1, j0:j1][hit] = k

    def _draw(self, time: float) -> list:
        regions = []
        for k, obj in enumerate(self.scene.objects):
            centre, rot = obj.position(time)[0], obj.orientation(time)[0]
            reg = self._region(self._corners(obj, centre, rot))
            if reg is not None:
                self._cast_object(k, obj, centre, rot, reg)
                regions.append(reg)
        return regions

    def _restore(self, regions) -> None:
        for i0, i1, j0, j1 in regions:
            self.col[:, i0:i1, j0:j1] = self.bg_col[:, i0:i1, j0:j1]
            for buf, bg in ((self.alpha, self.bg_alpha), (self.depth, self.bg_depth),
                            (self.ids, self.bg_id)):
                buf[i0:i1, j0:j1] = bg[i0:i1, j0:j1]

    def _box(self, img: np.ndarray) -> np.ndarray:
        """Box-filter the last two (spatial) axes by s."""
        s = self.s
        if s == 1:
            return img.astype(np.float32, copy=True)
        acc = np.zeros(img.shape[:-2] + (img.shape[-2] // s, img.shape[-1] // s), np.float32)
        for a in range(s):
            for b in range(s):
                acc += img[..., a::s, b::s]
        return acc * np.float32(1.0 / (s * s))

    @staticmethod
    def _to8(rgb: np.ndarray, alpha: np.ndarray, background) -> np.ndarray:
        """Planar premultiplied (3, h, w) + alpha (h, w) over a colour -> (h, w, 3) uint8."""
        bg = np.asarray(background, np.float32)[:, None, None]
        img = rgb + (1.0 - alpha)[None] * bg
        return np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8).transpose(1, 2, 0)

    # ----------------------------------------------------------------------------- public
    def render(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        """Render at scene time ``time`` (seconds).

        Returns premultiplied colour (H, W, 3) float32 in [0, 1] and coverage alpha (H, W).
        """
        regions = self._draw(time)
        rgb, alpha = self.bg_col_1x.copy(), self.bg_alpha_1x.copy()
        s = self.s
        for i0, i1, j0, j1 in regions:
            sl = np.s_[i0 // s:i1 // s, j0 // s:j1 // s]
            rgb[(slice(None),) + sl] = self._box(self.col[:, i0:i1, j0:j1])
            alpha[sl] = self._box(self.alpha[i0:i1, j0:j1])
        self._restore(regions)
        return np.ascontiguousarray(rgb.transpose(1, 2, 0)), alpha

    def render_uint8(self, time: float, background=(1.0, 1.0, 1.0)) -> np.ndarray:
        """Render at ``time`` composited over a constant ``background`` colour (visible only where
        the scene has no room). Returns (H, W, 3) uint8. Only the object regions are converted;
        the rest comes from a cached background frame."""
        key = tuple(float(c) for c in background)
        if self._bg8_key != key:
            self._bg8_key, self._bg8 = key, self._to8(self.bg_col_1x, self.bg_alpha_1x, key)
        regions = self._draw(time)
        out, s = self._bg8.copy(), self.s
        for i0, i1, j0, j1 in regions:
            out[i0 // s:i1 // s, j0 // s:j1 // s] = self._to8(
                self._box(self.col[:, i0:i1, j0:j1]), self._box(self.alpha[i0:i1, j0:j1]), key)
        self._restore(regions)
        return out

    def render_buffers(self, time: float) -> dict:
        """Full supersampled buffers at ``time``: ``rgb`` (Hs, Ws, 3), ``alpha`` (Hs, Ws),
        ``depth`` (Hs, Ws) along the viewing axis (inf where empty), ``ids`` (Hs, Ws) int16:
        object index, ID_WALL, ID_FLOOR or ID_NONE. With supersample=1 these are exact per-pixel
        values at the pixel centres."""
        regions = self._draw(time)
        out = {"rgb": np.ascontiguousarray(self.col.transpose(1, 2, 0)),
               "alpha": self.alpha.copy(), "depth": self.depth.copy(), "ids": self.ids.copy()}
        self._restore(regions)
        return out

    def depth_range(self, times) -> tuple[float, float]:
        """Nearest and farthest depth (along the viewing axis) of visible scene content over the
        given times (seconds): the room from the cast, objects from their bounding spheres."""
        finite = self.bg_depth[np.isfinite(self.bg_depth)]
        near = float(finite.min()) if finite.size else np.inf
        far = float(finite.max()) if finite.size else 0.0
        for obj in self.scene.objects:
            depth = self.camera.project(obj.position(np.asarray(times)))[1]
            near = min(near, float(depth.min()) - obj.bounding_radius)
            far = max(far, float(depth.max()) + obj.bounding_radius)
        return max(near, 1e-3), far


class KernelViewRenderer(ViewRenderer):
    """:class:`ViewRenderer` whose video frames (:meth:`render_uint8`) come from the Taichi ray
    caster (kernels/raycast.py): the background is cast once per camera by numpy as before and
    uploaded, each frame's objects are packed into parameter rows (in float32, as the numpy
    renderer computes them) with their screen regions, and one kernel casts, shades, box-filters
    and composites every pixel. ``caster`` is a :class:`~taichi_syncnerf.kernels.raycast.RayCaster`
    of the camera's size, reused from camera to camera (Taichi never frees a field). The float
    outputs (:meth:`render`, :meth:`render_buffers`) stay numpy's."""

    def __init__(self, scene: Scene, camera: Camera, supersample: int, caster):
        super().__init__(scene, camera, supersample)
        self.caster = caster
        caster.set_view(np.stack(self.planes, -1), self.bg_col.transpose(1, 2, 0), self.bg_alpha, self.bg_depth,
                        self._to8(self.bg_col_1x, self.bg_alpha_1x, (1.0, 1.0, 1.0)))
        self._caster_bg = (1.0, 1.0, 1.0)

    def object_rows(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        """Parameter rows (K, raycast.N_PARAMS) float32 and regions (K, 4) int32 of the objects on
        screen at ``time``, in scene order (see kernels/raycast.py for the layout)."""
        from taichi_syncnerf.kernels.raycast import BOX, N_PARAMS

        rows, regions = [], []
        for obj in self.scene.objects:
            centre, rot = obj.position(time)[0], obj.orientation(time)[0]
            reg = self._region(self._corners(obj, centre, rot))
            if reg is None:
                continue
            oc = (self.origin - centre).astype(np.float32)
            rot32 = rot.astype(np.float32)
            row = np.zeros(N_PARAMS, np.float32)
            row[1:4], row[4:13] = oc, rot32.ravel()
            if obj.kind == "sphere":
                r = float(obj.size[0])
                row[13] = r
                row[16] = np.float32(oc @ oc - r * r)
                row[17] = np.float32(1.0 / r)
            else:
                row[0] = BOX
                row[13:16] = np.asarray(obj.size, np.float32)
                row[18:21] = oc @ rot32
            row[21:25] = obj.pattern
            ca, cb = np.asarray(obj.colour_a, np.float32), np.asarray(obj.colour_b, np.float32)
            row[25:28], row[28:31] = ca, cb - ca
            rows.append(row)
            regions.append(reg)
        return np.asarray(rows, np.float32).reshape(-1, N_PARAMS), np.asarray(regions, np.int32).reshape(-1, 4)

    def render_uint8(self, time: float, background=(1.0, 1.0, 1.0)) -> np.ndarray:
        key = tuple(float(c) for c in background)
        if key != self._caster_bg:
            self.caster.bg8.from_numpy(self._to8(self.bg_col_1x, self.bg_alpha_1x, key))
            self._caster_bg = key
        rows, regions = self.object_rows(time)
        sc = self.scene
        return self.caster.render(rows, regions, sc.light_dir, sc.ambient, sc.diffuse, key)
