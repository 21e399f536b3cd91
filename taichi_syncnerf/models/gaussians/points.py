"""Where the Gaussians start: the initial points, their colours and scales, and the scene extent.

* The dataset's sparse points when it has them (``points3d.npy`` in the dataset folder: (N, 3)
  positions, or (N, 6) with RGB in [0, 1], in the files' world, moved into the loader's world by
  ``world_from_source``; ``prepare`` writes it from its SfM reconstruction).
* Otherwise ``gaussians.init_points`` random points that training cameras see: a random pixel of a
  random training camera at a random depth, uniform in disparity between the camera's near and far
  bounds (forward-facing scenes) or uniform along the part of the ray inside the scene box
  (``model.bbox`` or the dataset's, world-space scenes). Each takes its pixel's colour in the
  camera's first frame: "random points in the scene box" that start with a plausible colour.
  With ``gaussians.init_depth: photo`` the depth is instead the most photo-consistent of
  ``init_depth_candidates`` depths over the same range (a plane sweep, :func:`photo_depths`): the
  point's 3x3 patch in its camera's first frame against the patches where that depth projects in
  the other training cameras' first frames, mean absolute difference over the best half of the
  cameras that see it (a camera that sees the point occluded, or a mover at another time, is left
  out). Where the colour does not say (a textureless wall, a depth no other camera sees) the sweep
  picks a depth as good as a random one. In world-space scenes the pixels are drawn among those
  not of the background's colour (within 0.02): a background pixel says nothing of the scene box.

A point becomes a Gaussian as in 3DGS (GAUSSIAN_REFERENCE.md section 7): SH DC = RGB2SH(colour),
the rest 0, opacity ``logit(init_opacity)``, isotropic log-scale ``ln sqrt(mean squared distance to
the 3 nearest other points)`` (floor 1e-7), quaternion (1, 0, 0, 0). With
``gaussians.init_max_radius_px`` a random point's scale is at most that radius / 3 in pixels of the
camera it was drawn from (``depth / fx`` world units a pixel there). The scene extent is 1.1 x the
largest distance of a training camera's centre from their mean (3DGS's ``cameras_extent``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SH_C0 = 0.28209479177387814
POINTS_FILE = "points3d.npy"


def camera_extent(c2w: np.ndarray) -> float:
    centres = np.asarray(c2w, np.float64)[:, :3, 3]
    return float(1.1 * np.max(np.linalg.norm(centres - centres.mean(0), axis=1)))


def knn_log_scales(points: np.ndarray, k: int = 3, chunk: int = 1024) -> np.ndarray:
    """``ln sqrt(mean squared distance to the k nearest other points)`` per point (brute force in
    chunks: O(N^2), fine for the tens of thousands of an initial cloud)."""
    p = np.asarray(points, np.float64)
    n = len(p)
    if n <= 1:
        return np.full(n, np.log(0.01))
    k = min(k, n - 1)
    sq = (p ** 2).sum(1)
    out = np.empty(n)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        d2 = np.maximum(sq[a:b, None] + sq[None, :] - 2.0 * p[a:b] @ p.T, 0.0)
        d2[np.arange(b - a), np.arange(a, b)] = np.inf
        out[a:b] = np.partition(d2, k - 1, axis=1)[:, :k].mean(1)
    return 0.5 * np.log(np.maximum(out, 1e-7))


def gaussians_from_points(points, colours, init_opacity: float, sh_degree: int, log_scales=None) -> dict:
    """The raw arrays of :class:`~taichi_syncnerf.models.gaussians.cloud.GaussianCloud` for points
    (N, 3) with colours (N, 3) in [0, 1]; isotropic ``log_scales`` (N,) when given, else the
    nearest-neighbour ones."""
    p = np.asarray(points, np.float64)
    n = len(p)
    k = (int(sh_degree) + 1) ** 2
    logit = float(np.log(init_opacity / (1.0 - init_opacity)))
    return {"means": p.copy(), "sh_dc": (np.asarray(colours, np.float64) - 0.5) / SH_C0,
            "sh_rest": np.zeros((n, 3 * (k - 1))), "opacity": np.full(n, logit),
            "log_scales": np.repeat((knn_log_scales(p) if log_scales is None else
                                     np.asarray(log_scales, np.float64))[:, None], 3, axis=1),
            "quats": np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))}


def dataset_points(source) -> tuple[np.ndarray, np.ndarray] | None:
    """``(points, colours)`` of the dataset's ``points3d.npy`` in the loader's world, or None."""
    from taichi_syncnerf.errors import DataError

    path = Path(source.ds.root) / POINTS_FILE
    if not path.is_file():
        return None
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy array ({type(e).__name__})") from None
    if a.ndim != 2 or a.shape[1] not in (3, 6) or len(a) < 1 or not np.all(np.isfinite(a)):
        raise DataError(f"{path}: expected an (N, 3) or (N, 6) array of finite points, got shape {a.shape}")
    a = a.astype(np.float64)
    world = np.asarray(source.ds.scene.world_from_source, np.float64)
    pts = a[:, :3] @ world[:3, :3].T + world[:3, 3]
    colours = np.clip(a[:, 3:6], 0.0, 1.0) if a.shape[1] == 6 else np.full((len(a), 3), 0.5)
    return pts, colours


def _depth_of(source, k: int, o: np.ndarray, d: np.ndarray, u: np.ndarray, box) -> np.ndarray:
    """Depths (along ``d``, camera z = -1) at fractions ``u`` (any shape ``(n, ...)``) of the range
    of camera ``k``'s rays ``o + s d``: uniform in disparity between its near and far bounds
    (forward-facing scenes), uniform along the part of the ray inside ``box`` (world-space)."""
    ds = source.ds
    bounds = getattr(ds.scene, "bounds", None)
    extra = (slice(None),) + (None,) * (np.ndim(u) - 1)
    if ds.ndc and bounds is not None:
        near, far = float(bounds[k, 0]), float(bounds[k, 1])
        return 1.0 / (1.0 / near + u * (1.0 / far - 1.0 / near))
    lo, hi = np.asarray(box, np.float64).reshape(2, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - o) / d, (hi - o) / d
    enter = np.maximum(np.nanmax(np.minimum(t0, t1), 1), source.near)
    leave = np.minimum(np.nanmin(np.maximum(t0, t1), 1), source.far)
    leave = np.where(leave > enter, leave, enter + 1e-3)
    return enter[extra] + u * (leave - enter)[extra]


def _patches(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The 3x3 patches (float64 in [0, 1], shape ``x.shape + (9, 3)``) around integer pixels
    ``(x, y)`` of a (H, W, 3) uint8 image, edges clamped."""
    h, w = image.shape[:2]
    out = np.empty(np.shape(x) + (9, 3))
    i = 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out[..., i, :] = image[np.clip(y + dy, 0, h - 1), np.clip(x + dx, 0, w - 1)]
            i += 1
    return out / 255.0


def photo_depths(source, k: int, x: np.ndarray, y: np.ndarray, box, n_depths: int, fallback: np.ndarray,
                 images: dict, chunk: int = 512) -> np.ndarray:
    """The most photo-consistent depth (along camera ``k``'s unnormalised rays, z = -1) of each
    pixel ``(x, y)`` of training camera ``k`` among ``n_depths`` candidates spread as
    :func:`_depth_of` spreads them (see the module docstring); a pixel no other camera sees at any
    candidate takes the depth at fraction ``fallback`` of its range. ``images``: ``{camera: (H, W, 3)
    uint8}``, camera ``k``'s image and those of the cameras it is compared with (every other key)."""
    from taichi_syncnerf.data.cameras import generate_rays, pixels_of

    ds = source.ds
    others = [int(j) for j in images if int(j) != int(k)]
    own = _patches(images[k], x, y)
    u = (np.arange(n_depths) + 0.5) / n_depths
    out = np.empty(len(x))
    for a in range(0, len(x), chunk):
        b = min(len(x), a + chunk)
        o, d = generate_rays(ds.intrinsics[k], ds.c2w[k], x[a:b], y[a:b], normalize=False)
        depth = _depth_of(source, k, o, d, np.broadcast_to(u, (b - a, n_depths)), box)    # (n, D)
        p = o[:, None, :] + d[:, None, :] * depth[..., None]                               # (n, D, 3)
        costs = np.full((len(others), b - a, n_depths), np.inf)
        for c, j in enumerate(others):
            intr = ds.intrinsics[j]
            pu, pv, z = pixels_of(intr, ds.c2w[j], p)
            with np.errstate(invalid="ignore"):
                seen = (z > 1e-6) & (pu >= 0) & (pu < intr.width) & (pv >= 0) & (pv < intr.height)
            px = np.floor(np.where(seen, pu, 0.0)).astype(np.int64)
            py = np.floor(np.where(seen, pv, 0.0)).astype(np.int64)
            diff = np.abs(_patches(images[j], px, py) - own[a:b, None]).mean((-1, -2))
            costs[c] = np.where(seen, diff, np.inf)
        costs.sort(axis=0)
        n_seen = np.isfinite(costs).sum(0)                                                 # (n, D)
        best = np.maximum(1, (n_seen + 1) // 2)
        finite = np.where(np.isfinite(costs), costs, 0.0)
        csum = np.cumsum(finite, axis=0)
        score = np.take_along_axis(csum, (best - 1)[None], 0)[0] / best
        score = np.where(n_seen >= 1, score, np.inf)
        pick = np.argmin(score, axis=1)
        out[a:b] = depth[np.arange(b - a), pick]
        blind = ~np.isfinite(score).any(1)
        if blind.any():
            out[a:b][blind] = _depth_of(source, k, o[blind], d[blind], fallback[a:b][blind], box)
    return out


def _points_of_pixels(source, k: int, x, y, u, box, mode: str, n_depths: int, images: dict):
    """Points on camera ``k``'s rays through pixels ``(x, y)`` (depth: :func:`photo_depths` against
    ``images`` in ``photo`` mode, else fraction ``u`` of the range) and their pixel sizes."""
    from taichi_syncnerf.data.cameras import generate_rays

    o, d = generate_rays(source.ds.intrinsics[k], source.ds.c2w[k], x, y, normalize=False)   # camera z = -1
    if mode == "photo" and len(images) > 1:
        depth = photo_depths(source, k, x, y, box, n_depths, u, images)
    else:
        depth = _depth_of(source, k, o, d, u, box)
    return o + d * depth[:, None], depth / float(source.ds.intrinsics[k].fx)


def random_points(source, count: int, rng: np.random.Generator, box=None, mode: str = "random",
                  n_depths: int = 48):
    """``count`` points seen by random pixels of the training cameras (see the module docstring):
    ``(points, colours, pixel)``, ``pixel`` each point's pixel size (world units: its depth over
    the focal length of the camera it was drawn from). ``mode``: ``random`` or ``photo`` depths."""
    ds = source.ds
    box = box if box is not None else source.bbox
    cams = rng.choice(np.asarray(source.train_indices), count)
    x = rng.integers(0, source.width, count)
    y = rng.integers(0, source.height, count)
    needed = np.asarray(source.train_indices) if mode == "photo" else np.unique(cams)
    first = {int(j): np.asarray(ds.frames[int(j), 0]) for j in needed}      # each first frame read once
    if not ds.ndc:                        # world-space: a background-coloured pixel says nothing of the box
        bg = np.asarray(source.background, np.float64) * 255.0
        for k in np.unique(cams):
            sel = np.flatnonzero(cams == k)
            ys, xs = np.nonzero(np.any(np.abs(first[int(k)].astype(np.float64) - bg) > 5.1, axis=2))
            if len(xs):
                pick = rng.integers(0, len(xs), len(sel))
                x[sel], y[sel] = xs[pick], ys[pick]
    pts = np.empty((count, 3))
    colours = np.empty((count, 3))
    pixel = np.empty(count)
    u = rng.uniform(0.0, 1.0, count)
    for k in np.unique(cams):
        sel = np.flatnonzero(cams == k)
        pts[sel], pixel[sel] = _points_of_pixels(source, int(k), x[sel], y[sel], u[sel], box, mode, n_depths,
                                                 first if mode == "photo" else {int(k): first[int(k)]})
        colours[sel] = first[int(k)][y[sel], x[sel]] / 255.0
    return pts, colours, pixel


def error_points(source, cam: int, frame: int, pred: np.ndarray, offsets_frames, count: int, threshold: float,
                 rng: np.random.Generator, box=None, n_depths: int = 48):
    """Points where training camera ``cam``'s frame ``frame`` is rendered worst: ``(points, colours,
    pixel)`` as :func:`random_points` gives them, for at most ``count`` of the pixels whose mean
    absolute error over R, G, B exceeds ``threshold`` (drawn in proportion to it), each at its most
    photo-consistent depth against the other training cameras' frames of the same scene time
    (camera ``j``'s frame ``round(frame + offsets_frames[cam] - offsets_frames[j])``, clamped): what
    moves is matched where it is at that time. ``pred``: the rendered (H, W, 3) image in [0, 1]."""
    ds = source.ds
    gt = np.asarray(ds.frames[cam, frame])
    err = np.abs(np.asarray(pred, np.float64) - gt / 255.0).mean(2)
    ys, xs = np.nonzero(err > float(threshold))
    if len(xs) > count:
        w = err[ys, xs]
        pick = rng.choice(len(xs), int(count), replace=False, p=w / w.sum())
        ys, xs = ys[pick], xs[pick]
    if not len(xs):
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)
    box = box if box is not None else source.bbox
    scene_frame = float(frame) + float(offsets_frames[cam])
    last = int(source.n_frames) - 1
    images = {int(cam): gt}
    for j in np.asarray(source.train_indices):
        if int(j) != int(cam):
            f = int(np.clip(np.rint(scene_frame - float(offsets_frames[int(j)])), 0, last))
            images[int(j)] = np.asarray(ds.frames[int(j), f])
    pts, pixel = _points_of_pixels(source, int(cam), xs, ys, rng.uniform(0.0, 1.0, len(xs)), box, "photo",
                                   n_depths, images)
    return pts, gt[ys, xs] / 255.0, pixel


def initial_gaussians(source, cfg: dict) -> dict:
    """The starting Gaussians of a run of ``cfg`` on ``source`` (see the module docstring)."""
    g = cfg["gaussians"]
    found = dataset_points(source) if g["init_from_dataset"] else None
    rng = np.random.default_rng(int(cfg["train"]["seed"]) + 17)
    cap_px = g.get("init_max_radius_px")
    pixel = None
    if found is None:
        pts, colours, pixel = random_points(source, int(g["init_points"]), rng, cfg["model"]["bbox"],
                                            str(g["init_depth"]), int(g["init_depth_candidates"]))
    else:
        pts, colours = found
    cap = int(g["max_gaussians"])
    if len(pts) > cap:
        keep = np.sort(rng.choice(len(pts), cap, replace=False))
        pts, colours = pts[keep], colours[keep]
        pixel = None if pixel is None else pixel[keep]
    out = gaussians_from_points(pts, colours, float(g["init_opacity"]), int(g["sh_degree"]))
    if cap_px is not None and pixel is not None:
        most = np.log(float(cap_px) / 3.0 * pixel)[:, None]
        out["log_scales"] = np.minimum(out["log_scales"], most)
    return out
