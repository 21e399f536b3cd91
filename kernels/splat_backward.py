"""Backward kernels of :class:`kernels.splat.Rasterizer` (a mixin: the fields are the rasterizer's):
per pixel back to front into one gradient slot per list entry, the background's gradient, then per
Gaussian through conic, EWA, projection, SH, rotation, scales and activations. See
kernels/splat.py for the derivation."""

import taichi as ti

from .splat_funcs import (ALPHA_MAX, FOV_MARGIN, KA, KB, KC, LANES, LCUT, N_DATA, OPA, RED, TILE, YR, U, V, Z,
                          _exp_neg, _quat_rot, _quat_rot_grad, _sh_basis, _sh_basis_grad)


class BackwardKernels:
    @ti.kernel
    def _backward_pixels(self, ids: ti.template(), slot: ti.template(), egrad: ti.template(),
                         n_slots: int, w: int,
                         h: int, bg0: float, bg1: float, bg2: float, alpha_min: float, use_c: int,
                         use_a: int, use_d: int):
        tiles_x = (w + TILE - 1) // TILE
        n_tiles = tiles_x * ((h + TILE - 1) // TILE)
        for e in range(n_slots):
            for c in ti.static(range(N_DATA)):
                egrad[e, c] = 0.0
        bg = ti.Vector([bg0, bg1, bg2])
        if ti.static(self.pixel_parallel):
            ti.loop_config(block_dim=TILE * TILE)
            for t, k in ti.ndrange(n_tiles, TILE * TILE):
                self._pixel_backward(ids, slot, egrad, t, k, tiles_x, w, h, bg, alpha_min, use_c,
                                     use_a, use_d, True)
        else:
            ti.loop_config(block_dim=self._tile_block)
            for t in range(n_tiles):  # one thread per tile: its entry slots are private
                for k in range(TILE * TILE):
                    self._pixel_backward(ids, slot, egrad, t, k, tiles_x, w, h, bg, alpha_min,
                                         use_c, use_a, use_d, False)

    @ti.func
    def _pixel_backward(self, ids: ti.template(), slot: ti.template(), egrad: ti.template(), t, k,
                        tiles_x, w, h, bg, alpha_min, use_c, use_a, use_d, atomic: ti.template()):
        px = (t % tiles_x) * TILE + k % TILE
        py = (t // tiles_x) * TILE + k // TILE
        if px < w and py < h:
            last = self.n_contrib[py, px]
            if last > 0:
                a = self._tile_start[t]
                t_final = self.final_t[py, px]
                T = t_final
                gc = ti.Vector([0.0, 0.0, 0.0])
                ga, gd = 0.0, 0.0
                if use_c:
                    gc = ti.Vector([self.colour.grad[py, px, 0], self.colour.grad[py, px, 1],
                                    self.colour.grad[py, px, 2]])
                if use_a:
                    ga = self.alpha.grad[py, px]
                if use_d:
                    gd = self.depth.grad[py, px]
                bg_term = t_final * gc.dot(bg)
                Bc = ti.Vector([0.0, 0.0, 0.0])
                Bd, Ba = 0.0, 0.0
                fpx, fpy = px + 0.5, py + 0.5
                for jj in range(last):
                    e = a + last - 1 - jj
                    g = ids[e]
                    dx, dy = self._gdata[g, U] - fpx, self._gdata[g, V] - fpy
                    ka, kb, kc = self._gdata[g, KA], self._gdata[g, KB], self._gdata[g, KC]
                    power = -0.5 * (ka * dx * dx + kc * dy * dy) - kb * dx * dy
                    if self._gdata[g, LCUT] <= power and power <= 0.0:
                        G = ti.exp(power)
                        a_raw = self._gdata[g, OPA] * G
                        alpha = ti.min(ALPHA_MAX, a_raw)
                        if alpha >= alpha_min:
                            T = T / (1.0 - alpha)
                            wgt = alpha * T
                            rgb = ti.Vector([self._gdata[g, RED], self._gdata[g, RED + 1],
                                             self._gdata[g, RED + 2]])
                            z = self._gdata[g, Z]
                            d_alpha = (T * ((rgb - Bc).dot(gc) + (z - Bd) * gd + (1.0 - Ba) * ga)
                                       - bg_term / (1.0 - alpha))
                            Bc = alpha * rgb + (1.0 - alpha) * Bc
                            Bd = alpha * z + (1.0 - alpha) * Bd
                            Ba = alpha + (1.0 - alpha) * Ba
                            gr = ti.Vector.zero(float, N_DATA)
                            if a_raw < ALPHA_MAX:  # at the 0.99 clamp alpha is a constant
                                dpow = alpha * d_alpha
                                gr[U] = -dpow * (ka * dx + kb * dy)
                                gr[V] = -dpow * (kb * dx + kc * dy)
                                gr[KA] = -0.5 * dpow * dx * dx
                                gr[KB] = -dpow * dx * dy
                                gr[KC] = -0.5 * dpow * dy * dy
                                gr[OPA] = G * d_alpha
                            for ch in ti.static(range(3)):
                                gr[RED + ch] = wgt * gc[ch]
                            gr[Z] = wgt * gd
                            s = slot[e]
                            for c in ti.static(range(N_DATA)):
                                if ti.static(atomic):
                                    ti.atomic_add(egrad[s, c], gr[c])
                                else:  # one thread per tile: the tile's slots are its own
                                    egrad[s, c] = egrad[s, c] + gr[c]

    @ti.kernel
    def _backward_lanes(self, ids: ti.template(), slot: ti.template(), egrad: ti.template(), n_slots: int,
                        w: int, h: int, bg0: float, bg1: float, bg2: float, alpha_min: float, use_c: int,
                        use_a: int, use_d: int):
        """_pixel_backward for the LANES pixels of a tile row at once, the backward of
        _render_lanes (its e^power by _exp_neg): each lane walks its own pixel's list back to front
        (a lane past its pixel's last Gaussian, or off the image, adds exactly 0 and keeps its T
        and B); per entry the lanes' contributions are summed, then added into the entry's slot
        (one thread per tile: the tile's slots are its own)."""
        tiles_x = (w + TILE - 1) // TILE
        n_tiles = tiles_x * ((h + TILE - 1) // TILE)
        groups = ti.static(TILE // LANES)
        for e in range(n_slots):
            for c in ti.static(range(N_DATA)):
                egrad[e, c] = 0.0
        ti.loop_config(block_dim=self._tile_block)
        for t in range(n_tiles):
            a = self._tile_start[t]
            for k in range(TILE * groups):
                px0 = (t % tiles_x) * TILE + (k % groups) * LANES
                py = (t // tiles_x) * TILE + k // groups
                if px0 < w and py < h:
                    self._row_backward(ids, slot, egrad, a, px0, py, w, bg0, bg1, bg2, alpha_min, use_c,
                                       use_a, use_d)

    @ti.func
    def _row_backward(self, ids: ti.template(), slot: ti.template(), egrad: ti.template(), a, px0, py, w,
                      bg0, bg1, bg2, alpha_min, use_c, use_a, use_d):
        fpx = ti.Vector([px0 + lane + 0.5 for lane in ti.static(range(LANES))])
        fpy = py + 0.5
        last = ti.Vector([0] * LANES)
        T = ti.Vector([1.0] * LANES)
        g0, g1, g2 = ti.Vector([0.0] * LANES), ti.Vector([0.0] * LANES), ti.Vector([0.0] * LANES)
        ga = ti.Vector([0.0] * LANES)
        gd = ti.Vector([0.0] * LANES)
        for lane in ti.static(range(LANES)):
            px = px0 + lane
            if px < w:
                last[lane] = self.n_contrib[py, px]
                T[lane] = self.final_t[py, px]
                if use_c:
                    g0[lane] = self.colour.grad[py, px, 0]
                    g1[lane] = self.colour.grad[py, px, 1]
                    g2[lane] = self.colour.grad[py, px, 2]
                if use_a:
                    ga[lane] = self.alpha.grad[py, px]
                if use_d:
                    gd[lane] = self.depth.grad[py, px]
        bg_term = T * (g0 * bg0 + g1 * bg1 + g2 * bg2)
        B0, B1, B2 = ti.Vector([0.0] * LANES), ti.Vector([0.0] * LANES), ti.Vector([0.0] * LANES)
        Bd = ti.Vector([0.0] * LANES)
        Ba = ti.Vector([0.0] * LANES)
        top = last.max()
        for jj in range(top):
            j = top - 1 - jj
            e = a + j
            g = ids[e]
            dy = self._gdata[g, V] - fpy
            if ti.abs(dy) <= self._gdata[g, YR]:  # else no power of the row reaches LCUT
                dx = self._gdata[g, U] - fpx
                ka, kb, kc = self._gdata[g, KA], self._gdata[g, KB], self._gdata[g, KC]
                power = -0.5 * (ka * dx * dx + kc * dy * dy) - kb * dx * dy
                ok = (ti.select(last > j, 1, 0) * ti.select(power >= self._gdata[g, LCUT], 1, 0)
                      * ti.select(power <= 0.0, 1, 0))
                if ok.sum() > 0:
                    G = ti.Vector([_exp_neg(power[lane], self._exp_floor, self._exp_poly, self._exp_single)
                                   for lane in ti.static(range(LANES))])
                    a_raw = self._gdata[g, OPA] * G
                    alpha = ti.min(ALPHA_MAX, a_raw)
                    hit = ok * ti.select(alpha >= alpha_min, 1, 0)
                    if hit.sum() > 0:
                        r0, r1, r2 = self._gdata[g, RED], self._gdata[g, RED + 1], self._gdata[g, RED + 2]
                        z = self._gdata[g, Z]
                        one_minus = ti.select(hit > 0, 1.0 - alpha, 1.0)
                        T = ti.select(hit > 0, T / one_minus, T)
                        wgt = ti.select(hit > 0, alpha * T, 0.0)
                        d_alpha = (T * ((r0 - B0) * g0 + (r1 - B1) * g1 + (r2 - B2) * g2 + (z - Bd) * gd
                                        + (1.0 - Ba) * ga) - bg_term / one_minus)
                        B0 = ti.select(hit > 0, alpha * r0 + one_minus * B0, B0)
                        B1 = ti.select(hit > 0, alpha * r1 + one_minus * B1, B1)
                        B2 = ti.select(hit > 0, alpha * r2 + one_minus * B2, B2)
                        Bd = ti.select(hit > 0, alpha * z + one_minus * Bd, Bd)
                        Ba = ti.select(hit > 0, alpha + one_minus * Ba, Ba)
                        free = hit * ti.select(a_raw < ALPHA_MAX, 1, 0)  # at the 0.99 clamp alpha is a constant
                        dpow = ti.select(free > 0, alpha * d_alpha, 0.0)
                        # dy is the row's: the five shape terms need three sums over the lanes
                        p0, p1 = dpow.sum(), (dpow * dx).sum()
                        gr = ti.Vector.zero(float, N_DATA)
                        gr[U] = -(ka * p1 + kb * dy * p0)
                        gr[V] = -(kb * p1 + kc * dy * p0)
                        gr[KA] = -0.5 * (dpow * dx * dx).sum()
                        gr[KB] = -dy * p1
                        gr[KC] = -0.5 * dy * dy * p0
                        gr[OPA] = ti.select(free > 0, G * d_alpha, 0.0).sum()
                        gr[RED] = (wgt * g0).sum()
                        gr[RED + 1] = (wgt * g1).sum()
                        gr[RED + 2] = (wgt * g2).sum()
                        gr[Z] = (wgt * gd).sum()
                        s = slot[e]
                        for c in ti.static(range(N_DATA)):
                            egrad[s, c] = egrad[s, c] + gr[c]

    @ti.kernel
    def _background_grad(self, w: int, h: int):
        for py, px in ti.ndrange(h, w):
            for c in ti.static(range(3)):
                self.d_background[c] += self.final_t[py, px] * self.colour.grad[py, px, c]

    @ti.kernel
    def _backward_gaussians(self, means: ti.template(), log_scales: ti.template(),
                            quats: ti.template(), logits: ti.template(), sh: ti.template(),
                            egrad: ti.template(), n: int, k_active: int, r00: float,
                            r01: float, r02: float, r10: float, r11: float, r12: float, r20: float,
                            r21: float, r22: float, t0: float, t1: float, t2: float, fx: float,
                            fy: float, cx: float, cy: float, w: int, h: int):
        for i in range(n):
            for c in ti.static(range(3)):
                self.d_means[i, c] = 0.0
                self.d_log_scales[i, c] = 0.0
            for c in ti.static(range(4)):
                self.d_quats[i, c] = 0.0
            for c in ti.static(range(3 * self.n_coeffs)):
                self.d_sh[i, c] = 0.0
            self.d_opacity_logits[i] = 0.0
            self.d_mean2d[i, 0] = 0.0
            self.d_mean2d[i, 1] = 0.0
            self.d_mean2d_norm_ndc[i] = 0.0
            if self.radius[i] > 0:
                acc = ti.Vector.zero(float, N_DATA)
                for e in range(self._gslot[i], self._gslot[i + 1]):  # its slots, one per tile
                    for c in ti.static(range(N_DATA)):
                        acc[c] += egrad[e, c]
                self._gaussian_backward(means, log_scales, quats, sh, i, k_active, acc,
                                        ti.Matrix([[r00, r01, r02], [r10, r11, r12],
                                                   [r20, r21, r22]]),
                                        ti.Vector([t0, t1, t2]), fx, fy, cx, cy, w, h)

    @ti.func
    def _gaussian_backward(self, means: ti.template(), log_scales: ti.template(),
                           quats: ti.template(), sh: ti.template(), i, k_active, acc, Rw, tw, fx,
                           fy, cx, cy, w, h):
        # forward quantities again
        x = ti.Vector([means[i, 0], means[i, 1], means[i, 2]])
        pc = Rw @ x + tw
        iz = 1.0 / pc[2]
        S = ti.Vector([ti.exp(log_scales[i, c]) for c in ti.static(range(3))])
        q = ti.Vector([quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]])
        qlen = q.norm()
        qn = q / qlen
        Rq = _quat_rot(qn)
        M = Rq @ ti.Matrix([[S[0], 0.0, 0.0], [0.0, S[1], 0.0], [0.0, 0.0, S[2]]])
        cov3 = M @ M.transpose()
        mx, my = FOV_MARGIN * 0.5 * w / fx, FOV_MARGIN * 0.5 * h / fy
        lox, hix = -(cx / fx + mx), (w - cx) / fx + mx
        loy, hiy = -(cy / fy + my), (h - cy) / fy + my
        rx, ry = pc[0] * iz, pc[1] * iz
        tx, ty = ti.min(ti.max(rx, lox), hix), ti.min(ti.max(ry, loy), hiy)
        J = ti.Matrix([[fx * iz, 0.0, -fx * tx * iz], [0.0, fy * iz, -fy * ty * iz]])
        A = J @ Rw
        K = ti.Matrix([[self._gdata[i, KA], self._gdata[i, KB]],
                       [self._gdata[i, KB], self._gdata[i, KC]]])
        # conic -> 2-D covariance -> (3-D covariance, A) -> J
        Gk = ti.Matrix([[acc[KA], 0.5 * acc[KB]], [0.5 * acc[KB], acc[KC]]])
        Gs2 = -(K @ Gk @ K)
        G3 = A.transpose() @ Gs2 @ A
        GJ = 2.0 * Gs2 @ A @ cov3 @ Rw.transpose()
        gu, gv = acc[U], acc[V]
        dp = ti.Vector([fx * iz * gu, fy * iz * gv,
                        -(fx * pc[0] * gu + fy * pc[1] * gv) * iz * iz + acc[Z]])
        dp[2] -= (fx * GJ[0, 0] + fy * GJ[1, 1]) * iz * iz
        dp[2] += (fx * tx * GJ[0, 2] + fy * ty * GJ[1, 2]) * iz * iz
        if lox <= rx and rx <= hix:  # tx = p_x / p_z: its own derivatives
            dp[0] -= fx * iz * iz * GJ[0, 2]
            dp[2] += fx * rx * iz * iz * GJ[0, 2]
        if loy <= ry and ry <= hiy:
            dp[1] -= fy * iz * iz * GJ[1, 2]
            dp[2] += fy * ry * iz * iz * GJ[1, 2]
        dmean = Rw.transpose() @ dp
        # colour -> SH coefficients and view direction
        clamped = self._clamped[i]
        gc = ti.Vector([acc[RED], acc[RED + 1], acc[RED + 2]])
        for ch in ti.static(range(3)):
            if (clamped >> ch) & 1:
                gc[ch] = 0.0
        dvec = x + Rw.transpose() @ tw
        dlen = dvec.norm()
        dhat = dvec / dlen
        Y = _sh_basis(dhat)
        wk = ti.Vector.zero(float, 16)
        for k in ti.static(range(self.n_coeffs)):
            if k < k_active:
                for ch in ti.static(range(3)):
                    self.d_sh[i, 3 * k + ch] = Y[k] * gc[ch]
                    wk[k] += sh[i, 3 * k + ch] * gc[ch]
        gdir = _sh_basis_grad(dhat, wk)
        dmean += (gdir - dhat * dhat.dot(gdir)) / dlen
        # 3-D covariance -> scales and rotation
        dM = 2.0 * G3 @ M
        GR = ti.Matrix.zero(float, 3, 3)
        for kk in ti.static(range(3)):
            dS = 0.0
            for r in ti.static(range(3)):
                dS += dM[r, kk] * Rq[r, kk]
                GR[r, kk] = dM[r, kk] * S[kk]
            self.d_log_scales[i, kk] = dS * S[kk]
        dqn = _quat_rot_grad(qn, GR)
        dq = (dqn - qn * qn.dot(dqn)) / qlen
        for c in ti.static(range(4)):
            self.d_quats[i, c] = dq[c]
        for c in ti.static(range(3)):
            self.d_means[i, c] = dmean[c]
        o = self._gdata[i, OPA]
        self.d_opacity_logits[i] = acc[OPA] * o * (1.0 - o)
        self.d_mean2d[i, 0] = gu
        self.d_mean2d[i, 1] = gv
        self.d_mean2d_norm_ndc[i] = ti.sqrt((gu * 0.5 * w) ** 2 + (gv * 0.5 * h) ** 2)
