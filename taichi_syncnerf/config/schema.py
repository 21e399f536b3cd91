"""The config schema: one dataclass per section, each field with its default, its rule and a doc.

Every field is declared with :func:`opt`, whose metadata holds what the validator
(:mod:`taichi_syncnerf.config.validate`) and the reference page (:mod:`taichi_syncnerf.config.docs`)
need: the kind of value (``int``, ``number``, ``bool``, ``choice``, ``int_list``, ``bbox``,
``generate``, ``any``), its bounds or choices, whether ``null`` is allowed, and a one-line doc.
The runtime config stays a plain nested dict: :data:`DEFAULTS` is derived from these classes.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from taichi_syncnerf.models.registry import FAMILIES
from taichi_syncnerf.schedule import LR_SCHEDULES

MODEL_KINDS = tuple(FAMILIES)  # taichi_syncnerf/models/registry.py

SCHEDULES = tuple(LR_SCHEDULES)

# make-scene's arguments (taichi_syncnerf/data/synthetic/make.py; tests/test_config.py checks that they agree)
GENERATE_KEYS = ("layout", "family", "encoding", "cameras", "frames", "size", "fps", "offset_sigma", "seed", "png",
                 "supersample", "crf")
GENERATE_FAMILIES = ("default", "static", "busy")
GENERATE_ENCODINGS = ("default", "clean", "noisy")

# The sections that only one model kind reads (each family's registry entry); every other section is shared.
SECTIONS_OF_KIND = {kind: f.sections for kind, f in FAMILIES.items()}
# Why a section does not apply to a kind, where there is more to say than the kind.
NOT_APPLICABLE_BECAUSE = {("sampling", "sync-mixvoxels"): "its rays are drawn as whole pixel videos",
                          ("sampling", "sync-4dgs"): "it trains on whole images"}

# Keys of the previous layout: a user's file or -o naming one is told the new name; a run folder's
# saved config.yaml in the old layout is migrated silently. A section entry moves every key under it.
MOVED_KEYS = {
    **{f"model.{k}": f"kplanes.{k}" for k in (
        "decoder", "features", "space_res", "time_res", "density_hidden", "geo_features", "color_hidden",
        "explicit_basis_hidden", "sh_degree", "density_bias", "n_samples")},
    "model.proposal": "kplanes.proposal",
    "offsets.proposal_grad": "kplanes.proposal.offsets_grad",
    "regularizers": "kplanes.regularizers",
    "train.early_stop_transmittance": "kplanes.early_stop_transmittance",
    "train.isg_step": "sampling.isg_step",
    "train.ist_step": "sampling.ist_step",
    "train.sampling_floor": "sampling.floor",
}

# Keys that were never used and are gone: dropped from old runs' config.yaml, unknown in a config file or -o.
RETIRED_KEYS = {"train": ("eval_every",), "eval": ("chunk_rays",)}

# Mappings whose keys are free (not a section of the schema): set whole, or key by key where they exist.
FREE_MAPPINGS = ("data.generate",)


def opt(default, doc: str, kind: str = "int", *, min=None, max=None, gt=None, lt=None, choices=None,
        nullable: bool = False, also: tuple = (), nonempty: bool = False, length: int | None = None,
        allowed: str | None = None):
    """A config field: ``default``, a one-line ``doc`` and the rule its value must follow.

    ``min``/``max`` are inclusive and ``gt``/``lt`` exclusive bounds (for ``int_list``, ``min`` bounds
    every item); ``choices`` lists a ``choice``'s values; ``also`` names literal strings accepted
    beside the kind (``'auto'``); ``nullable`` accepts ``null``; ``allowed`` describes an ``any``.
    """
    meta = {"doc": doc, "kind": kind, "min": min, "max": max, "gt": gt, "lt": lt,
            "choices": tuple(choices) if choices is not None else None, "nullable": nullable,
            "also": tuple(also), "nonempty": nonempty, "length": length, "allowed": allowed}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls):
    """A nested section (a dataclass of its own)."""
    return field(default_factory=cls, metadata={"section": True})


@dataclass
class DataConfig:
    path: Any = opt(None, "Dataset folder; a relative path resolves against the working directory. `--data DIR` "
                          "takes precedence; with neither, `train` stops with an error. The layout (Plenoptic "
                          "`poses_bounds.npy` + videos, or Blender `transforms.json`) is detected.",
                    "any", allowed="a folder or null")
    generate: Any = opt(None, "Arguments of `make-scene`, used when the dataset folder is missing or empty: the "
                              "scene is generated there first (keys and merging: see above).", "generate")
    downsample: int = opt(1, "Factor by which frames and intrinsics are reduced for training and evaluation. Each "
                             "factor has its own frame cache. The ISG/IST weights are computed on a copy reduced "
                             "by a further `max(1, 4 // downsample)`.", min=1)
    max_frames: Any = opt(None, "Use only the first N frames of every video (`null`: all frames common to every "
                                "camera). Changes `F`, so it also changes the time units and `time_res: auto`.",
                          min=2, nullable=True)
    short_cameras: str = opt("drop", "A camera whose video has fewer than half the median frame count of the "
                                     "dataset's cameras would cut every camera to its length: `drop` leaves it out "
                                     "(its pose with it) with a warning naming it, `refuse` stops with an error. "
                                     "The test camera is never left out: a short test camera is an error. The "
                                     "others use their common first frames; what is unused is reported.",
                             "choice", choices=("drop", "refuse"))
    test_camera: Any = opt("cam00", "Held-out camera: a camera name (a video's file name without `.mp4`, or a "
                                    "`frames_1/` sub-folder; `inspect` lists them) or an integer index; `null` "
                                    "means the first camera. Its offset stays at 0 during training; `testoptim` "
                                    "optimises it, and `eval` scores it as the `test` split.",
                           "any", allowed="a camera name, an index or null")
    background: str = opt("white", "The colour that RGBA PNG frames (Blender `frames_1/`) are composited onto, and "
                                   "that the renderer adds where a ray's opacity is below 1, in every layout. Video "
                                   "frames are used as decoded.", "choice", choices=("white", "black"))


@dataclass
class ModelConfig:
    kind: str = opt("sync-kplanes", "The model: `sync-kplanes` (K-Planes field with proposal sampling; the "
                                    "`kplanes` and `sampling` sections), `sync-mixvoxels` (MixVoxels VM grids, "
                                    "static/dynamic routing and all-frames rendering; the `mixvoxels` section) or "
                                    "`sync-4dgs` (3D Gaussians with the 4DGaussians deformation field, rasterized; "
                                    "the `gaussians` section). Chosen in one place, "
                                    "taichi_syncnerf/models/registry.py.",
                    "choice", choices=MODEL_KINDS)
    sync: bool = opt(True, "`true`: the training cameras' time offsets are learned. `false`: every offset stays "
                           "at 0 (the baseline without sync; `--no-sync`).", "bool")
    bbox: Any = opt(None, "Scene box mapped to [-1, 1] for the encoders, in the rays' coordinates (NDC for "
                          "Plenoptic). `null` takes the dataset's box: `[[-3, -1.8, -1.2], [3, 1.8, 1.2]]` for "
                          "Plenoptic, and for Blender `scene_bbox` from `transforms.json` or else ±1.3. Points "
                          "outside the box read the border of the grids.", "bbox", nullable=True)


@dataclass
class ProposalConfig:
    encoder: str = opt("planes", "`planes` (a single-scale 4-D K-Planes encoder) or `hashgrid` (a 4-D Instant-NGP "
                                 "hash grid over x, y, z, t with 2 features per level).",
                       "choice", choices=("planes", "hashgrid"))
    samples: list = opt([256, 128], "Samples per ray at each proposal level, in order: the number of entries is "
                                    "the number of proposal levels, and `[]` means none (the radiance field then "
                                    "samples evenly).", "int_list", min=1)
    features: int = opt(8, "`planes` only: features per plane.", min=1)
    space_res: list = opt([128, 256], "`planes` only: entry `i` is level `i`'s resolution along x, y and z. A list "
                                      "shorter than `samples` repeats its last entry; extra entries are ignored. "
                                      "It may be empty only when `samples` is.", "int_list", min=2)
    time_res: Any = opt("auto", "`planes` only: resolution along time, with the rule of `kplanes.time_res`.",
                        min=2, also=("auto",))
    hidden: int = opt(64, "Width of the proposal MLP's hidden layer, for both encoders.", min=1)
    hash_levels: int = opt(8, "`hashgrid` only: number of resolution levels.", min=1)
    hash_log2_table: int = opt(17, "`hashgrid` only: log2 of the table size per level.", min=4, max=26)
    hash_base_res: int = opt(16, "`hashgrid` only: coarsest grid resolution (cells per axis, time included).", min=2)
    hash_max_res: int = opt(256, "`hashgrid` only: finest grid resolution, at least `hash_base_res`. The levels "
                                 "grow geometrically between the two.", min=2)
    offsets_grad: bool = opt(True, "`true`: the offsets also receive the time gradient that reaches the proposal "
                                   "levels' sample points (through the interlevel loss). `false`: only the radiance "
                                   "field's gradient (photometric and distortion losses) moves them.", "bool")


@dataclass
class RegularizersConfig:
    plane_tv: float = opt(2.0e-4, "Total variation of the radiance field's planes. Space planes count twice, as in "
                                  "K-Planes.", "number", min=0)
    plane_tv_proposal: float = opt(2.0e-4, "The same, on the proposal planes.", "number", min=0)
    time_smoothness: float = opt(1.0e-3, "Squared second difference along time of the radiance field's time planes "
                                         "(`xt, yt, zt`).", "number", min=0)
    time_smoothness_proposal: float = opt(1.0e-5, "The same, on the proposal planes.", "number", min=0)
    l1_time_planes: float = opt(1.0e-4, "`mean(|1 - P|)` of the radiance field's time planes, which pulls them "
                                        "towards 1 (static).", "number", min=0)
    l1_time_planes_proposal: float = opt(1.0e-4, "The same, on the proposal planes.", "number", min=0)
    distortion: float = opt(1.0e-3, "mip-NeRF 360 distortion loss on the radiance field's sample weights. It runs "
                                    "only when > 0.", "number", min=0)
    interlevel: float = opt(1.0, "mip-NeRF 360 proposal (interlevel) loss between the radiance field's weights and "
                                 "each proposal level's weights, summed over levels. It is the loss that trains the "
                                 "proposal levels.", "number", min=0)


@dataclass
class KPlanesConfig:
    decoder: str = opt("hybrid", "`hybrid`: a density MLP and a colour MLP; `explicit`: a linear density and a "
                                 "colour basis given by an MLP of the view direction (see above).",
                       "choice", choices=("hybrid", "explicit"))
    features: int = opt(16, "Features per plane at each scale. The field's feature width is "
                            "`len(space_res) * features`.", min=1)
    space_res: list = opt([64, 128, 256, 512], "One scale per entry: the plane resolution along x, y and z at that "
                                               "scale.", "int_list", min=2, nonempty=True)
    time_res: Any = opt("auto", "Plane resolution along time, the same at every scale; `auto` = "
                                "`max(2, ceil(F / 2))` (150 for 300 frames, 30 for 60).", min=2, also=("auto",))
    density_hidden: int = opt(64, "Hybrid only: width of the density MLP's one hidden layer.", min=1)
    geo_features: int = opt(15, "Hybrid only: extra outputs of the density MLP that feed the colour MLP.", min=1)
    color_hidden: list = opt([64, 64], "Hybrid only: widths of the colour MLP's hidden layers. Its input is "
                                       "`sh_degree² + geo_features` values.", "int_list", min=1, nonempty=True)
    explicit_basis_hidden: int = opt(128, "Explicit only: width of the basis MLP's hidden layer.", min=1)
    sh_degree: int = opt(4, "Spherical-harmonics bands of the view direction; gives `sh_degree²` coefficients. "
                            "Used by both decoders.", min=1, max=4)
    density_bias: float = opt(-1.0, "Density is `trunc_exp(x + density_bias)` of the raw MLP output `x`, in the "
                                    "radiance field and in every proposal level.", "number")
    n_samples: int = opt(48, "Samples per ray for the radiance field (the last sampling level).", min=1)
    early_stop_transmittance: float = opt(1.0e-4, "The radiance field's renderer stops marching a ray once its "
                                                  "transmittance drops below this value; later samples get weight "
                                                  "0. It also applies when evaluating and rendering; 0: never stop "
                                                  "early. Proposal levels always use 1e-4.", "number", min=0, lt=1)
    proposal: ProposalConfig = section(ProposalConfig)
    regularizers: RegularizersConfig = section(RegularizersConfig)


@dataclass
class MixVoxelsConfig:
    comps_density: list = opt([16, 4, 4], "VM components of the pairs xy-plane x z-line, xz x y, yz x x, for the "
                                          "density-type grids (static and dynamic density, variation).",
                              "int_list", min=1, length=3)
    comps_app: list = opt([48, 12, 12], "The same for the appearance grids.", "int_list", min=1, length=3)
    init_std: float = opt(0.1, "Standard deviation of the Gaussian initialisation of every grid.", "number", min=0)
    voxels_init: int = opt(16777216, "Voxel count of the grids at the start (256³); per-axis resolutions follow the "
                                     "box's aspect.", min=8)
    voxels_final: int = opt(262144000, "Voxel count after the last upsample (640³), at least `voxels_init`; the "
                                       "counts grow log-linearly over `upsample_steps`.", min=8)
    upsample_steps: list = opt([3000, 4000, 5000, 6500], "Steps at which every grid is resampled (bilinear) to the "
                                                         "next resolution; the optimiser's moments restart.",
                               "int_list", min=0)
    alpha_mask_steps: list = opt([3500], "Steps at which the alpha mask is rebuilt from the static density (alpha "
                                         "over one sample spacing, 3x3x3 max-pooled, above `alpha_mask_threshold`) "
                                         "and the sampling box shrinks to it. Samples in empty cells are dropped.",
                                 "int_list", min=0)
    alpha_mask_threshold: float = opt(1.0e-5, "See `alpha_mask_steps`.", "number", min=0)
    n_samples: int = opt(128, "Stratified samples per ray inside the (shrunk) box.", min=1)
    density_scale: float = opt(25.0, "Density is `density_scale * relu(feature)` (the reference's distance scale).",
                               "number", min=0)
    dynamic_density_activation: str = opt("relu", "`relu` (the reference) or `softplus` for the dynamic density "
                                                  "`density_scale * act(<h, z> + b)`; why `softplus`: see above.",
                                          "choice", choices=("relu", "softplus"))
    dynamic_density_sharpness: float = opt(1.0, "`b` of the softplus: `act(a) = log(1 + exp(b a)) / b`. Larger `b` "
                                                "is closer to relu: less density left in empty space (`b = 1` "
                                                "leaves `density_scale * exp(a)` there), a smaller gradient below "
                                                "0.", "number", gt=0)
    dynamic_density_relu_step: Any = opt(None, "With `dynamic_density_activation: softplus`: the training step from "
                                               "which the dynamic density is a relu instead (null: softplus "
                                               "throughout). The early steps, where a relu density can die, then "
                                               "run with the softplus, and the rest with the relu, which leaves no "
                                               "density in empty space. Testoptim and rendering use the activation "
                                               "of the last training step.", min=0, nullable=True)
    dynamic_density_shift: float = opt(0.0, "Added to the dynamic density's pre-activation: `density_scale * "
                                            "act(<h, z> + b + shift)`. At 0 a fresh softplus density is "
                                            "`density_scale * log 2` (about 17 per unit length): every dynamic ray "
                                            "starts opaque, and on a white-background capture an opaque sample of "
                                            "the background's colour gets no gradient (a stationary point), so the "
                                            "model keeps a white haze that other views see as clouds over the "
                                            "movers. A negative shift (the synthetic preset: -6) starts the dynamic "
                                            "branch transparent.", "number")
    ndc_dynamic_density_shift: Any = opt(None, "The shift on forward-facing (NDC) datasets (null: "
                                               "`dynamic_density_shift`). The synthetic preset keeps 0 on "
                                               "forward-facing data, whose rays end on a room behind the movers, "
                                               "and -6 on world-space data.", "number",
                                         nullable=True)
    ndc_bbox: Any = opt(None, "The grids' box on forward-facing (NDC) datasets when `model.bbox` is null (null: the "
                              "dataset's box). World-space (Blender-layout) datasets use their own scene box unless "
                              "`model.bbox` is given, so one preset fits both rigs.", "bbox", nullable=True)
    static_hidden: int = opt(128, "Width of the two hidden layers of the static colour MLP (input: appearance "
                                  "features and the unit view direction).", min=1)
    trunk_hidden: int = opt(512, "Hidden width of the dynamic trunks (density: features -> hidden -> width; colour: "
                                 "features and view direction -> hidden -> width).", min=1)
    width: int = opt(512, "Width `D` of the trunk features, the per-frame queries and the time function's output.",
                     min=1)
    time_freqs: int = opt(10, "Frequencies `L` of the time encoding.", min=1)
    time_hidden: int = opt(512, "Hidden width of the two time MLPs (density and colour).", min=1)
    time_grid: int = opt(0, "Features `G` of a learned time grid beside the sinusoids (0: none, the reference); "
                            "see above.", min=0)
    lr_basis: float = opt(3.0e-3, "Learning rate of the MLPs and per-frame queries (the grids use `train.lr`).",
                          "number", min=0)
    lr_time_scale: float = opt(5.0, "The time MLPs learn at `lr_basis * lr_time_scale`.", "number", min=0)
    std_threshold: float = opt(0.03, "A pixel is labelled dynamic when its blurred temporal std exceeds this.",
                               "number", min=0)
    dynamic_threshold: float = opt(0.9, "A ray is dynamic when sigmoid of its maximum variation logit exceeds "
                                        "this.", "number", gt=0, lt=1)
    sample_threshold: float = opt(0.01, "Along a dynamic ray, a sample is dynamic when sigmoid of the logits "
                                        "max-pooled over `pool_kernel` samples exceeds this.", "number", gt=0, lt=1)
    pool_kernel: int = opt(41, "Window of that max pooling, in samples.", min=1)
    bce_pos_weight: float = opt(19.0, "Weight of the positive (dynamic) class in the variation BCE.", "number", min=0)
    bce_weight: float = opt(1.0, "Weight of the variation BCE in the loss.", "number", min=0)
    stage1_steps: int = opt(10000, "Steps with the per-frame head and no offsets before the time function and the "
                                   "offsets take over (0: the time function from the first step). Ignored by the "
                                   "baseline (`model.sync: false`), which keeps the per-frame head.", min=0)


@dataclass
class GaussiansConfig:
    max_gaussians: int = opt(400000, "The bound on the Gaussian count: every per-Gaussian buffer (parameters, Adam "
                                     "moments, deformation, rasterizer) is allocated at it; densification stops "
                                     "there (4DGaussians densifies below 360k).", min=1)
    sh_degree: int = opt(3, "Largest spherical-harmonics degree of the colours (0..3: 1, 4, 9 or 16 "
                            "coefficients per channel).", min=0, max=3)
    sh_increase_every: int = opt(1000, "The active degree starts at 0 and rises by one every this many steps.", min=1)
    init_points: int = opt(20000, "Random initial points when the dataset has no `points3d.npy` (see above).",
                           min=1)
    init_from_dataset: bool = opt(True, "Start from the dataset's `points3d.npy` when it has one.", "bool")
    init_depth: str = opt("photo", "Depth of a random initial point along its pixel's ray: `photo`, the most "
                                   "photo-consistent of `init_depth_candidates` depths against the other training "
                                   "cameras' first frames (a plane sweep); `random`, uniform in disparity "
                                   "(forward-facing) or along the ray inside the scene box.", "choice",
                          choices=("photo", "random"))
    init_depth_candidates: int = opt(48, "Candidate depths of `init_depth: photo`.", min=2)
    lr_extent: str = opt("cameras", "The length the rates of the means and the deformation are multiplied by: "
                                    "`cameras`, the scene extent (3DGS: 1.1 x the largest distance of a training "
                                    "camera from their mean); `depth`, the median distance of the initial Gaussians "
                                    "from their nearest training camera (the same scale on a forward-facing rig, "
                                    "whose cameras sit close together, as on one around the scene).", "choice",
                         choices=("cameras", "depth"))
    init_max_radius_px: Any = opt(None, "A random initial point's Gaussian starts no wider than this (3 sigma, in "
                                        "pixels of the camera whose pixel it was drawn from; null: its "
                                        "nearest-neighbour scale as it is). Sparse random points in a large "
                                        "frustum get scales of a hundred pixels at 1352x1014: every pixel then "
                                        "walks a thousand of them, and a step takes minutes.", "number", gt=0,
                                  nullable=True)
    init_opacity: float = opt(0.1, "Opacity of the initial Gaussians.", "number", gt=0, lt=1)
    static_capacity: float = opt(1.0, "Share of `max_gaussians` the coarse stage may densify to; the rest is "
                                      "left for the fine stage. On a textured static scene the coarse stage "
                                      "fills any bound, and small movers, which the static stage cannot hold, "
                                      "then get no Gaussians at all.", "number", gt=0, max=1)
    max_growth: Any = opt(None, "Share of `max_gaussians` one densification step may add at most (the largest "
                                "view-space gradients first); null: no bound but the capacity.", "number", gt=0,
                          max=1, nullable=True)
    spawn_points: int = opt(0, "Fine stage, at each densification step: up to this many new Gaussians where a "
                               "random training image (camera, frame) is rendered worst, each at the most "
                               "photo-consistent depth of its pixel against the other training cameras' frames of "
                               "the same scene time (the current offsets), moved back to the canonical space by "
                               "the deformation. Densification grows what is there; a small mover over a finely "
                               "textured wall has nothing of its own to grow from. 0: off.", min=0)
    spawn_error: float = opt(0.1, "A pixel qualifies for `spawn_points` when its mean absolute error over R, G, B "
                                  "exceeds this.", "number", gt=0)
    spawn_opacity: float = opt(0.5, "Opacity of a spawned Gaussian (its scale: one pixel of its camera).", "number",
                               gt=0, lt=1)
    temporal_opacity: bool = opt(False, "Spawned Gaussians (`spawn_points`) get an opacity that lives around the time "
                                        "they were spawned at: times `exp(-z^2 / 2)`, `z = (t - t_centre) / sigma`, "
                                        "`sigma = spawn_time_scale` frames at first, both learnt (the rest stay "
                                        "present at every time). A mover's Gaussians then need not be carried "
                                        "through the whole video by the deformation.", "bool")
    spawn_time_scale: float = opt(3.0, "The starting `sigma` of `temporal_opacity`, frames.", "number", gt=0)
    lr_time_centre: float = opt(1.0e-3, "Learning rate of `t_centre` (normalised time: the video spans 1.6).",
                                "number", min=0)
    lr_time_scale: float = opt(1.0e-2, "Learning rate of `ln sigma`.", "number", min=0)
    static_steps: int = opt(3000, "Steps of the coarse stage (plain 3D Gaussians, no deformation); the fine stage "
                                  "(deformation on, a new Adam state) follows.", min=0)
    batch_images: int = opt(4, "Training images per step (loss averaged, gradients and densification statistics "
                               "summed).", min=1)
    crop: Any = opt(None, "`[width, height]`: train on a random window of that size of each image instead of "
                          "the whole image. `null`: whole images.", "int_list", min=16, length=2, nullable=True)
    ssim_weight: float = opt(0.0, "Weight `w` of D-SSIM in the loss `(1 - w) L1 + w (1 - SSIM)` (3DGS: 0.2; "
                                  "4DGaussians: 0).", "number", min=0, max=1)
    lr_position_init: float = opt(1.6e-4, "Learning rate of the means at the start of each stage, times the "
                                          "length `lr_extent` names.", "number", min=0)
    lr_position_final: float = opt(1.6e-6, "... decayed exponentially to this (times the same length).", "number", min=0)
    position_lr_steps: int = opt(20000, "... over this many steps of the stage.", min=1)
    lr_feature: float = opt(2.5e-3, "Learning rate of the SH DC; the higher coefficients learn at 1/20 of it.",
                            "number", min=0)
    lr_opacity: float = opt(0.05, "Learning rate of the opacity logits.", "number", min=0)
    lr_scaling: float = opt(5.0e-3, "Learning rate of the log-scales.", "number", min=0)
    lr_rotation: float = opt(1.0e-3, "Learning rate of the quaternions.", "number", min=0)
    lr_grid_init: float = opt(1.6e-3, "Learning rate of the deformation planes at the start of the fine stage, times "
                                      "the length `lr_extent` names.", "number", min=0)
    lr_grid_final: float = opt(1.6e-4, "... decayed exponentially to this (times the same length).", "number", min=0)
    lr_mlp_init: float = opt(1.6e-4, "Learning rate of the deformation MLPs at the start of the fine stage, times "
                                     "the length `lr_extent` names.", "number", min=0)
    lr_mlp_final: float = opt(1.6e-5, "... decayed exponentially to this (times the same length).", "number", min=0)
    deform_lr_steps: int = opt(14000, "Steps of the fine stage over which the deformation's rates decay.", min=1)
    plane_features: int = opt(16, "Features per plane texel of the deformation's space-time planes.", min=1)
    plane_res: int = opt(64, "Base resolution of the planes along x, y and z.", min=2)
    plane_multires: list = opt([1, 2], "One scale per entry: the space resolution is `plane_res` times it.",
                               "int_list", min=1, nonempty=True)
    time_res: Any = opt("auto", "Resolution of the planes along time (not multiplied); `auto` = "
                                "`max(2, ceil(F / 2))` (150 for 300 frames, as 4DGaussians on DyNeRF).",
                        min=2, also=("auto",))
    deform_width: int = opt(128, "Width `W` of the deformation MLPs.", min=1)
    deform_depth: int = opt(0, "Trunk depth: 0 or 1 is one Linear(F, W) (4DGaussians); each extra level adds a "
                               "ReLU and a Linear(W, W).", min=0)
    deform_heads: Any = opt(["position", "scale", "rotation", "opacity", "sh"],
                            "The deltas the deformation predicts, a list of `position`, `scale`, `rotation`, "
                            "`opacity`, `sh` (DyNeRF: all five; D-NeRF: the first three).",
                            "any", allowed="a non-empty list of position, scale, rotation, opacity, sh")
    deform_zero_init: bool = opt(False, "`true`: each head's last layer starts at 0, so the deformation is exactly "
                                        "0 when the fine stage starts. `false`: Xavier weights and PyTorch's "
                                        "default biases, as 4DGaussians.", "bool")
    plane_tv: float = opt(2.0e-4, "Total variation of the space planes (the K-Planes form of "
                                  "kernels/plane_regularizers.py), fine stage only.", "number", min=0)
    time_smoothness: float = opt(1.0e-3, "Squared second difference along time of the time planes.", "number", min=0)
    l1_time_planes: float = opt(1.0e-4, "`mean(|1 - P|)` of the time planes.", "number", min=0)
    densify_from: int = opt(500, "Density control runs after steps `k` with `densify_from < k < densify_until` "
                                 "and `k` a multiple of `densify_every`.", min=0)
    densify_until: int = opt(10000, "See `densify_from`; the view-space gradient statistics stop here.", min=0)
    densify_every: int = opt(100, "See `densify_from`.", min=1)
    grad_threshold: float = opt(2.0e-4, "Mean view-space gradient (NDC units) from which a Gaussian is cloned or "
                                        "split.", "number", gt=0)
    percent_dense: float = opt(0.01, "Cloned when its largest scale is at most this times the extent, else split.",
                               "number", gt=0)
    min_opacity: float = opt(0.005, "Pruned below this opacity.", "number", min=0, lt=1)
    prune_above: int = opt(200000, "Pruning runs only while the count exceeds this (3DGS: 0; 4DGaussians: 200k).",
                           min=0)
    max_screen_radius: float = opt(20.0, "After the first opacity reset, also pruned above this screen radius "
                                         "(pixels) ...", "number", gt=0)
    max_world_scale: float = opt(0.1, "... or above this largest scale times the extent.", "number", gt=0)
    opacity_reset_every: Any = opt(None, "Every this many steps (before `densify_until`) every opacity becomes at "
                                         "most 0.01. `null`: never (4DGaussians on DyNeRF; 3DGS: 3000).",
                                   min=1, nullable=True)


@dataclass
class OffsetsConfig:
    lr_scale: float = opt(0.1, "The offsets' learning rate is `lr_scale * train.lr`; it follows the same schedule "
                               "(`train.schedule`).", "number", min=0)
    l1: float = opt(1.0e-4, "Weight of the L1 penalty `l1 * sum_k |d_k|` over the cameras whose offset trains, in "
                            "normalised units. It is applied while the offsets train, and in `testoptim`.",
                    "number", min=0)
    start_step: int = opt(0, "The offsets are held (no update, no L1 penalty) before this step, so that the field "
                             "takes a first shape with the cameras' frame times as given.", min=0)
    freeze_step: Any = opt(50000, "From this step on, the offsets are no longer updated and their L1 penalty is "
                                  "off; the field keeps training. `null`: never freeze.", min=0, nullable=True)
    init_mean: float = opt(-0.001, "Mean of the initial offsets, in normalised time units (-0.001 is about -0.19 "
                                   "frames at 300 frames and -0.037 frames at 60).", "number")
    init_std: float = opt(0.001, "Standard deviation of the initial offsets, in normalised time units. They are "
                                 "drawn with `train.seed` for the trainable cameras; the others start at 0.",
                          "number", min=0)
    init_from_dataset: bool = opt(True, "`true`: when the dataset folder holds `offsets_init.json` (written by "
                                        "`prepare` or `sync-estimate`: coarse offsets in frames, relative to the "
                                        "first camera), a new run starts every trainable camera's offset from it, "
                                        "relative to the test camera, instead of `init_mean`/`init_std`; `--resume` "
                                        "keeps the checkpoint's offsets. `false`: ignore the file.", "bool")


@dataclass
class SamplingConfig:
    isg_step: Any = opt(0, "From this step on, rays are drawn with ISG importance weights (pixels far from their "
                           "temporal median), until `ist_step`. `null`: never. Before it, rays are uniform over "
                           "all pixels and frames of the training cameras.", min=0, nullable=True)
    ist_step: Any = opt(50000, "From this step on, rays are drawn with IST importance weights (pixels that change "
                               "within ±25 frames); it takes precedence over ISG. `null`: never.",
                        min=0, nullable=True)
    floor: float = opt(0.5, "The uniform share of every importance-sampled (ISG/IST) batch (see above). 0: pure "
                            "ISG/IST, as published; 1: uniform sampling.", "number", min=0, max=1)


@dataclass
class TrainConfig:
    steps: int = opt(90000, "Number of training steps. The cosine schedule reaches 0 at the last step.", min=1)
    batch_rays: int = opt(4096, "Rays per step. It is also the model's ray capacity: per-sample buffers are sized "
                                "`batch_rays` × samples per level. Evaluation and rendering process images in "
                                "chunks of this many rays, and `testoptim.batch_rays` must not exceed it.", min=1)
    lr: float = opt(0.01, "Adam learning rate of the field (K-Planes: every field and proposal parameter group; "
                          "Sync-MixVoxels: the grids; Sync-4DGS: none, its rates are in `gaussians`); the offsets "
                          "use `lr * offsets.lr_scale`.", "number", gt=0)
    warmup_steps: int = opt(512, "`warmup_cosine` only: the rate rises linearly over this many steps, then decays "
                                 "with a cosine.", min=0)
    schedule: str = opt("warmup_cosine", "Learning-rate factor applied to every group: `warmup_cosine`, or "
                                         "`constant` (factor 1).", "choice", choices=SCHEDULES)
    seed: int = opt(0, "Seeds the ray batches, the parameter initialisation and the initial offsets. `testoptim` "
                       "draws its rays with `seed + 1`.")
    val_every: Any = opt(1000, "Every this many steps (and at the last step), a full-image validation (see above). "
                               "`null` turns validation off.", min=1, nullable=True)
    val_frames: int = opt(3, "Frames per camera in each validation.", min=1)
    val_pixel_stride: int = opt(8, "Validation renders every N-th pixel in x and in y (N = 1: every pixel).", min=1)
    log_every: int = opt(50, "Write a `log.jsonl` record every N steps and at the last step. A record holds averages "
                             "over the steps since the last record, learning rates, the sampling mode and every "
                             "camera's offset in frames.", min=1)
    checkpoint_every: int = opt(2000, "Write a checkpoint every N steps and at the end. The last 3 are kept.", min=1)


@dataclass
class TestoptimConfig:
    steps: int = opt(1000, "Optimisation steps. `--steps N` on the command line takes precedence.", min=1)
    lr: float = opt(1.0e-3, "Adam learning rate of the test camera's offset. It stays constant: no warm-up and no "
                            "schedule.", "number", gt=0)
    batch_rays: int = opt(4096, "Rays per step, at most `train.batch_rays` (which sizes the model's ray buffers).",
                          min=1)
    variation_steps: int = opt(0, "Sync-MixVoxels only: before the offset, retrain the variation field on the test "
                                  "camera's video for this many steps (see above). 0: no retraining.", min=0)


@dataclass
class EvalConfig:
    max_frames: Any = opt(None, "`null`: every frame. N: N evenly spaced frames from the first to the last "
                                "(rounded to whole frames; duplicates dropped).", min=1, nullable=True)
    lpips: bool = opt(True, "Compute LPIPS (AlexNet) alongside PSNR and SSIM. Nothing is downloaded: when the "
                            "`lpips` package, torchvision or the weights are missing, `lpips` is `null` in "
                            "`metrics.json` and `lpips_reason` says why. `false` skips it.", "bool")


@dataclass
class Config:
    name: Any = opt("run", "Name of the run. The run folder is `runs/<name>` unless `--out` is given.",
                    "any", allowed="a name")
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    kplanes: KPlanesConfig = section(KPlanesConfig)
    mixvoxels: MixVoxelsConfig = section(MixVoxelsConfig)
    gaussians: GaussiansConfig = section(GaussiansConfig)
    offsets: OffsetsConfig = section(OffsetsConfig)
    sampling: SamplingConfig = section(SamplingConfig)
    train: TrainConfig = section(TrainConfig)
    testoptim: TestoptimConfig = section(TestoptimConfig)
    eval: EvalConfig = section(EvalConfig)


def is_section(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("section"))


def section_class(f: dataclasses.Field):
    return f.default_factory


def defaults(cls=Config) -> dict:
    """The defaults of ``cls`` as a plain nested dict (sections are dicts)."""
    out = {}
    for f in dataclasses.fields(cls):
        if is_section(f):
            out[f.name] = defaults(section_class(f))
        else:
            out[f.name] = f.default_factory() if f.default is dataclasses.MISSING else f.default
    return out


def iter_fields(cls=Config, prefix: str = ""):
    """``(dotted key, metadata, default)`` of every leaf field, in schema order."""
    for f in dataclasses.fields(cls):
        if is_section(f):
            yield from iter_fields(section_class(f), f"{prefix}{f.name}.")
        else:
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            yield f"{prefix}{f.name}", f.metadata, default


def iter_sections(cls=Config, prefix: str = ""):
    """``(dotted section name, class)`` of every section, depth first, in schema order."""
    for f in dataclasses.fields(cls):
        if is_section(f):
            yield f"{prefix}{f.name}", section_class(f)
            yield from iter_sections(section_class(f), f"{prefix}{f.name}.")


FIELDS = {key: meta for key, meta, _ in iter_fields()}
SECTIONS = {name for name, _ in iter_sections()}


def kind_of_section(dotted: str) -> str | None:
    """The model kind whose own section holds ``dotted`` (a key or section), or None for a shared one."""
    top = dotted.split(".", 1)[0]
    for kind, names in SECTIONS_OF_KIND.items():
        if top in names:
            return kind
    return None


def moved_to(dotted: str) -> str | None:
    """The new name of ``dotted`` (a key or section of the previous layout), or None."""
    if dotted in MOVED_KEYS:
        return MOVED_KEYS[dotted]
    for old, new in MOVED_KEYS.items():
        if dotted.startswith(old + "."):
            return new + dotted[len(old):]
    return None
