"""Structure from motion with pycolmap: fixed cameras, several frames each.

Every camera contributes a few frames taken at different times (``frames[k]``); the static parts
of the scene are what match across cameras. The frames of one camera share its intrinsics
(``intrinsics="per-camera"``) or all cameras share one (``"shared"``). COLMAP's SIFT extraction,
exhaustive matching and incremental mapping run on the CPU; the largest model is kept. A camera
is registered when at least one of its frames is; its pose is that of its frame with the most
points, and the spread of its other frames' poses is reported (they should agree: the camera
did not move).

Poses are returned as OpenCV camera-to-world matrices (x right, y down, z forward), in the
model's arbitrary world frame and scale.

Example::

    rec = reconstruct([[f0, f1, f2], [g0, g1, g2], ...], work_dir, intrinsics="shared")
    rec.c2w[k], rec.focal[k], rec.depths[k]       # camera k (None when not registered)
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from taichi_syncnerf.errors import UserError

INSTALL_HINT = "pycolmap is needed for structure from motion: pip install -e '.[capture]'"


def import_pycolmap():
    """pycolmap, or a UserError saying how to install it."""
    try:
        import pycolmap
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return pycolmap


@dataclass
class CameraResult:
    """One registered camera: OpenCV c2w (3, 4), focal (px), frames registered, reprojection
    error (px), depths of the points it sees, and its frames' disagreement."""

    c2w: np.ndarray
    focal: float
    frames_registered: int
    reprojection_error: float
    depths: np.ndarray
    centre_spread: float = 0.0        # max distance of a frame's centre to the chosen one
    rotation_spread_deg: float = 0.0  # max rotation angle between a frame and the chosen one


@dataclass
class Reconstruction:
    cameras: list                     # CameraResult or None per input camera
    n_points: int
    mean_reprojection_error: float
    width: int
    height: int
    reasons: dict = field(default_factory=dict)   # camera -> why it is not registered
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))  # (N, 6): xyz, RGB in [0, 1]

    @property
    def registered(self) -> list[int]:
        return [k for k, c in enumerate(self.cameras) if c is not None]


def _write_images(frames: list, image_dir: Path) -> list[list[str]]:
    import cv2

    names = []
    for k, cam_frames in enumerate(frames):
        (image_dir / f"c{k:03d}").mkdir(parents=True, exist_ok=True)
        row = []
        for j, fr in enumerate(cam_frames):
            name = f"c{k:03d}/f{j:03d}.png"
            cv2.imwrite(str(image_dir / name), cv2.cvtColor(np.ascontiguousarray(fr), cv2.COLOR_RGB2BGR))
            row.append(name)
        names.append(row)
    return names


def _image_size(image_dir: Path) -> tuple[int, int]:
    import cv2

    first = next(iter(sorted(image_dir.glob("*/*.png"))))
    return cv2.imread(str(first)).shape[:2]


def _rotation_angle_deg(ra: np.ndarray, rb: np.ndarray) -> float:
    c = (np.trace(ra.T @ rb) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _run_colmap(pycolmap, image_dir: Path, work: Path, intrinsics: str, focal_prior: float | None,
                threads: int, seed: int, max_features: int, bar):
    db = work / "database.db"
    db.unlink(missing_ok=True)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_PINHOLE"
    fixed = focal_prior is not None
    if fixed:            # a known lens: its focal length is fixed, not refined
        h, w = _image_size(image_dir)
        reader.camera_params = f"{float(focal_prior) * max(w, h)},{w / 2},{h / 2}"
    mode = pycolmap.CameraMode.SINGLE if intrinsics == "shared" else pycolmap.CameraMode.PER_FOLDER
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = threads
    extraction.sift.max_num_features = max_features
    pycolmap.set_random_seed(seed)
    bar.set_postfix_str("extracting features")
    pycolmap.extract_features(db, image_dir, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    bar.set_postfix_str("matching")
    pycolmap.match_exhaustive(db, matching_options=matching, device=pycolmap.Device.cpu)
    bar.set_postfix_str("mapping")
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = threads
    opts.random_seed = seed
    opts.multiple_models = False
    opts.min_model_size = 3
    if fixed:
        opts.ba_refine_focal_length = False
        opts.mapper.abs_pose_refine_focal_length = False
    out = work / "sparse"
    out.mkdir(exist_ok=True)
    models = pycolmap.incremental_mapping(db, image_dir, out, opts,
                                          next_image_callback=lambda: bar.update(1))
    if not models:
        return None
    return max(models.values(), key=lambda r: r.num_reg_images())


def _camera_result(rec, images: list, focal_scale: float) -> CameraResult:
    """Pose of the frame with the most points; depths from all frames' points."""
    best = max(images, key=lambda im: im.num_points3D)
    poses = {}
    depths, errors = [], []
    for im in images:
        cfw = im.cam_from_world().matrix()          # (3, 4) world -> camera
        r, t = cfw[:, :3], cfw[:, 3]
        poses[im.image_id] = (r, -r.T @ t)
        ids = [p.point3D_id for p in im.points2D if p.has_point3D()]
        if ids:
            xyz = np.array([rec.points3D[i].xyz for i in ids])
            depths.append(xyz @ r.T[:, 2] + t[2])
            errors.extend(rec.points3D[i].error for i in ids)
    rb, cb = poses[best.image_id]
    c2w = np.concatenate([rb.T, cb[:, None]], axis=1)
    cam = rec.cameras[best.camera_id]
    return CameraResult(
        c2w=c2w, focal=float(cam.params[0]) * focal_scale, frames_registered=len(images),
        reprojection_error=float(np.mean(errors)) if errors else float("nan"),
        depths=np.concatenate(depths) if depths else np.zeros(0),
        centre_spread=max(float(np.linalg.norm(c - cb)) for _, c in poses.values()),
        rotation_spread_deg=max(_rotation_angle_deg(r, rb) for r, _ in poses.values()))


def reconstruct(frames: list, work: str | Path, intrinsics: str = "per-camera",
                focal_prior: float | None = None, threads: int = 2, seed: int = 0,
                max_features: int = 4096, keep_work: bool = False,
                progress: bool = False) -> Reconstruction:
    """Run SfM on ``frames[k]`` (a list of (H, W, 3) uint8 RGB frames of camera k).

    Args:
        intrinsics: "per-camera" (each camera its own focal length) or "shared".
        focal_prior: the lens's focal length as a multiple of the larger image side, fixed
            during the reconstruction (None: estimated, starting from COLMAP's default 1.2). On a
            small forward-facing rig the focal length and the depths trade off against each
            other; a known lens removes that ambiguity.
        threads: CPU threads for extraction, matching and mapping. seed: COLMAP's random seed.
        max_features: SIFT features kept per frame. progress: a bar of the registered frames.
    """
    if intrinsics not in ("per-camera", "shared"):
        raise UserError(f"--intrinsics must be 'per-camera' or 'shared', got {intrinsics!r}")
    pycolmap = import_pycolmap()
    work = Path(work)
    image_dir = work / "images"
    names = _write_images(frames, image_dir)
    h, w = frames[0][0].shape[:2]
    from tqdm import tqdm

    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 3          # COLMAP's log lines would drown the progress bar
    try:
        with tqdm(total=sum(len(r) for r in names), desc="sfm", unit="frame",
                  disable=not progress) as bar:
            rec = _run_colmap(pycolmap, image_dir, work, intrinsics, focal_prior, threads, seed,
                              max_features, bar)
    finally:
        pycolmap.logging.minloglevel = level
        if not keep_work:
            shutil.rmtree(image_dir, ignore_errors=True)
    cams, reasons = [None] * len(frames), {}
    if rec is None:
        return Reconstruction(cams, 0, float("nan"), w, h,
                              {k: "no model could be built" for k in range(len(frames))})
    by_name = {im.name: im for im in rec.images.values() if im.has_pose}
    for k, row in enumerate(names):
        images = [by_name[n] for n in row if n in by_name]
        if images:
            cams[k] = _camera_result(rec, images, 1.0)
        else:
            reasons[k] = "none of its frames registered in the model"
    errs = [p.error for p in rec.points3D.values()]
    points = np.array([[*p.xyz, *(np.asarray(p.color, np.float64) / 255.0)] for p in rec.points3D.values()],
                      np.float64).reshape(-1, 6)
    return Reconstruction(cams, len(rec.points3D), float(np.mean(errs)) if errs else float("nan"),
                          w, h, reasons, points)
