"""Forward kernels of :class:`kernels.splat.Rasterizer` (a mixin: the fields are the rasterizer's):
projection and tile counting, the scans, the tile lists, their per-tile sort, the blending kernel
training uses and the render-only one, and the colour read-out. See kernels/splat.py for the
method."""

import taichi as ti

from .splat_funcs import (ALPHA_MAX, CULL_SLACK, FOV_MARGIN, KA, KB, KC, LANES, LCUT, LOW_PASS, N_DATA, NEAR, OPA,
                          RED, TILE, YR, U, V, Z, _entry_less, _exp_neg, _merge, _quat_rot, _sh_basis, _tile_hit,
                          _tile_span)


class ForwardKernels:
    @ti.kernel
    def _project(self, means: ti.template(), log_scales: ti.template(), quats: ti.template(),
                 logits: ti.template(), sh: ti.template(), n: int, k_active: int, alpha_min: float,
                 r00: float, r01: float, r02: float, r10: float, r11: float, r12: float,
                 r20: float, r21: float, r22: float, t0: float, t1: float, t2: float,
                 fx: float, fy: float, cx: float, cy: float, w: int, h: int):
        tiles_x, tiles_y = (w + TILE - 1) // TILE, (h + TILE - 1) // TILE
        for t in range(tiles_x * tiles_y):
            self._tile_count[t] = 0
        for i in range(n):
            Rw = ti.Matrix([[r00, r01, r02], [r10, r11, r12], [r20, r21, r22]])
            tw = ti.Vector([t0, t1, t2])
            x = ti.Vector([means[i, 0], means[i, 1], means[i, 2]])
            pc = Rw @ x + tw
            radius = 0
            x0, y0, x1, y1 = 0, 0, 0, 0
            for c in ti.static(range(N_DATA + 1)):
                self._gdata[i, c] = 0.0
            self._gdata[i, YR] = 1e30
            self._clamped[i] = 0
            if pc[2] > NEAR:
                iz = 1.0 / pc[2]
                S = ti.Vector([ti.exp(log_scales[i, 0]), ti.exp(log_scales[i, 1]),
                               ti.exp(log_scales[i, 2])])
                q = ti.Vector([quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]])
                M = _quat_rot(q / q.norm()) @ ti.Matrix([[S[0], 0.0, 0.0], [0.0, S[1], 0.0],
                                                          [0.0, 0.0, S[2]]])
                cov3 = M @ M.transpose()
                mx, my = FOV_MARGIN * 0.5 * w / fx, FOV_MARGIN * 0.5 * h / fy
                tx = ti.min(ti.max(pc[0] * iz, -(cx / fx + mx)), (w - cx) / fx + mx)
                ty = ti.min(ti.max(pc[1] * iz, -(cy / fy + my)), (h - cy) / fy + my)
                J = ti.Matrix([[fx * iz, 0.0, -fx * tx * iz], [0.0, fy * iz, -fy * ty * iz]])
                A = J @ Rw
                cov2 = A @ cov3 @ A.transpose()
                a, b, c = cov2[0, 0] + LOW_PASS, cov2[0, 1], cov2[1, 1] + LOW_PASS
                det = a * c - b * b
                if det > 0.0:
                    mid = 0.5 * (a + c)
                    lam = mid + ti.sqrt(ti.max(0.1, mid * mid - det))
                    r = ti.ceil(3.0 * ti.sqrt(lam))
                    u = fx * pc[0] * iz + cx
                    v = fy * pc[1] * iz + cy
                    x0, x1 = _tile_span(u - 0.5, r, tiles_x)
                    y0, y1 = _tile_span(v - 0.5, r, tiles_y)
                    if x1 > x0 and y1 > y0:
                        radius = int(ti.min(r, 1.0e9))
                        d = x - Rw.transpose() @ (-tw)
                        Y = _sh_basis(d / d.norm())
                        clamped = 0
                        for ch in ti.static(range(3)):
                            col = 0.5
                            for k in ti.static(range(self.n_coeffs)):
                                if k < k_active:
                                    col += Y[k] * sh[i, 3 * k + ch]
                            if col < 0.0:
                                col = 0.0
                                clamped |= 1 << ch
                            self._gdata[i, RED + ch] = col
                        self._clamped[i] = clamped
                        self._gdata[i, U] = u
                        self._gdata[i, V] = v
                        self._gdata[i, KA] = c / det
                        self._gdata[i, KB] = -b / det
                        self._gdata[i, KC] = a / det
                        o = 1.0 / (1.0 + ti.exp(-logits[i]))
                        self._gdata[i, OPA] = o
                        # power < log(alpha_min / o) - 1e-3 means o e^power < alpha_min for sure
                        # (rounding of exp and log is far below 1e-3): skipped without exp
                        self._gdata[i, LCUT] = -1e30
                        self._gdata[i, Z] = pc[2]
                        rx0, ry0, rx1, ry1 = x0, y0, x1, y1
                        if alpha_min > 0.0:
                            self._gdata[i, LCUT] = ti.log(alpha_min / o) - 1e-3
                            # the box of the ellipse power >= lcut (widened past _tile_hit's margin and
                            # by 1 px for rounding): the only tiles of the rect _reaches can accept
                            qcut = ti.max(-2.0 * self._gdata[i, LCUT] * (1.0 + 2.0 * CULL_SLACK) + 2.0 * CULL_SLACK, 0.0)
                            self._gdata[i, YR] = ti.sqrt(qcut * c) + 1.0
                            ex0, ex1 = _tile_span(u - 0.5, ti.sqrt(qcut * a) + 1.0, tiles_x)
                            ey0, ey1 = _tile_span(v - 0.5, self._gdata[i, YR], tiles_y)
                            rx0, rx1 = ti.max(rx0, ex0), ti.min(rx1, ex1)
                            ry0, ry1 = ti.max(ry0, ey0), ti.min(ry1, ey1)
                        for ty_ in range(ry0, ry1):
                            for tx_ in range(rx0, rx1):
                                if self._reaches(i, tx_, ty_, w, h):
                                    ti.atomic_add(self._tile_count[ty_ * tiles_x + tx_], 1)
                        self._reach[i, 0], self._reach[i, 1], self._reach[i, 2], self._reach[i, 3] = rx0, ry0, rx1, ry1
            if radius == 0:
                x0, y0, x1, y1 = 0, 0, 0, 0
            self.radius[i] = radius
            self._rect[i, 0], self._rect[i, 1], self._rect[i, 2], self._rect[i, 3] = x0, y0, x1, y1

    @ti.func
    def _reaches(self, i, tx, ty, w, h) -> bool:
        """Whether projected Gaussian ``i`` (its packed data) can reach a pixel of tile (tx, ty):
        the one test the counting and the filling of the tile lists share."""
        return _tile_hit(self._gdata[i, U], self._gdata[i, V], self._gdata[i, KA], self._gdata[i, KB],
                         self._gdata[i, KC], self._gdata[i, LCUT], tx, ty, w, h)

    @ti.kernel
    def _scan(self, n_tiles: int, n: int) -> int:
        for _ in range(1):  # one thread: deterministic serial exclusive scans
            acc = 0
            for t in range(n_tiles):
                self._tile_start[t] = acc
                acc += self._tile_count[t]
            self._tile_start[n_tiles] = acc
            acc = 0
            for i in range(n):
                self._gslot[i] = acc
                if self.radius[i] > 0:
                    acc += ((self._rect[i, 2] - self._rect[i, 0])
                            * (self._rect[i, 3] - self._rect[i, 1]))
            self._gslot[n] = acc
        return self._tile_start[n_tiles]

    @ti.kernel
    def _fill(self, keys: ti.template(), ids: ti.template(), n: int, w: int, h: int):
        tiles_x = (w + TILE - 1) // TILE
        for t in range(self.max_tiles):
            self._tile_count[t] = 0  # reused as the fill cursor
        for i in range(n):
            if self.radius[i] > 0:
                for ty in range(self._reach[i, 1], self._reach[i, 3]):
                    for tx in range(self._reach[i, 0], self._reach[i, 2]):
                        if self._reaches(i, tx, ty, w, h):
                            t = ty * tiles_x + tx
                            e = self._tile_start[t] + ti.atomic_add(self._tile_count[t], 1)
                            keys[e] = self._gdata[i, Z]
                            ids[e] = i

    @ti.kernel
    def _sort(self, k1: ti.template(), i1: ti.template(), k2: ti.template(), i2: ti.template(),
              slot: ti.template(), w: int, h: int):
        tiles_x = (w + TILE - 1) // TILE
        n_tiles = tiles_x * ((h + TILE - 1) // TILE)
        ti.loop_config(block_dim=self._tile_block)
        for t in range(n_tiles):
            a, L = self._tile_start[t], self._tile_start[t + 1] - self._tile_start[t]
            for run in range((L + 15) // 16):  # insertion sort of runs of 16, in place
                lo = a + 16 * run
                for j in range(lo + 1, ti.min(lo + 16, a + L)):
                    kk, ii = k1[j], i1[j]
                    m = j
                    while m > lo:  # (Taichi's `and` evaluates both sides: no k1[lo - 1] read)
                        if _entry_less(kk, ii, k1[m - 1], i1[m - 1]):
                            k1[m], i1[m] = k1[m - 1], i1[m - 1]
                            m -= 1
                        else:
                            break
                    k1[m], i1[m] = kk, ii
            width, in_first = 16, 1
            while width < L:  # bottom-up merges, ping-pong between the two buffers
                for pair in range((L + 2 * width - 1) // (2 * width)):
                    s = 2 * width * pair
                    mid, hi = a + ti.min(s + width, L), a + ti.min(s + 2 * width, L)
                    if in_first:
                        _merge(k1, i1, k2, i2, a + s, mid, hi)
                    else:
                        _merge(k2, i2, k1, i1, a + s, mid, hi)
                width *= 2
                in_first = 1 - in_first
            if not in_first:
                for e in range(a, a + L):
                    k1[e], i1[e] = k2[e], i2[e]
            # gradient slot of each entry: its Gaussian's slots, one per tile of its rect in
            # row-major order, so each Gaussian sums a contiguous range in the backward
            tx, ty = t % tiles_x, t // tiles_x
            for e in range(a, a + L):
                g = i1[e]
                x0 = self._rect[g, 0]
                slot[e] = (self._gslot[g] + (ty - self._rect[g, 1]) * (self._rect[g, 2] - x0)
                           + tx - x0)

    @ti.kernel
    def _render(self, ids: ti.template(), w: int, h: int, bg0: float, bg1: float, bg2: float,
                alpha_min: float, t_min: float):
        tiles_x = (w + TILE - 1) // TILE
        n_tiles = tiles_x * ((h + TILE - 1) // TILE)
        ti.loop_config(block_dim=TILE * TILE)
        for t, k in ti.ndrange(n_tiles, TILE * TILE):
            px = (t % tiles_x) * TILE + k % TILE
            py = (t // tiles_x) * TILE + k // TILE
            if px < w and py < h:
                fpx, fpy = px + 0.5, py + 0.5
                T, D = 1.0, 0.0
                C = ti.Vector([0.0, 0.0, 0.0])
                a, b = self._tile_start[t], self._tile_start[t + 1]
                last = 0
                for j in range(a, b):
                    g = ids[j]
                    dx, dy = self._gdata[g, U] - fpx, self._gdata[g, V] - fpy
                    power = (-0.5 * (self._gdata[g, KA] * dx * dx + self._gdata[g, KC] * dy * dy)
                             - self._gdata[g, KB] * dx * dy)
                    if self._gdata[g, LCUT] <= power and power <= 0.0:
                        alpha = ti.min(ALPHA_MAX, self._gdata[g, OPA] * ti.exp(power))
                        if alpha >= alpha_min:
                            test_t = T * (1.0 - alpha)
                            if test_t < t_min:
                                break
                            wgt = alpha * T
                            C += wgt * ti.Vector([self._gdata[g, RED], self._gdata[g, RED + 1],
                                                  self._gdata[g, RED + 2]])
                            D += wgt * self._gdata[g, Z]
                            T = test_t
                            last = j - a + 1
                bg = ti.Vector([bg0, bg1, bg2])
                for ch in ti.static(range(3)):
                    self.colour[py, px, ch] = C[ch] + T * bg[ch]
                self.alpha[py, px] = 1.0 - T
                self.depth[py, px] = D
                self.final_t[py, px] = T
                self.n_contrib[py, px] = last

    @ti.kernel
    def _render_lanes(self, ids: ti.template(), w: int, h: int, bg0: float, bg1: float, bg2: float,
                      alpha_min: float, t_min: float):
        """_render for LANES pixels of a tile row at once, branch-free over the lanes (SIMD on a CPU):
        each pixel's skip test, alpha, stop test and blending are _render's operations (e^power by
        _exp_neg: a call into libm would take every lane out of the vector registers), a lane that
        does not blend a Gaussian adds exactly 0 and keeps its T."""
        tiles_x = (w + TILE - 1) // TILE
        n_tiles = tiles_x * ((h + TILE - 1) // TILE)
        groups = ti.static(TILE // LANES)
        ti.loop_config(block_dim=TILE * TILE // LANES)
        for t, k in ti.ndrange(n_tiles, TILE * groups):
            px0 = (t % tiles_x) * TILE + (k % groups) * LANES
            py = (t // tiles_x) * TILE + k // groups
            if px0 < w and py < h:
                fpx = ti.Vector([px0 + lane + 0.5 for lane in ti.static(range(LANES))])
                fpy = py + 0.5
                T = ti.Vector([1.0] * LANES)
                D = ti.Vector([0.0] * LANES)
                C = ti.Matrix.zero(float, 3, LANES)
                last = ti.Vector([0] * LANES)
                alive = ti.Vector([1 if px0 + lane < w else 0 for lane in ti.static(range(LANES))])
                a, b = self._tile_start[t], self._tile_start[t + 1]
                j = a
                while j < b and alive.sum() > 0:
                    g = ids[j]
                    dy = self._gdata[g, V] - fpy
                    if ti.abs(dy) <= self._gdata[g, YR]:  # else no power of the row reaches LCUT
                        dx = self._gdata[g, U] - fpx
                        power = (-0.5 * (self._gdata[g, KA] * dx * dx + self._gdata[g, KC] * dy * dy)
                                 - self._gdata[g, KB] * dx * dy)
                        ok = ti.select(power >= self._gdata[g, LCUT], alive, 0) * ti.select(power <= 0.0, 1, 0)
                        if ok.sum() > 0:
                            e = ti.Vector([_exp_neg(power[lane], self._exp_floor, self._exp_poly, self._exp_single)
                                           for lane in ti.static(range(LANES))])
                            alpha = ti.min(ALPHA_MAX, self._gdata[g, OPA] * e)
                            test_t = T * (1.0 - alpha)
                            hit = ok * ti.select(alpha >= alpha_min, 1, 0)
                            low = ti.select(test_t < t_min, 1, 0)
                            alive -= hit * low
                            upd = hit * (1 - low)
                            wgt = ti.select(upd > 0, alpha * T, 0.0)
                            for ch in ti.static(range(3)):
                                col = self._gdata[g, RED + ch]
                                for lane in ti.static(range(LANES)):
                                    C[ch, lane] += wgt[lane] * col
                            D += wgt * self._gdata[g, Z]
                            T = ti.select(upd > 0, test_t, T)
                            last = ti.select(upd > 0, j - a + 1, last)
                    j += 1
                for lane in ti.static(range(LANES)):
                    px = px0 + lane
                    if px < w:
                        self.colour[py, px, 0] = C[0, lane] + T[lane] * bg0
                        self.colour[py, px, 1] = C[1, lane] + T[lane] * bg1
                        self.colour[py, px, 2] = C[2, lane] + T[lane] * bg2
                        self.alpha[py, px] = 1.0 - T[lane]
                        self.depth[py, px] = D[lane]
                        self.final_t[py, px] = T[lane]
                        self.n_contrib[py, px] = last[lane]

    @ti.kernel
    def _read_colour(self, out: ti.types.ndarray(dtype=ti.f64, ndim=3), w: int, h: int, clip: int):
        for y, x in ti.ndrange(h, w):
            for ch in ti.static(range(3)):
                v = ti.cast(self.colour[y, x, ch], ti.f64)
                if clip:
                    v = ti.min(ti.max(v, 0.0), 1.0)
                out[y, x, ch] = v
