"""Ray sampling into packed samples: stratified, importance (proposal) resampling, ray-box clipping.

Packed convention (docs/ARCHITECTURE.md): ray ``r < n_rays`` owns samples
``ray_start[r] .. ray_start[r] + ray_count[r] - 1``; sample ``s`` is the interval
``[t0[s], t1[s]]`` of ray ``ray_id[s]``, sorted within the ray with ``t1[s] <= t0[s + 1]``.
A :class:`RaySampler` owns one packed set (one per sampling level) and fills it in three passes:
a count pass (samples wanted per ray; 0 for rays that miss), a serialized exclusive scan
(deterministic; clamps the total to the capacity, later rays first losing samples, see
``n_dropped``), then a fill pass with one thread per ray. Rays with zero samples are valid
everywhere (renderer, losses). Sampling has no gradients.

Spacing: ``"linear"`` places edges uniformly in ``t``; ``"disparity"`` uniformly in ``1 / t``
(forward-facing scenes; needs ``near > 0``, ``t`` is clamped to 1e-6 before inverting).
Importance resampling treats each previous interval as uniform in the same spacing coordinate.

Randomness is a counter-based hash (PCG) of ``(seed, ray index, edge index)``: results depend only
on ``seed`` (pass e.g. the step number), not on threads or backend, and the numpy twin reproduces
them. ``jitter=False`` gives deterministic bin edges for evaluation. Both modes match
kernels/reference/sampling.py to float64 round-off (stratified bit for bit here; importance within
~1e-14, as fast-math and summation order may differ).

Example::

    ray_aabb(origins, dirs, near, far, n, aabb=(-1.3, -1.3, -1.3, 1.3, 1.3, 1.3), near_min=0.05)
    prop = RaySampler(max_rays=4096, max_samples=4096 * 256)
    prop.stratified(near, far, n, 256, jitter=True, seed=step)
    # ... proposal density at prop sample midpoints -> prop_renderer = VolumeRenderer(colour=False)
    fine = RaySampler(4096, 4096 * 48)
    fine.importance(prop, prop_renderer.weights, n, 48, jitter=True, seed=step)
    fine.positions(origins, dirs, xyz)            # xyz[s, 0:3] = o + d * (t0 + t1) / 2
    fine.normalized_coords(near, far)             # s0, s1 for the distortion loss
"""
import taichi as ti

SPACINGS = {"linear": 0, "disparity": 1}
TINY_T = 1e-6
IMPORTANCE_SALT = 0x68E31DA4


@ti.func
def pcg(v):
    state = v * ti.u32(747796405) + ti.u32(2891336453)
    word = ((state >> ((state >> ti.u32(28)) + ti.u32(4))) ^ state) * ti.u32(277803737)
    return (word >> ti.u32(22)) ^ word


@ti.func
def ray_key(seed, a):
    """Per-ray random key from (u32 seed, int a); feed it to ``key_uniform``."""
    return pcg(pcg(seed) ^ ti.cast(a, ti.u32))


@ti.func
def key_uniform(key, b):
    """Uniform float in [0, 1) with 24 random bits: ``pcg(pcg(pcg(seed) ^ a) ^ b) >> 8``."""
    h = pcg(key ^ ti.cast(b, ti.u32)) >> ti.u32(8)
    return ti.cast(ti.cast(h, ti.i32), float) * (1.0 / 16777216.0)


@ti.func
def to_spacing(t, spacing):
    r = t
    if spacing == 1:
        r = 1.0 / ti.max(t, TINY_T)
    return r


@ti.func
def from_spacing(g, spacing):
    r = g
    if spacing == 1:
        r = 1.0 / g
    return r


@ti.func
def padded_weight(weights, a, m, i, padding, blur):
    """Resampling histogram of bin i of a ray (samples a .. a+m-1): max-blur (mip-NeRF), + padding."""
    w = ti.max(weights[a + i], 0.0)
    if blur:
        wl = ti.max(weights[a + ti.max(i - 1, 0)], 0.0)
        wr = ti.max(weights[a + ti.min(i + 1, m - 1)], 0.0)
        w = 0.5 * (ti.max(wl, w) + ti.max(w, wr))
    return w + padding


def _spacing_code(spacing):
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return SPACINGS[spacing]


@ti.data_oriented
class RaySampler:
    """One packed sample set: ``ray_start``, ``ray_count`` (int32, shape (max_rays,)) and ``t0``,
    ``t1`` (float), ``ray_id`` (int32), ``s0``, ``s1`` (float; see :meth:`normalized_coords`), all of
    shape (max_samples,). After a fill, ``n_rays``, ``n_samples`` (active sizes) and ``n_dropped``
    (samples that did not fit) describe the content.
    """

    def __init__(self, max_rays: int, max_samples: int):
        if max_rays < 1 or max_samples < 1:
            raise ValueError("max_rays and max_samples must be >= 1")
        self.max_rays, self.max_samples = int(max_rays), int(max_samples)
        self.ray_start = ti.field(ti.i32, shape=self.max_rays)
        self.ray_count = ti.field(ti.i32, shape=self.max_rays)
        self.t0 = ti.field(float, shape=self.max_samples)
        self.t1 = ti.field(float, shape=self.max_samples)
        self.ray_id = ti.field(ti.i32, shape=self.max_samples)
        self.s0 = ti.field(float, shape=self.max_samples)
        self.s1 = ti.field(float, shape=self.max_samples)
        self._totals = ti.field(ti.i32, shape=2)
        self.n_rays = self.n_samples = self.n_dropped = 0

    # ---- public API -------------------------------------------------------------------------
    def stratified(self, near, far, n_rays: int, n_per_ray: int = 0, *, spacing: str = "linear",
                   jitter: bool = False, seed: int = 0, counts=None) -> int:
        """Intervals tiling ``[near[r], far[r]]`` (fields of shape (R,)) of every ray with far > near.

        ``n_per_ray`` intervals per ray, or ``counts[r]`` (int32 field (R,)) when ``counts`` is given.
        Edge ``k`` of ``c`` sits at spacing fraction ``k / c``; with ``jitter`` the inner edges move
        uniformly within +-0.5 bin (``seed`` picks the draw); the ends stay at near and far.
        Returns the number of samples written.
        """
        self._check_rays(n_rays)
        code = _spacing_code(spacing)
        if counts is None:
            if n_per_ray < 1:
                raise ValueError("n_per_ray must be >= 1")
            if n_rays * n_per_ray > self.max_samples:
                raise ValueError(f"{n_rays} rays x {n_per_ray} samples exceed this sampler's "
                                 f"capacity of {self.max_samples} samples")
        self._count_stratified(self.ray_count if counts is None else counts, near, far, n_rays,
                               int(n_per_ray), int(counts is not None))
        self._pack(n_rays)
        self._fill_stratified(near, far, n_rays, code, int(bool(jitter)), int(seed) % 2**32)
        return self.n_samples

    def importance(self, prev: "RaySampler", weights, n_rays: int, n_per_ray: int, *,
                   spacing: str = "linear", jitter: bool = False, seed: int = 0,
                   padding: float = 0.01, blur: bool = False, eps: float = 1e-5) -> int:
        """Resample ``n_per_ray`` sorted intervals per ray from the piecewise-constant PDF given by
        the packed level ``prev`` and its ``weights`` (field (S_prev,), e.g. a renderer's weights).

        Histogram per ray: ``max(w, 0)``, optionally max-blurred with its neighbours (mip-NeRF's
        ``0.5 * (max(w[i-1], w[i]) + max(w[i], w[i+1]))``), plus ``padding`` per bin (nerfstudio's
        histogram padding; keeps every bin reachable); a total below ``eps`` is raised to ``eps``.
        ``n_per_ray + 1`` edges are drawn by inverse CDF at ``u_k = (k + xi) / (n_per_ray + 1)``,
        ``xi = 0.5`` (deterministic) or uniform per edge (``jitter``), each bin being uniform in
        the spacing coordinate. Rays with no previous samples get none. Returns the sample count.
        """
        if prev is self:
            raise ValueError("importance() needs a different RaySampler as its previous level")
        self._check_rays(n_rays)
        if n_rays > prev.n_rays:
            raise ValueError(f"n_rays {n_rays} exceeds the previous level's {prev.n_rays} rays")
        if n_per_ray < 1:
            raise ValueError("n_per_ray must be >= 1")
        if padding < 0 or eps <= 0:
            raise ValueError("padding must be >= 0 and eps > 0")
        if n_rays * n_per_ray > self.max_samples:
            raise ValueError(f"{n_rays} rays x {n_per_ray} samples exceed this sampler's "
                             f"capacity of {self.max_samples} samples")
        code = _spacing_code(spacing)
        self._count_following(prev.ray_count, n_rays, int(n_per_ray))
        self._pack(n_rays)
        self._fill_importance(prev.ray_start, prev.ray_count, prev.t0, prev.t1, weights, n_rays,
                              code, int(bool(jitter)), (int(seed) ^ IMPORTANCE_SALT) % 2**32,
                              float(padding), float(eps), int(bool(blur)))
        return self.n_samples

    def normalized_coords(self, near, far, spacing: str = "linear"):
        """Fill ``s0``, ``s1``: interval ends as fractions in [0, 1] of the ray's [near, far] in the
        spacing coordinate (the "s" of mip-NeRF 360, used by the distortion loss)."""
        self._normalized(near, far, self.n_samples, _spacing_code(spacing))

    def positions(self, origins, dirs, out):
        """``out[s, 0:3] = origins[r] + dirs[r] * (t0[s] + t1[s]) / 2`` with ``r = ray_id[s]``;
        origins, dirs: (R, 3); out: (S, D >= 3) (other columns untouched)."""
        self._positions(origins, dirs, out, self.n_samples)

    def to_numpy(self) -> dict:
        """Active part of the packed set as numpy arrays (tests and debugging)."""
        R, S = self.n_rays, self.n_samples
        return dict(ray_start=self.ray_start.to_numpy()[:R], ray_count=self.ray_count.to_numpy()[:R],
                    t0=self.t0.to_numpy()[:S], t1=self.t1.to_numpy()[:S],
                    ray_id=self.ray_id.to_numpy()[:S])

    # ---- internals --------------------------------------------------------------------------
    def _check_rays(self, n_rays):
        if not 0 <= n_rays <= self.max_rays:
            raise ValueError(f"n_rays {n_rays} outside [0, {self.max_rays}]")

    def _pack(self, n_rays):
        self._scan(n_rays, self.max_samples)
        total, requested = (int(v) for v in self._totals.to_numpy())
        self.n_rays, self.n_samples, self.n_dropped = n_rays, total, requested - total

    @ti.kernel
    def _count_stratified(self, counts: ti.template(), near: ti.template(), far: ti.template(),
                          n_rays: int, n: int, use_counts: int):
        for r in range(n_rays):
            c = n
            if use_counts:
                c = ti.max(counts[r], 0)
            if not far[r] > near[r]:
                c = 0
            self.ray_count[r] = c

    @ti.kernel
    def _count_following(self, prev_count: ti.template(), n_rays: int, n: int):
        for r in range(n_rays):
            self.ray_count[r] = n if prev_count[r] > 0 else 0

    @ti.kernel
    def _scan(self, n_rays: int, capacity: int):
        for _ in range(1):  # one thread: a deterministic serial exclusive scan
            acc = 0
            requested = 0
            for r in range(n_rays):
                c = self.ray_count[r]
                requested += c
                c_fit = ti.max(ti.min(c, capacity - acc), 0)
                self.ray_start[r] = acc
                self.ray_count[r] = c_fit
                acc += c_fit
            self._totals[0] = acc
            self._totals[1] = requested

    @ti.kernel
    def _fill_stratified(self, near: ti.template(), far: ti.template(), n_rays: int,
                         spacing: int, jitter: int, seed: ti.u32):
        for r in range(n_rays):
            c = self.ray_count[r]
            o = self.ray_start[r]
            tn, tf = near[r], far[r]
            gn = to_spacing(tn, spacing)
            gf = to_spacing(tf, spacing)
            prev = tn
            key = ray_key(seed, r)
            for k in range(c):
                e = tf
                if k + 1 < c:
                    j = 0.0
                    if jitter:
                        j = key_uniform(key, k + 1) - 0.5
                    e = from_spacing(gn + (ti.cast(k + 1, float) + j) / c * (gf - gn), spacing)
                self.t0[o + k] = prev
                self.t1[o + k] = e
                self.ray_id[o + k] = r
                prev = e

    @ti.kernel
    def _fill_importance(self, p_start: ti.template(), p_count: ti.template(), p_t0: ti.template(),
                         p_t1: ti.template(), weights: ti.template(), n_rays: int, spacing: int,
                         jitter: int, seed: ti.u32, padding: float, eps: float, blur: int):
        for r in range(n_rays):
            c = self.ray_count[r]
            if c > 0:
                a, m, o = p_start[r], p_count[r], self.ray_start[r]
                total = 0.0
                for i in range(m):
                    total += padded_weight(weights, a, m, i, padding, blur)
                floor_add = 0.0
                if total < eps:
                    floor_add = (eps - total) / m
                    total = eps
                i = 0
                cum = 0.0  # mass of bins before bin i
                wi = padded_weight(weights, a, m, 0, padding, blur) + floor_add
                prev = 0.0
                key = ray_key(seed, r)
                for k in range(c + 1):
                    xi = 0.5
                    if jitter:
                        xi = key_uniform(key, k)
                    u = (ti.cast(k, float) + xi) / (c + 1) * total
                    while i < m - 1 and cum + wi <= u:
                        cum += wi
                        i += 1
                        wi = padded_weight(weights, a, m, i, padding, blur) + floor_add
                    frac = 0.0
                    if wi > 0.0:
                        frac = ti.min(ti.max((u - cum) / wi, 0.0), 1.0)
                    ta, tb = p_t0[a + i], p_t1[a + i]
                    ga = to_spacing(ta, spacing)
                    gb = to_spacing(tb, spacing)
                    e = ti.min(ti.max(from_spacing(ga + frac * (gb - ga), spacing), ta), tb)
                    if k > 0:
                        e = ti.max(e, prev)
                        self.t1[o + k - 1] = e
                    if k < c:
                        self.t0[o + k] = e
                        self.ray_id[o + k] = r
                    prev = e

    @ti.kernel
    def _normalized(self, near: ti.template(), far: ti.template(), n: int, spacing: int):
        for s in range(n):
            r = self.ray_id[s]
            gn = to_spacing(near[r], spacing)
            den = to_spacing(far[r], spacing) - gn
            s0, s1 = 0.0, 0.0
            if den != 0.0:
                s0 = ti.min(ti.max((to_spacing(self.t0[s], spacing) - gn) / den, 0.0), 1.0)
                s1 = ti.min(ti.max((to_spacing(self.t1[s], spacing) - gn) / den, 0.0), 1.0)
            self.s0[s] = s0
            self.s1[s] = s1

    @ti.kernel
    def _positions(self, origins: ti.template(), dirs: ti.template(), out: ti.template(), n: int):
        for s in range(n):
            r = self.ray_id[s]
            mid = 0.5 * (self.t0[s] + self.t1[s])
            for a in ti.static(range(3)):
                out[s, a] = origins[r, a] + dirs[r, a] * mid


@ti.kernel
def _ray_aabb(origins: ti.template(), dirs: ti.template(), near: ti.template(), far: ti.template(),
              n_rays: int, x0: float, y0: float, z0: float, x1: float, y1: float, z1: float,
              near_min: float, far_max: float):
    for r in range(n_rays):
        box_lo = ti.Vector([x0, y0, z0])
        box_hi = ti.Vector([x1, y1, z1])
        lo, hi = near_min, far_max
        for a in ti.static(range(3)):
            o, d = origins[r, a], dirs[r, a]
            if ti.abs(d) < 1e-12:
                if o < box_lo[a] or o > box_hi[a]:
                    lo, hi = 1.0, 0.0
            else:
                ta = (box_lo[a] - o) / d
                tb = (box_hi[a] - o) / d
                lo = ti.max(lo, ti.min(ta, tb))
                hi = ti.min(hi, ti.max(ta, tb))
        if hi > lo:
            near[r], far[r] = lo, hi
        else:
            near[r], far[r] = near_min, near_min


def ray_aabb(origins, dirs, near, far, n_rays: int, aabb, near_min: float = 0.0,
             far_max: float = 1e10):
    """Clip rays to an axis-aligned box: ``near[r], far[r]`` (fields (R,)) = the part of
    ``[near_min, far_max]`` inside ``aabb = (xmin, ymin, zmin, xmax, ymax, zmax)``.

    origins, dirs: fields (R, 3) (dirs need not be unit length; t is in units of |dir|). A ray that
    misses the box (or meets it only outside [near_min, far_max]) gets ``near = far = near_min``,
    so :meth:`RaySampler.stratified` gives it zero samples.
    """
    box = [float(v) for v in aabb]
    if len(box) != 6 or not all(box[i] < box[i + 3] for i in range(3)):
        raise ValueError("aabb must be (xmin, ymin, zmin, xmax, ymax, zmax) with min < max")
    _ray_aabb(origins, dirs, near, far, int(n_rays), *box, float(near_min), float(far_max))
