"""YAML configs: defaults, presets, dotted overrides, validation.

A config is plain nested data (dicts, lists, numbers, strings). ``load_config`` merges, in order:
the defaults below, the YAML file (which may name a ``base:`` file to start from), then
``-o key.sub=value`` overrides (values parsed as YAML). Unknown keys are errors that name the file
and the key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from taichi_syncnerf.errors import ConfigError
from taichi_syncnerf.schedule import LR_SCHEDULES

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "data": {
        "path": None,  # dataset folder; relative paths resolve against the working directory
        "generate": None,  # make-scene arguments: a scene is generated when the folder is missing
        "downsample": 1,
        "max_frames": None,
        "test_camera": "cam00",
        "background": "white",  # blender layout: white or black
    },
    "model": {
        "kind": "sync-kplanes",  # sync-kplanes | sync-mixvoxels (taichi_syncnerf/models/registry.py)
        "sync": True,
        "decoder": "hybrid",  # hybrid | explicit
        "features": 16,  # per scale
        "space_res": [64, 128, 256, 512],
        "time_res": "auto",  # int, or auto = half the frame count
        "density_hidden": 64,
        "geo_features": 15,
        "color_hidden": [64, 64],
        "explicit_basis_hidden": 128,
        "sh_degree": 4,
        "density_bias": -1.0,  # trunc_exp(x + density_bias)
        "n_samples": 48,
        "proposal": {
            "encoder": "planes",  # planes | hashgrid
            "samples": [256, 128],
            "features": 8,
            "space_res": [128, 256],
            "time_res": "auto",
            "hidden": 64,
            "hash_levels": 8,
            "hash_log2_table": 17,
            "hash_base_res": 16,
            "hash_max_res": 256,
        },
        "bbox": None,  # [[xmin,ymin,zmin],[xmax,ymax,zmax]]; None = from the dataset
    },
    "mixvoxels": {  # model.kind: sync-mixvoxels (docs/CONFIG.md); published Plenoptic settings
        "comps_density": [16, 4, 4],  # VM components per pair (xy*z, xz*y, yz*x): density-type grids
        "comps_app": [48, 12, 12],  # appearance grids
        "init_std": 0.1,
        "voxels_init": 16777216,  # 256^3
        "voxels_final": 262144000,  # 640^3
        "upsample_steps": [3000, 4000, 5000, 6500],
        "alpha_mask_steps": [3500],
        "alpha_mask_threshold": 1.0e-5,
        "n_samples": 128,  # per ray, inside the (shrunk) box
        "density_scale": 25.0,
        "dynamic_density_activation": "relu",  # relu (the reference) | softplus
        "dynamic_density_sharpness": 1.0,  # softplus(b a) / b: larger b, closer to relu
        "dynamic_density_relu_step": None,  # softplus only: relu from this training step on (null: never)
        "static_hidden": 128,
        "trunk_hidden": 512,
        "width": 512,  # trunk feature width D (the per-frame / time queries' width)
        "time_freqs": 10,
        "time_hidden": 512,
        "time_grid": 0,  # learned per-frame latents read at t + offset, beside the sinusoids (0: none)
        "lr_basis": 3.0e-3,  # MLPs and per-frame queries; the grids use train.lr
        "lr_time_scale": 5.0,  # time MLPs: lr_basis * lr_time_scale
        "std_threshold": 0.03,
        "dynamic_threshold": 0.9,
        "sample_threshold": 0.01,
        "pool_kernel": 41,
        "bce_pos_weight": 19.0,
        "bce_weight": 1.0,
        "stage1_steps": 10000,  # per-frame head without offsets, then the time function with offsets
    },
    "offsets": {
        "lr_scale": 0.1,  # offsets lr = lr_scale * train.lr
        "l1": 1.0e-4,
        "start_step": 0,  # offsets held until this step (the field takes shape first)
        "freeze_step": 50000,
        "init_mean": -0.001,
        "init_std": 0.001,
        "proposal_grad": True,  # proposal levels' time gradient also drives the offsets
        "init_from_dataset": True,  # start from DATA/offsets_init.json when the dataset has one
    },
    "regularizers": {
        "plane_tv": 2.0e-4,
        "plane_tv_proposal": 2.0e-4,
        "time_smoothness": 1.0e-3,
        "time_smoothness_proposal": 1.0e-5,
        "l1_time_planes": 1.0e-4,
        "l1_time_planes_proposal": 1.0e-4,
        "distortion": 1.0e-3,
        "interlevel": 1.0,
    },
    "train": {
        "steps": 90000,
        "batch_rays": 4096,
        "lr": 0.01,
        "warmup_steps": 512,
        "schedule": "warmup_cosine",
        "seed": 0,
        "isg_step": 0,  # ISG importance sampling from this step (null: never)
        "ist_step": 50000,  # IST importance sampling from this step (null: never)
        "sampling_floor": 0.5,  # uniform share of every importance-sampled batch (pixel probability floor)
        "val_every": 1000,  # full-image validation PSNR every N steps (null: never)
        "val_frames": 3,  # frames of a training camera and of the test camera in each validation
        "val_pixel_stride": 8,  # validation renders every N-th pixel in x and in y
        "log_every": 50,
        "checkpoint_every": 2000,
        "early_stop_transmittance": 1.0e-4,
    },
    "testoptim": {
        "steps": 1000,
        "lr": 1.0e-3,
        "batch_rays": 4096,
        "variation_steps": 0,  # sync-mixvoxels: retrain the variation field on the test video first (0: no)
    },
    "eval": {
        "max_frames": None,  # evaluate on every frame of the test camera (None) or an even subset
        "lpips": True,
    },
}


RETIRED_KEYS = {"train": ("eval_every",), "eval": ("chunk_rays",)}  # dropped from old runs' config.yaml

SCHEDULES = tuple(LR_SCHEDULES)

MODEL_KINDS = ("sync-kplanes", "sync-mixvoxels")

GENERATE_KEYS = ("layout", "family", "encoding", "cameras", "frames", "size", "fps", "offset_sigma", "seed", "png",
                 "supersample", "crf")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2 floats: ``1e-3``, ``-2E+5`` and ``1.0e5`` are numbers."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)


def deep_merge(base: dict, update: dict, where: str, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in out:
            raise ConfigError(f"{where}: unknown key '{dotted}'")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = deep_merge(out[key], value, where, dotted + ".")
        elif isinstance(out[key], dict) and value is not None and key != "generate":
            raise ConfigError(f"{where}: '{dotted}' must be a mapping, got {type(value).__name__}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A file path, or a preset name such as ``synthetic/sync-kplanes`` from the packaged configs/."""
    p = Path(name)
    if p.exists():
        return p
    from importlib import resources

    root = resources.files("taichi_syncnerf.configs")
    for cand in (str(name), f"{name}.yaml"):
        res = root.joinpath(cand)
        if res.is_file():
            return Path(str(res))
    raise ConfigError(f"{name}: config file not found (not a path, nor a preset in configs/)")


def _load_file(path: Path, depth: int = 0) -> dict:
    if depth > 8:
        raise ConfigError(f"{path}: 'base:' chain is too deep (a cycle?)")
    data = _read_yaml(path)
    base_name = data.pop("base", None)
    merged = copy.deepcopy(DEFAULTS)
    if base_name is not None:
        base_path = Path(base_name)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        merged = _load_file(base_path, depth + 1)
    return deep_merge(merged, data, str(path))


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected KEY=VALUE, e.g. train.steps=2000")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(cfg: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    cfg = copy.deepcopy(cfg)
    for text in overrides:
        keys, value = parse_override(text)
        node = cfg
        for i, k in enumerate(keys[:-1]):
            if not isinstance(node, dict) or k not in node or not isinstance(node[k], dict):
                raise ConfigError(f"override '{text}': unknown key '{'.'.join(keys[: i + 1])}'")
            node = node[k]
        if keys[-1] not in node:
            raise ConfigError(f"override '{text}': unknown key '{'.'.join(keys)}'")
        if isinstance(node[keys[-1]], dict) and keys[-1] != "generate":
            raise ConfigError(f"override '{text}': '{'.'.join(keys)}' is a section, set its keys")
        node[keys[-1]] = value
    return cfg


def load_config(path: str | os.PathLike, overrides=()) -> dict:
    cfg = _load_file(resolve_config_path(path))
    cfg = apply_overrides(cfg, overrides)
    validate(cfg, str(path), {".".join(parse_override(text)[0]): text for text in overrides})
    return cfg


def load_resolved(path: str | os.PathLike) -> dict:
    """Read a run's saved ``config.yaml`` (already resolved: no base, all keys)."""
    path = Path(path)
    data = _read_yaml(path)
    for section, keys in RETIRED_KEYS.items():
        if isinstance(data.get(section), dict):
            for key in keys:
                data[section].pop(key, None)
    cfg = deep_merge(DEFAULTS, data, str(path))
    validate(cfg, str(path))
    return cfg


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int_list(v, minimum: int) -> bool:
    return isinstance(v, list) and all(_is_int(x) and x >= minimum for x in v)


def validate(cfg: dict, where: str, overridden: dict[str, str] | None = None) -> None:
    """Check every value the code relies on; ``overridden`` maps dotted keys to the ``-o`` that set them."""
    overridden = overridden or {}

    def require(cond: bool, key: str, msg: str, *related: str):
        if not cond:
            src = next((f"override '{overridden[k]}'" for k in (key, *related) if k in overridden), where)
            raise ConfigError(f"{src}: {key} {msg}")

    m, p, t, o = cfg["model"], cfg["model"]["proposal"], cfg["train"], cfg["offsets"]
    require(m["decoder"] in ("hybrid", "explicit"), "model.decoder", "must be hybrid or explicit")
    for key in ("features", "n_samples", "density_hidden", "geo_features"):
        require(_is_int(m[key]) and m[key] > 0, f"model.{key}", "must be a positive integer")
    require(_is_int_list(m["space_res"], 2) and len(m["space_res"]) > 0, "model.space_res",
            "must be a non-empty list of integers >= 2")
    require(m["time_res"] == "auto" or (_is_int(m["time_res"]) and m["time_res"] >= 2), "model.time_res",
            "must be 'auto' or an integer >= 2")
    require(_is_int_list(m["color_hidden"], 1) and len(m["color_hidden"]) > 0, "model.color_hidden",
            "must be a non-empty list of positive integers")
    require(_is_int(m["sh_degree"]) and 1 <= m["sh_degree"] <= 4, "model.sh_degree", "must be an integer 1..4")
    require(_is_int(m["explicit_basis_hidden"]) and m["explicit_basis_hidden"] > 0, "model.explicit_basis_hidden",
            "must be a positive integer")
    require(_is_number(m["density_bias"]), "model.density_bias", "must be a number")
    bbox = m["bbox"]
    require(bbox is None or (isinstance(bbox, list) and len(bbox) == 2
                             and all(isinstance(c, list) and len(c) == 3 and all(_is_number(v) for v in c)
                                     for c in bbox)
                             and all(lo < hi for lo, hi in zip(*bbox))), "model.bbox",
            "must be null or [[xmin, ymin, zmin], [xmax, ymax, zmax]] with each min < max")

    require(p["encoder"] in ("planes", "hashgrid"), "model.proposal.encoder", "must be planes or hashgrid")
    require(_is_int_list(p["samples"], 1), "model.proposal.samples", "must be a list of positive integers")
    require(_is_int_list(p["space_res"], 2) and (len(p["space_res"]) > 0 or len(p["samples"]) == 0),
            "model.proposal.space_res", "must be a list of integers >= 2, non-empty when there are proposal "
            "levels (model.proposal.samples)", "model.proposal.samples")
    for key in ("features", "hidden"):
        require(_is_int(p[key]) and p[key] > 0, f"model.proposal.{key}", "must be a positive integer")
    require(p["time_res"] == "auto" or (_is_int(p["time_res"]) and p["time_res"] >= 2), "model.proposal.time_res",
            "must be 'auto' or an integer >= 2")
    for key, lo in (("hash_levels", 1), ("hash_base_res", 2), ("hash_max_res", 2)):
        require(_is_int(p[key]) and p[key] >= lo, f"model.proposal.{key}", f"must be an integer >= {lo}")
    require(_is_int(p["hash_log2_table"]) and 4 <= p["hash_log2_table"] <= 26, "model.proposal.hash_log2_table",
            "must be an integer from 4 to 26")
    require(p["hash_max_res"] >= p["hash_base_res"], "model.proposal.hash_max_res",
            "must be >= model.proposal.hash_base_res", "model.proposal.hash_base_res")

    for key in ("lr_scale", "l1", "init_std"):
        require(_is_number(o[key]) and o[key] >= 0, f"offsets.{key}", "must be a non-negative number")
    require(_is_number(o["init_mean"]), "offsets.init_mean", "must be a number")
    require(o["freeze_step"] is None or (_is_int(o["freeze_step"]) and o["freeze_step"] >= 0),
            "offsets.freeze_step", "must be an integer >= 0 or null")
    require(_is_int(o["start_step"]) and o["start_step"] >= 0, "offsets.start_step",
            "must be an integer >= 0")
    require(isinstance(o["proposal_grad"], bool), "offsets.proposal_grad", "must be true or false")
    require(isinstance(o["init_from_dataset"], bool), "offsets.init_from_dataset",
            "must be true or false")
    for key, value in cfg["regularizers"].items():
        require(_is_number(value) and value >= 0, f"regularizers.{key}", "must be a non-negative number")

    for key in ("steps", "batch_rays", "log_every", "checkpoint_every"):
        require(_is_int(t[key]) and t[key] > 0, f"train.{key}", "must be a positive integer")
    require(_is_number(t["lr"]) and t["lr"] > 0, "train.lr", "must be a positive number")
    require(_is_int(t["seed"]), "train.seed", "must be an integer")
    require(_is_number(t["early_stop_transmittance"]) and 0 <= t["early_stop_transmittance"] < 1,
            "train.early_stop_transmittance", "must be a number in [0, 1)")
    require(_is_int(t["warmup_steps"]) and t["warmup_steps"] >= 0, "train.warmup_steps",
            "must be an integer >= 0")
    require(t["schedule"] in SCHEDULES, "train.schedule", f"must be one of {', '.join(SCHEDULES)}")
    for key in ("isg_step", "ist_step"):
        require(t[key] is None or (_is_int(t[key]) and t[key] >= 0), f"train.{key}", "must be an integer >= 0 or null")
    require(_is_number(t["sampling_floor"]) and 0 <= t["sampling_floor"] <= 1, "train.sampling_floor",
            "must be a number in [0, 1]")
    require(t["val_every"] is None or (_is_int(t["val_every"]) and t["val_every"] > 0), "train.val_every",
            "must be a positive integer or null")
    for key in ("val_frames", "val_pixel_stride"):
        require(_is_int(t[key]) and t[key] > 0, f"train.{key}", "must be a positive integer")

    require(m["kind"] in MODEL_KINDS, "model.kind", f"must be one of {', '.join(MODEL_KINDS)}")
    _validate_mixvoxels(cfg["mixvoxels"], require)

    to = cfg["testoptim"]
    for key in ("steps", "batch_rays"):
        require(_is_int(to[key]) and to[key] > 0, f"testoptim.{key}", "must be a positive integer")
    require(_is_number(to["lr"]) and to["lr"] > 0, "testoptim.lr", "must be a positive number")
    vs = to.get("variation_steps", 0)
    require(_is_int(vs) and vs >= 0, "testoptim.variation_steps", "must be an integer >= 0")
    require(vs == 0 or m["kind"] == "sync-mixvoxels", "testoptim.variation_steps",
            "only sync-mixvoxels has a variation field; set it to 0")
    require(to["batch_rays"] <= t["batch_rays"], "testoptim.batch_rays",
            f"({to['batch_rays']}) must not exceed train.batch_rays ({t['batch_rays']}), "
            "which sizes the model's ray buffers", "train.batch_rays")

    e = cfg["eval"]
    require(e["max_frames"] is None or (_is_int(e["max_frames"]) and e["max_frames"] > 0), "eval.max_frames",
            "must be a positive integer or null")
    require(isinstance(e["lpips"], bool), "eval.lpips", "must be true or false")

    d = cfg["data"]
    require(d["background"] in ("white", "black"), "data.background", "must be white or black")
    require(_is_int(d["downsample"]) and d["downsample"] >= 1, "data.downsample", "must be an integer >= 1")
    require(d["max_frames"] is None or (_is_int(d["max_frames"]) and d["max_frames"] >= 2), "data.max_frames",
            "must be an integer >= 2 or null")
    gen = d["generate"]
    require(gen is None or isinstance(gen, dict), "data.generate", "must be a mapping of make-scene arguments or null")
    if gen:
        unknown = sorted(set(gen) - set(GENERATE_KEYS))
        require(not unknown, "data.generate", f"has unknown key(s) {', '.join(map(str, unknown))} "
                f"(known: {', '.join(GENERATE_KEYS)})")
        require(re.fullmatch(r"\d+x\d+", str(gen.get("size", "128x96")).lower()) is not None,
                "data.generate", f"size must be WIDTHxHEIGHT such as 128x96, got {gen.get('size')!r}")
        for key in ("cameras", "frames", "seed", "supersample", "crf"):
            require(key not in gen or _is_int(gen[key]), "data.generate", f"{key} must be an integer")
        for key in ("fps", "offset_sigma"):
            require(key not in gen or _is_number(gen[key]), "data.generate", f"{key} must be a number")
        require(isinstance(gen.get("png", False), bool), "data.generate", "png must be true or false")
        from taichi_syncnerf.data.synthetic import ENCODINGS, FAMILIES

        for key, allowed in (("family", FAMILIES), ("encoding", ENCODINGS)):
            require(gen.get(key, allowed[0]) in allowed, "data.generate",
                    f"{key} must be one of {', '.join(allowed)}, got {gen.get(key)!r}")


def _validate_mixvoxels(mx: dict, require) -> None:
    for key in ("comps_density", "comps_app"):
        require(_is_int_list(mx[key], 1) and len(mx[key]) == 3, f"mixvoxels.{key}",
                "must be a list of 3 positive integers")
    for key in ("n_samples", "static_hidden", "trunk_hidden", "width", "time_freqs", "time_hidden", "pool_kernel"):
        require(_is_int(mx[key]) and mx[key] > 0, f"mixvoxels.{key}", "must be a positive integer")
    require(_is_number(mx["dynamic_density_sharpness"]) and mx["dynamic_density_sharpness"] > 0,
            "mixvoxels.dynamic_density_sharpness", "must be a number > 0")
    for key in ("init_std", "density_scale", "lr_basis", "lr_time_scale", "bce_pos_weight", "bce_weight",
                "alpha_mask_threshold", "std_threshold"):
        require(_is_number(mx[key]) and mx[key] >= 0, f"mixvoxels.{key}", "must be a non-negative number")
    for key in ("dynamic_threshold", "sample_threshold"):
        require(_is_number(mx[key]) and 0 < mx[key] < 1, f"mixvoxels.{key}", "must be a number in (0, 1)")
    for key in ("voxels_init", "voxels_final"):
        require(_is_int(mx[key]) and mx[key] >= 8, f"mixvoxels.{key}", "must be an integer >= 8")
    require(_is_int(mx["time_grid"]) and mx["time_grid"] >= 0, "mixvoxels.time_grid", "must be an integer >= 0")
    require(mx["voxels_final"] >= mx["voxels_init"], "mixvoxels.voxels_final", "must be >= mixvoxels.voxels_init")
    for key in ("upsample_steps", "alpha_mask_steps"):
        require(_is_int_list(mx[key], 0), f"mixvoxels.{key}", "must be a list of integers >= 0")
    require(_is_int(mx["stage1_steps"]) and mx["stage1_steps"] >= 0, "mixvoxels.stage1_steps",
            "must be an integer >= 0")
    require(mx["dynamic_density_activation"] in ("relu", "softplus"), "mixvoxels.dynamic_density_activation",
            "must be relu or softplus")
    k = mx["dynamic_density_relu_step"]
    require(k is None or (_is_int(k) and k >= 0), "mixvoxels.dynamic_density_relu_step",
            "must be null or an integer >= 0")


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
