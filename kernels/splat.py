"""Differentiable tile rasterizer of 3-D Gaussians (3D Gaussian Splatting), forward and backward.

One camera per call. Forward (per Gaussian, then per 16x16 tile, then per pixel):

1. camera space ``p = R x + t`` (OpenCV axes: x right, y down, z forward); culled if
   ``p_z <= 0.01``; pixel ``u = fx p_x / p_z + cx``, ``v = fy p_y / p_z + cy``;
2. ``Sigma = R(q) S S^T R(q)^T``, ``S = diag(exp(log_scale))``, quaternion ``q = (w, x, y, z)``
   normalised here;
3. EWA: ``Sigma2 = A Sigma A^T + 0.3 I``, ``A = J R``,
   ``J = [[fx, 0, -fx tx], [0, fy, -fy ty]] / p_z``
   with ``tx = clamp(p_x / p_z)`` (likewise ty) to the field of view widened by 0.3 x its half
   width on each side: ``[-(cx/fx + 0.15 W/fx), (W - cx)/fx + 0.15 W/fx]`` (gsplat's form; with a
   centred principal point it is 3DGS's ``1.3 tan(fov/2)``). The clamp only enters J;
4. colour ``max(0, sum_k Y_k(d) sh_k + 0.5)`` per channel, ``d = normalise(x - camera centre)``;
5. opacity ``sigmoid(logit)``;
6. radius ``ceil(3 sqrt(lambda))``, ``lambda = mid + sqrt(max(0.1, mid^2 - det))`` as in 3DGS;
   the Gaussian is listed in every tile its square ``+-radius`` box touches; each tile's list is
   sorted by (camera z, Gaussian index) - exact float keys, ties by index;
7. per pixel, front to back over its tile's list: ``alpha = min(0.99, o exp(power))``,
   ``power = -0.5 d^T Sigma2^-1 d`` (skipped if > 0), skipped if ``alpha < alpha_min`` (1/255), and
   the pixel stops BEFORE a Gaussian that would bring ``T`` below ``t_min`` (1e-4). Outputs:
   ``colour = sum w_i c_i + T bg``, ``alpha = 1 - T``, ``depth = sum w_i z_i`` with
   ``w_i = alpha_i T_i``: depth is NOT normalised by alpha (divide yourself for the expected z of
   the visible surface), as in kernels/render.py.

Pixel ``(x, y)`` (column, row) is sampled at its centre ``(x + 0.5, y + 0.5)``, the convention of
taichi_syncnerf/data/cameras.py (3DGS samples integer coordinates with ``cx = (W - 1) / 2``: the
same thing for a centred principal point ``cx = W / 2``).

Cameras. The datasets give OpenGL camera-to-world matrices (columns right, up, back, centre; see
data/cameras.py). :meth:`Camera.from_opengl_c2w` turns them into the OpenCV world-to-camera this
module uses: ``R = diag(1, -1, -1) R_gl^T``, ``t = -R c``. Forward-facing datasets (LLFF, Plenoptic
Video) are rendered by K-Planes in NDC; Gaussians do not use NDC: pass the world-space camera (the
recentred, scaled pose the loader returns, before ``ndc_rays``).

Spherical harmonics: degree ``D`` in 0..3 (the 3DGS count: ``(D + 1)^2`` coefficients; kernels/sh.py
counts bands, ``D + 1``); the polynomials and their order are kernels/sh.py's, which equal 3DGS's.
Field ``sh`` is (N, 3 K) with coefficient ``k`` of channel ``c`` at column ``3 k + c`` (3DGS's
in-memory (N, K, 3); its .ply stores f_rest channel-major instead).

Backward (hand-written, no Taichi autodiff): per pixel back to front from the last contributing
Gaussian, ``T_i = T_{i+1} / (1 - alpha_i)`` from the stored final T, and the colour ``B`` of what
lies behind, giving
``dL/dalpha_i = T_i sum_ch (c_i - B_i) g_ch - T_final / (1 - alpha_i) <bg, g_colour>``
where colour, depth (c = z, bg 0) and alpha (c = 1, bg 0) are channels. Pixel contributions add
into one slot per (tile, Gaussian) list entry, the slots laid out Gaussian-major (each Gaussian
owns one per tile of its rect); each Gaussian then sums its contiguous slots (deterministic, no
atomics) and chains through conic, EWA, projection, SH direction, rotation, scales and
activations. Exact derivatives everywhere:
unlike the CUDA original, a pixel where ``alpha`` hits the 0.99 clamp passes no gradient to
opacity and shape, and the field-of-view clamp of J is differentiated as written. The skips
(power > 0, alpha < alpha_min, T < t_min) make the loss piecewise smooth; gradients are those of
the smooth piece.

Per-tile sorting is a merge sort of each tile's list, one thread per tile; lists are filled with
atomic counters then sorted, so the result does not depend on thread timing. A pixel skips
without ``exp`` a Gaussian whose ``power`` is below ``log(alpha_min / o) - 1e-3`` (then
``o e^power < alpha_min`` whatever the rounding): the same decisions as the plain test.
``pixel_parallel`` picks the kernels: on a CPU (default ``False``) one thread per tile walks its
rows ``LANES`` pixels at a time (SIMD), forward and backward, ``e^power`` computed in the kernel
(:func:`_exp_neg`, within 1 ulp of the correctly rounded value), the lanes' contributions to an
entry summed before they are added to its slot (no atomics); on a GPU (default ``True``) one
thread per pixel, libm's ``exp``, atomic adds into the entry slots. A render-only forward
(``backward=False``) blends lanes on either.

The kernels live beside this module: kernels/splat_forward.py (projection, tile lists, sorting,
blending), kernels/splat_backward.py (the backward) and kernels/splat_funcs.py (constants and
``ti.func`` helpers); :class:`Rasterizer` owns the fields and runs them.

Example::

    ras = Rasterizer(max_gaussians=20000, width=128, height=96, sh_degree=3)
    cam = Camera.from_opengl_c2w(intrinsics, c2w)
    ras.forward(means, log_scales, quats, opacity_logits, sh, n, cam, background=(1, 1, 1))
    ... write ras.colour.grad (e.g. from a loss kernel) ...
    ras.backward(d_colour=ras.colour.grad)
    ras.d_means, ras.d_log_scales, ras.d_quats, ras.d_opacity_logits, ras.d_sh  # rows < n
"""

import time
from dataclasses import dataclass

import numpy as np
import taichi as ti
from taichi.lang.util import to_numpy_type

from .splat_backward import BackwardKernels
from .splat_forward import ForwardKernels
from .splat_funcs import ALPHA_MIN, EXP_FLOOR, EXP_POLY, G_STRIDE, MAX_SH_DEGREE, N_DATA, T_MIN, TILE


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics in pixels, OpenCV world-to-camera ``p = R x + t``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)

    def __post_init__(self):
        object.__setattr__(self, "R", np.asarray(self.R, np.float64).reshape(3, 3))
        object.__setattr__(self, "t", np.asarray(self.t, np.float64).reshape(3))
        if self.width < 1 or self.height < 1 or not (self.fx > 0 and self.fy > 0):
            raise ValueError("camera needs width, height >= 1 and fx, fy > 0")

    @classmethod
    def from_opengl_c2w(cls, intrinsics, c2w) -> "Camera":
        """From the project's intrinsics (fx, fy, cx, cy, width, height) and a (3, 4) OpenGL
        camera-to-world matrix (data/cameras.py's convention)."""
        c2w = np.asarray(c2w, np.float64)
        R = np.diag([1.0, -1.0, -1.0]) @ c2w[:3, :3].T
        return cls(float(intrinsics.fx), float(intrinsics.fy), float(intrinsics.cx),
                   float(intrinsics.cy), int(intrinsics.width), int(intrinsics.height), R,
                   -R @ c2w[:3, 3])

    @property
    def centre(self) -> np.ndarray:
        return -self.R.T @ self.t

    def kernel_args(self) -> tuple:
        """R (9, row-major), t (3), fx, fy, cx, cy as floats, then width, height."""
        return (*(float(v) for v in self.R.ravel()), *(float(v) for v in self.t),
                float(self.fx), float(self.fy), float(self.cx), float(self.cy),
                int(self.width), int(self.height))


def n_coefficients(sh_degree: int) -> int:
    return (sh_degree + 1) ** 2


# ------------------------------------------------------------------------------- rasterizer


@ti.data_oriented
class Rasterizer(ForwardKernels, BackwardKernels):
    """Tile rasterizer with capacity for ``max_gaussians`` Gaussians of SH degree <= ``sh_degree``
    and images up to ``width`` x ``height``.

    Outputs of :meth:`forward` (image rows < camera height, columns < camera width):
    ``colour`` (H, W, 3), ``alpha`` (H, W), ``depth`` (H, W) (all with ``needs_grad``: their
    ``.grad`` may hold the output gradients), ``final_t`` (H, W), ``n_contrib`` (H, W) int32 (list
    position + 1 of the last Gaussian blended), ``radius`` (N,) int32 (0: culled or off-screen),
    ``n_entries`` (tile-list entries).

    Outputs of :meth:`backward` (rows < n, OVERWRITTEN; plain fields, e.g. for a deformation
    field's backward to read): ``d_means`` (N, 3), ``d_log_scales`` (N, 3), ``d_quats`` (N, 4),
    ``d_opacity_logits`` (N,), ``d_sh`` (N, 3 K), ``d_background`` (3,), ``d_mean2d`` (N, 2)
    (dL/d(u, v) in pixels) and ``d_mean2d_norm_ndc`` (N,): |dL/d(u, v)| in the NDC units of 3DGS's
    densification statistic (pixel gradient x (W/2, H/2)); the caller accumulates it over views.

    The per-entry buffers start at ``max_entries`` (default 16 per Gaussian) and are reallocated
    1.5x larger when a frame needs more (the old fields are not freed; kernels using them
    compile again once).
    """

    def __init__(self, max_gaussians: int, width: int, height: int, sh_degree: int = 3,
                 max_entries: int | None = None, pixel_parallel: bool | None = None):
        if max_gaussians < 1 or width < 1 or height < 1:
            raise ValueError("max_gaussians, width and height must be >= 1")
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {sh_degree}")
        N, W, H = int(max_gaussians), int(width), int(height)
        self.max_gaussians, self.width, self.height, self.sh_degree = N, W, H, int(sh_degree)
        self.n_coeffs = n_coefficients(sh_degree)
        self.max_tiles = -(-W // TILE) * -(-H // TILE)
        on_cpu = ti.lang.impl.current_cfg().arch in (ti.x64, ti.arm64)
        self.pixel_parallel = (not on_cpu) if pixel_parallel is None else bool(pixel_parallel)
        # loops with one thread per tile: one tile per CPU task (balance), 32 per GPU block
        self._tile_block = 1 if on_cpu else 32
        self._gdata = ti.field(float, shape=(N, G_STRIDE))
        prec = "f32" if ti.lang.impl.current_cfg().default_fp == ti.f32 else "f64"
        self._exp_floor, self._exp_poly = EXP_FLOOR[prec], EXP_POLY[prec]
        self._exp_single = prec == "f32"
        self._clamped = ti.field(ti.i32, shape=N)  # bit c: colour channel c clamped at 0
        self._rect = ti.field(ti.i32, shape=(N, 4))  # tile x0, y0, x1, y1 (exclusive)
        self._reach = ti.field(ti.i32, shape=(N, 4))  # the part of the rect the tile test is asked about
        self._gslot = ti.field(ti.i32, shape=N + 1)  # first gradient slot of each Gaussian
        self.radius = ti.field(ti.i32, shape=N)
        self._tile_count = ti.field(ti.i32, shape=self.max_tiles)
        self._tile_start = ti.field(ti.i32, shape=self.max_tiles + 1)
        self.colour = ti.field(float, shape=(H, W, 3), needs_grad=True)
        self.alpha = ti.field(float, shape=(H, W), needs_grad=True)
        self.depth = ti.field(float, shape=(H, W), needs_grad=True)
        self.final_t = ti.field(float, shape=(H, W))
        self.n_contrib = ti.field(ti.i32, shape=(H, W))
        self.d_means = ti.field(float, shape=(N, 3))
        self.d_log_scales = ti.field(float, shape=(N, 3))
        self.d_quats = ti.field(float, shape=(N, 4))
        self.d_opacity_logits = ti.field(float, shape=N)
        self.d_sh = ti.field(float, shape=(N, 3 * self.n_coeffs))
        self.d_background = ti.field(float, shape=3)
        self.d_mean2d = ti.field(float, shape=(N, 2))
        self.d_mean2d_norm_ndc = ti.field(float, shape=N)
        self.n_entries = self.n_slots = 0
        self.stage_ms = None  # set to {} to time each stage into it (a sync after each kernel)
        self._capacity = 0
        self._grow(max_entries if max_entries is not None else 16 * N)
        self._last = None

    def _grow(self, needed: int):
        """(Re)allocate the per-entry buffers; kernels compile once more for the new fields."""
        cap = max(int(needed), 16)
        self._ekey, self._ekey2 = ti.field(float, shape=cap), ti.field(float, shape=cap)
        self._eid, self._eid2 = ti.field(ti.i32, shape=cap), ti.field(ti.i32, shape=cap)
        self._eslot = ti.field(ti.i32, shape=cap)  # entry -> gradient slot (Gaussian-major)
        self._egrad = ti.field(float, shape=(cap, N_DATA))
        self._capacity = cap

    # ---- public API ---------------------------------------------------------------------------
    def forward(self, means, log_scales, quats, opacity_logits, sh, n: int, camera: Camera,
                background=(0.0, 0.0, 0.0), *, sh_degree: int | None = None,
                alpha_min: float = ALPHA_MIN, t_min: float = T_MIN, backward: bool = True) -> None:
        """Render Gaussians ``< n`` seen by ``camera``.

        ``backward=False``: an image only (evaluation, videos, the viewer), its pixels blended
        ``LANES`` at a time as a CPU rasterizer always does (see the module docstring: the same
        image as the per-pixel kernel to rounding; a pixel within rounding of a threshold may blend
        one Gaussian more or fewer, as between float32 and float64); :meth:`backward` then refuses
        to run.

        means (N, 3) world positions; log_scales (N, 3); quats (N, 4) (w, x, y, z), any non-zero
        norm; opacity_logits (N,); sh (N, >= 3 K) (column 3 k + c, see the module docstring): Taichi
        fields of the default float type with at least ``n`` rows, left unchanged. camera: a
        :class:`Camera` no larger than the capacity. background: 3 floats. sh_degree: the active
        degree (default: the capacity's). alpha_min / t_min: the skip and stop thresholds.
        """
        n = int(n)
        if not 0 <= n <= self.max_gaussians:
            raise ValueError(f"n {n} outside [0, {self.max_gaussians}]")
        deg = self.sh_degree if sh_degree is None else int(sh_degree)
        if not 0 <= deg <= self.sh_degree:
            raise ValueError(f"sh_degree must be in 0..{self.sh_degree}, got {deg}")
        k_active = n_coefficients(deg)
        for name, f, cols in (("means", means, 3), ("log_scales", log_scales, 3),
                              ("quats", quats, 4), ("sh", sh, 3 * k_active)):
            if len(f.shape) != 2 or f.shape[0] < n or f.shape[1] < cols:
                raise ValueError(
                    f"{name} must be a field of shape (>= {n}, >= {cols}), got {f.shape}")
        if len(opacity_logits.shape) != 1 or opacity_logits.shape[0] < n:
            raise ValueError(f"opacity_logits must be a field of shape (>= {n},)")
        if camera.width > self.width or camera.height > self.height:
            raise ValueError(f"camera image {camera.width}x{camera.height} exceeds the capacity "
                             f"{self.width}x{self.height}")
        bg = tuple(float(v) for v in background)
        if len(bg) != 3:
            raise ValueError("background must have 3 values")
        cam = camera.kernel_args()
        w, h = camera.width, camera.height
        n_tiles = -(-w // TILE) * -(-h // TILE)
        self._timed("project", self._project, means, log_scales, quats, opacity_logits, sh, n,
                    k_active, float(alpha_min), *cam)
        total = int(self._timed("scan", self._scan, n_tiles, n))
        slots = int(self._gslot[n])  # one per tile of each rect; entries only where the Gaussian reaches
        if max(total, slots) > self._capacity:
            self._grow(int(max(total, slots) * 1.5))
        self.n_entries, self.n_slots = total, slots
        self._timed("fill", self._fill, self._ekey, self._eid, n, w, h)
        self._timed("sort", self._sort, self._ekey, self._eid, self._ekey2, self._eid2,
                    self._eslot, w, h)
        lanes = not backward or not self.pixel_parallel
        self._timed("render", self._render_lanes if lanes else self._render, self._eid, w, h, *bg,
                    float(alpha_min), float(t_min))
        self._last = dict(inputs=(means, log_scales, quats, opacity_logits, sh), n=n, cam=cam, k_active=k_active,
                          bg=bg, alpha_min=float(alpha_min), w=w, h=h) if backward else None

    def backward(self, d_colour=None, d_alpha=None, d_depth=None) -> None:
        """Gradients of the Gaussians of the last :meth:`forward` (inputs unchanged since).

        Each output gradient is None (term off), a numpy array of the output's shape ((H, W, 3),
        (H, W), (H, W); the camera's H, W or the capacity's) copied into the output's ``.grad``,
        or a Taichi field of the capacity's shape (the output's ``.grad`` itself is used in place).
        """
        if self._last is None:
            raise RuntimeError("backward() needs a forward() first (with backward=True)")
        s = self._last
        use = [self._set_grad(fld, g, s["h"], s["w"]) for fld, g in
               ((self.colour, d_colour), (self.alpha, d_alpha), (self.depth, d_depth))]
        self._timed("backward_pixels", self._backward_pixels if self.pixel_parallel else self._backward_lanes,
                    self._eid, self._eslot, self._egrad, self.n_slots, s["w"], s["h"], *s["bg"], s["alpha_min"],
                    *(int(u) for u in use))
        self.d_background.fill(0.0)
        if use[0]:
            self._timed("backward_background", self._background_grad, s["w"], s["h"])
        self._timed("backward_gaussians", self._backward_gaussians, *s["inputs"], self._egrad,
                    s["n"], s["k_active"], *s["cam"])

    def read_colour(self, width: int, height: int, clip: bool = True) -> np.ndarray:
        """The (height, width, 3) float64 colour of the last forward (rows and columns of its camera),
        clipped to [0, 1] unless ``clip`` is False: one pass, where ``colour.to_numpy()`` copies the
        whole capacity first."""
        out = np.empty((int(height), int(width), 3), np.float64)
        self._read_colour(out, int(width), int(height), int(bool(clip)))
        return out

    def _timed(self, name, kernel, *args):
        if self.stage_ms is None:
            return kernel(*args)
        ti.sync()
        t0 = time.perf_counter()
        out = kernel(*args)
        ti.sync()
        self.stage_ms[name] = self.stage_ms.get(name, 0.0) + 1e3 * (time.perf_counter() - t0)
        return out

    @staticmethod
    def _set_grad(out, g, h, w) -> bool:
        if g is None:
            return False
        if isinstance(g, np.ndarray):
            full = np.zeros(out.shape, dtype=to_numpy_type(out.dtype))
            if g.shape[:2] == (h, w):
                full[:h, :w] = g
            elif g.shape == out.shape:
                full[:] = g
            else:
                raise ValueError(f"output gradient of shape {g.shape}: expected {out.shape} or "
                                 f"({h}, {w}, ...)")
            out.grad.from_numpy(full)
        elif g is not out.grad:
            if g.shape != out.shape:
                raise ValueError(f"output gradient field of shape {g.shape}: expected {out.shape}")
            out.grad.copy_from(g)
        return True
