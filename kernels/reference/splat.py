"""float64 numpy twin of kernels/splat.py (Rasterizer.forward / backward), written for clarity.

Same conventions, thresholds and order of operations as the kernels (see kernels/splat.py's
docstring); the spherical harmonics come from the closed form of kernels/reference/sh.py. The
pixel loops run per tile, vectorised over the tile's pixels: each pixel still walks the tile's
list front to back (backward: back to front) with its own skips and early stop. Differences from
the kernels, by design: the backward adds each pixel's contribution straight into per-Gaussian
sums (the kernels use per-entry slots), so sums agree to round-off, not bit for bit; and the
kernels' exp-free pre-skip of far pixels is left out (it makes the same decisions).
"""
import numpy as np

from ..splat_funcs import ALPHA_MAX, ALPHA_MIN, CULL_SLACK, FOV_MARGIN, LOW_PASS, NEAR, T_MIN, TILE
from ..sh import C1, C2, C3
from . import sh as ref_sh


def quat_to_rot(q):
    """Rotation matrix of the unit quaternion q = (w, x, y, z)."""
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def quat_rot_grad(q, G):
    """dL/dq of L(quat_to_rot(q)) for dL/dR = G, each entry of q free."""
    w, x, y, z = q
    dR = {  # dR/dw, dR/dx, dR/dy, dR/dz
        0: 2 * np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]]),
        1: 2 * np.array([[0, y, z], [y, -2 * x, -w], [z, w, -2 * x]]),
        2: 2 * np.array([[-2 * y, x, w], [x, 0, z], [-w, z, -2 * y]]),
        3: 2 * np.array([[-2 * z, -w, x], [w, -2 * z, y], [x, y, 0]]),
    }
    return np.array([np.sum(dR[k] * G) for k in range(4)])


def sh_basis(d, n_coeffs):
    """The first ``n_coeffs`` real SH values at direction d (kernels/reference/sh.py)."""
    bands = int(round(np.sqrt(n_coeffs)))
    return ref_sh.sh_encode(np.asarray(d, np.float64)[None], bands)[0]


def sh_basis_jacobian(d):
    """(16, 3): partial derivatives of the 16 SH polynomials (kernels/sh.py form) at d."""
    x, y, z = d
    J = np.zeros((16, 3))
    J[1] = (0, -C1, 0)
    J[2] = (0, 0, C1)
    J[3] = (-C1, 0, 0)
    J[4] = C2[0] * np.array([y, x, 0])
    J[5] = -C2[0] * np.array([0, z, y])
    J[6] = (0, 0, 2 * C2[1] * z)
    J[7] = -C2[0] * np.array([z, 0, x])
    J[8] = C2[3] * np.array([2 * x, -2 * y, 0])
    J[9] = C3[0] * np.array([-6 * x * y, 3 * (y * y - x * x), 0])
    J[10] = C3[1] * np.array([y * z, x * z, x * y])
    J[11] = C3[2] * np.array([0, 1 - 5 * z * z, -10 * y * z])
    J[12] = (0, 0, C3[3] * (15 * z * z - 3))
    J[13] = C3[2] * np.array([1 - 5 * z * z, 0, -10 * x * z])
    J[14] = C3[4] * np.array([2 * x * z, -2 * y * z, x * x - y * y])
    J[15] = C3[0] * np.array([3 * (y * y - x * x), 6 * x * y, 0])
    return J


def _fov_limits(camera):
    w, h = camera.width, camera.height
    mx, my = FOV_MARGIN * 0.5 * w / camera.fx, FOV_MARGIN * 0.5 * h / camera.fy
    return (-(camera.cx / camera.fx + mx), (w - camera.cx) / camera.fx + mx,
            -(camera.cy / camera.fy + my), (h - camera.cy) / camera.fy + my)


def _geometry(mean, log_scale, quat, camera):
    """Camera-space mean, covariances and the EWA pieces of one Gaussian (no culling)."""
    R, t, fx, fy = camera.R, camera.t, camera.fx, camera.fy
    pc = R @ mean + t
    S = np.exp(log_scale)
    qn = quat / np.linalg.norm(quat)
    Rq = quat_to_rot(qn)
    M = Rq @ np.diag(S)
    cov3 = M @ M.T
    lox, hix, loy, hiy = _fov_limits(camera)
    rx, ry = pc[0] / pc[2], pc[1] / pc[2]
    tx, ty = min(max(rx, lox), hix), min(max(ry, loy), hiy)
    J = np.array([[fx / pc[2], 0, -fx * tx / pc[2]], [0, fy / pc[2], -fy * ty / pc[2]]])
    A = J @ R
    cov2 = A @ cov3 @ A.T + LOW_PASS * np.eye(2)
    return dict(pc=pc, S=S, qn=qn, Rq=Rq, M=M, cov3=cov3, A=A, cov2=cov2, rx=rx, ry=ry, tx=tx,
                ty=ty, x_free=lox <= rx <= hix, y_free=loy <= ry <= hiy)


def _tile_span(m, r, n_tiles):
    """Tiles [first, last) covering pixel indices m - r .. m + r, clamped to [0, n_tiles]."""
    return (int(min(max(np.floor((m - r) / TILE), 0), n_tiles)),
            int(min(max(np.floor((m + r + TILE - 1) / TILE), 0), n_tiles)))


def project(means, log_scales, quats, opacity_logits, sh, camera, n_coeffs):
    """Per-Gaussian screen data: u, v, conic (a, b, c) of the inverse 2-D covariance, z, rgb,
    clamped (N, 3) bool, opacity, radius (0: culled) and tile rect (x0, y0, x1, y1)."""
    N = len(means)
    w, h = camera.width, camera.height
    tiles_x, tiles_y = -(-w // TILE), -(-h // TILE)
    out = dict(u=np.zeros(N), v=np.zeros(N), conic=np.zeros((N, 3)), z=np.zeros(N),
               rgb=np.zeros((N, 3)), clamped=np.zeros((N, 3), bool), opacity=np.zeros(N),
               radius=np.zeros(N, np.int64), rect=np.zeros((N, 4), np.int64))
    for i in range(N):
        pc = camera.R @ means[i] + camera.t
        if not pc[2] > NEAR:
            continue
        g = _geometry(means[i], log_scales[i], quats[i], camera)
        (a, b), (_, c) = g["cov2"]
        det = a * c - b * b
        if not det > 0:
            continue
        mid = 0.5 * (a + c)
        r = np.ceil(3 * np.sqrt(mid + np.sqrt(max(0.1, mid * mid - det))))
        u = camera.fx * pc[0] / pc[2] + camera.cx
        v = camera.fy * pc[1] / pc[2] + camera.cy
        x0, x1 = _tile_span(u - 0.5, r, tiles_x)
        y0, y1 = _tile_span(v - 0.5, r, tiles_y)
        if not (x1 > x0 and y1 > y0):
            continue
        d = means[i] - camera.centre
        Y = sh_basis(d / np.linalg.norm(d), n_coeffs)
        col = 0.5 + Y @ sh[i, :3 * n_coeffs].reshape(n_coeffs, 3)
        out["clamped"][i] = col < 0
        out["rgb"][i] = np.maximum(col, 0.0)
        out["u"][i], out["v"][i], out["z"][i] = u, v, pc[2]
        out["conic"][i] = (c / det, -b / det, a / det)
        out["opacity"][i] = 1 / (1 + np.exp(-opacity_logits[i]))
        out["radius"][i] = int(r)
        out["rect"][i] = (x0, y0, x1, y1)
    return out


def tile_reaches(u, v, conic, lcut, tx, ty, width, height, slack=CULL_SLACK):
    """Whether a pixel centre of tile (tx, ty) can pass the skip test ``power >= lcut`` (the
    kernel's exp-free form of ``alpha >= alpha_min``): the minimum of ``q = -2 power`` over the
    tile's rectangle of pixel centres against ``-2 lcut``, with the kernel's relative margin."""
    if lcut <= -1e29:
        return True
    a, b, c = conic
    dxlo = u - min(tx * TILE + TILE - 0.5, width - 0.5)
    dxhi = u - (tx * TILE + 0.5)
    dylo = v - min(ty * TILE + TILE - 0.5, height - 0.5)
    dyhi = v - (ty * TILE + 0.5)

    def q(dx, dy):
        return a * dx * dx + 2.0 * b * dx * dy + c * dy * dy

    qmin = 0.0
    if not (dxlo <= 0.0 <= dxhi and dylo <= 0.0 <= dyhi):
        qmin = min(min(q(dx, min(max(-b * dx / c, dylo), dyhi)) for dx in (dxlo, dxhi)),
                   min(q(min(max(-b * dy / a, dxlo), dxhi), dy) for dy in (dylo, dyhi)))
    limit = -2.0 * lcut
    return qmin <= limit + slack * (1.0 + abs(limit))


def bin_gaussians(proj, width, height, alpha_min=ALPHA_MIN):
    """Per tile (row-major, 16x16) the ids of the Gaussians whose rect covers it and that can reach
    one of its pixels (:func:`tile_reaches`), sorted by (z, id): a list of int arrays."""
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    r = proj["rect"]
    with np.errstate(divide="ignore"):
        lcut = (np.log(alpha_min / np.maximum(proj["opacity"], 1e-300)) - 1e-3 if alpha_min > 0
                else np.full(len(r), -1e30))
    lists = []
    for t in range(tiles_x * tiles_y):
        tx, ty = t % tiles_x, t // tiles_x
        ids = np.nonzero((proj["radius"] > 0) & (r[:, 0] <= tx) & (tx < r[:, 2])
                         & (r[:, 1] <= ty) & (ty < r[:, 3]))[0]
        ids = np.array([i for i in ids if tile_reaches(proj["u"][i], proj["v"][i], proj["conic"][i], lcut[i], tx, ty,
                                                      width, height)], np.int64)
        lists.append(ids[np.lexsort((ids, proj["z"][ids]))])
    return lists


def _tile_pixels(t, width, height):
    tiles_x = -(-width // TILE)
    x0, y0 = (t % tiles_x) * TILE, (t // tiles_x) * TILE
    ys, xs = np.mgrid[y0:min(y0 + TILE, height), x0:min(x0 + TILE, width)]
    return ys.ravel(), xs.ravel()


def _alpha(proj, g, ys, xs):
    """power, exp(power), unclamped and clamped alpha of Gaussian g at pixel centres."""
    dx, dy = proj["u"][g] - (xs + 0.5), proj["v"][g] - (ys + 0.5)
    ka, kb, kc = proj["conic"][g]
    power = -0.5 * (ka * dx * dx + kc * dy * dy) - kb * dx * dy
    G = np.exp(power)
    a_raw = proj["opacity"][g] * G
    return dx, dy, power, G, a_raw, np.minimum(ALPHA_MAX, a_raw)


def forward(means, log_scales, quats, opacity_logits, sh, camera, background=(0.0, 0.0, 0.0),
            sh_degree=3, alpha_min=ALPHA_MIN, t_min=T_MIN):
    """Render; returns a dict: colour (H, W, 3), alpha, depth, final_t, n_contrib (H, W), the
    projection (:func:`project`), the tile lists, and what :func:`backward` needs."""
    args = [np.asarray(a, np.float64) for a in (means, log_scales, quats, opacity_logits, sh)]
    K = (sh_degree + 1) ** 2
    w, h = camera.width, camera.height
    bg = np.asarray(background, np.float64)
    proj = project(*args, camera, K)
    lists = bin_gaussians(proj, w, h, alpha_min)
    out = dict(colour=np.zeros((h, w, 3)), alpha=np.zeros((h, w)), depth=np.zeros((h, w)),
               final_t=np.zeros((h, w)), n_contrib=np.zeros((h, w), np.int64))
    for t, ids in enumerate(lists):
        ys, xs = _tile_pixels(t, w, h)
        T, D, C = np.ones(len(ys)), np.zeros(len(ys)), np.zeros((len(ys), 3))
        last, alive = np.zeros(len(ys), np.int64), np.ones(len(ys), bool)
        for j, g in enumerate(ids):
            _, _, power, _, _, alpha = _alpha(proj, g, ys, xs)
            use = alive & (power <= 0) & (alpha >= alpha_min)
            test_t = T * (1 - alpha)
            stop = use & (test_t < t_min)  # the pixel stops before this Gaussian
            alive &= ~stop
            use &= ~stop
            wgt = np.where(use, alpha * T, 0.0)
            C += wgt[:, None] * proj["rgb"][g]
            D += wgt * proj["z"][g]
            T = np.where(use, test_t, T)
            last[use] = j + 1
        out["colour"][ys, xs] = C + T[:, None] * bg
        out["alpha"][ys, xs] = 1 - T
        out["depth"][ys, xs] = D
        out["final_t"][ys, xs] = T
        out["n_contrib"][ys, xs] = last
    out.update(proj=proj, lists=lists, inputs=args, camera=camera, background=bg, n_coeffs=K,
               alpha_min=alpha_min)
    return out


def backward(fwd, d_colour=None, d_alpha=None, d_depth=None):
    """Gradients of the loss whose output gradients are given (None: zero) with respect to means,
    log_scales, quats, opacity_logits, sh, background; plus d_mean2d (N, 2) in pixels and its NDC
    norm (the densification statistic). Returns a dict of arrays."""
    means, log_scales, quats, logits, sh = fwd["inputs"]
    cam, proj, bg, K = fwd["camera"], fwd["proj"], fwd["background"], fwd["n_coeffs"]
    w, h = cam.width, cam.height
    N = len(means)
    gC = np.zeros((h, w, 3)) if d_colour is None else np.asarray(d_colour, np.float64)
    gA = np.zeros((h, w)) if d_alpha is None else np.asarray(d_alpha, np.float64)
    gD = np.zeros((h, w)) if d_depth is None else np.asarray(d_depth, np.float64)
    # per Gaussian: dL/du, dL/dv, dL/dconic (a, b, c), dL/dopacity, dL/drgb, dL/dz
    g_uv, g_conic, g_opa = np.zeros((N, 2)), np.zeros((N, 3)), np.zeros(N)
    g_rgb, g_z = np.zeros((N, 3)), np.zeros(N)
    for t, ids in enumerate(fwd["lists"]):
        ys, xs = _tile_pixels(t, w, h)
        last = fwd["n_contrib"][ys, xs]
        T = fwd["final_t"][ys, xs].copy()
        gc, ga, gd = gC[ys, xs], gA[ys, xs], gD[ys, xs]
        bg_term = fwd["final_t"][ys, xs] * (gc @ bg)
        Bc, Bd, Ba = np.zeros((len(ys), 3)), np.zeros(len(ys)), np.zeros(len(ys))
        for j in range(int(last.max(initial=0)) - 1, -1, -1):
            g = ids[j]
            dx, dy, power, G, a_raw, alpha = _alpha(proj, g, ys, xs)
            use = (j < last) & (power <= 0) & (alpha >= fwd["alpha_min"])
            T = np.where(use, T / (1 - alpha), T)
            wgt = np.where(use, alpha * T, 0.0)
            rgb, z = proj["rgb"][g], proj["z"][g]
            d_a = (T * (np.sum((rgb - Bc) * gc, 1) + (z - Bd) * gd + (1 - Ba) * ga)
                   - bg_term / (1 - alpha))
            Bc = np.where(use[:, None], alpha[:, None] * rgb + (1 - alpha[:, None]) * Bc, Bc)
            Bd = np.where(use, alpha * z + (1 - alpha) * Bd, Bd)
            Ba = np.where(use, alpha + (1 - alpha) * Ba, Ba)
            free = use & (a_raw < ALPHA_MAX)
            dpow = np.where(free, alpha * d_a, 0.0)
            ka, kb, kc = proj["conic"][g]
            g_uv[g] += (np.sum(-dpow * (ka * dx + kb * dy)), np.sum(-dpow * (kb * dx + kc * dy)))
            g_conic[g] += (np.sum(-0.5 * dpow * dx * dx), np.sum(-dpow * dx * dy),
                           np.sum(-0.5 * dpow * dy * dy))
            g_opa[g] += np.sum(np.where(free, G * d_a, 0.0))
            g_rgb[g] += wgt @ gc
            g_z[g] += np.sum(wgt * gd)
    out = dict(d_means=np.zeros((N, 3)), d_log_scales=np.zeros((N, 3)), d_quats=np.zeros((N, 4)),
               d_opacity_logits=np.zeros(N), d_sh=np.zeros_like(sh), d_mean2d=g_uv.copy(),
               d_background=np.einsum("hw,hwc->c", fwd["final_t"], gC))
    out["d_mean2d_norm_ndc"] = np.hypot(g_uv[:, 0] * 0.5 * w, g_uv[:, 1] * 0.5 * h)
    fx, fy = cam.fx, cam.fy
    for i in np.nonzero(proj["radius"] > 0)[0]:
        geo = _geometry(means[i], log_scales[i], quats[i], cam)
        pc, A, M, Rq, S = geo["pc"], geo["A"], geo["M"], geo["Rq"], geo["S"]
        # conic -> 2-D covariance (symmetric-matrix gradients, b split over both entries)
        ka, kb, kc = proj["conic"][i]
        Kc = np.array([[ka, kb], [kb, kc]])
        Gk = np.array([[g_conic[i, 0], 0.5 * g_conic[i, 1]], [0.5 * g_conic[i, 1], g_conic[i, 2]]])
        Gs2 = -Kc @ Gk @ Kc
        G3 = A.T @ Gs2 @ A
        GJ = 2 * Gs2 @ A @ geo["cov3"] @ cam.R.T
        # J and the projection -> camera-space mean
        z = pc[2]
        gu, gv = g_uv[i]
        dp = np.array([fx / z * gu, fy / z * gv,
                       -(fx * pc[0] * gu + fy * pc[1] * gv) / z**2 + g_z[i]])
        dp[2] -= (fx * GJ[0, 0] + fy * GJ[1, 1]) / z**2
        dp[2] += (fx * geo["tx"] * GJ[0, 2] + fy * geo["ty"] * GJ[1, 2]) / z**2
        if geo["x_free"]:
            dp[0] -= fx / z**2 * GJ[0, 2]
            dp[2] += fx * geo["rx"] / z**2 * GJ[0, 2]
        if geo["y_free"]:
            dp[1] -= fy / z**2 * GJ[1, 2]
            dp[2] += fy * geo["ry"] / z**2 * GJ[1, 2]
        dmean = cam.R.T @ dp
        # colour -> SH and view direction
        gc = np.where(proj["clamped"][i], 0.0, g_rgb[i])
        dvec = means[i] - cam.centre
        dhat = dvec / np.linalg.norm(dvec)
        Y = sh_basis(dhat, K)
        out["d_sh"][i, :3 * K] = np.outer(Y, gc).ravel()
        wk = sh[i, :3 * K].reshape(K, 3) @ gc
        gdir = wk @ sh_basis_jacobian(dhat)[:K]
        dmean += (gdir - dhat * (dhat @ gdir)) / np.linalg.norm(dvec)
        # 3-D covariance -> scales, rotation, quaternion
        dM = 2 * G3 @ M
        out["d_log_scales"][i] = np.sum(dM * Rq, 0) * S
        dqn = quat_rot_grad(geo["qn"], dM * S[None, :])
        out["d_quats"][i] = (dqn - geo["qn"] * (geo["qn"] @ dqn)) / np.linalg.norm(quats[i])
        out["d_means"][i] = dmean
        o = proj["opacity"][i]
        out["d_opacity_logits"][i] = g_opa[i] * o * (1 - o)
    return out
