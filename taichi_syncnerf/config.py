"""YAML configs: defaults, presets, dotted overrides, validation.

A config is plain nested data (dicts, lists, numbers, strings). ``load_config`` merges, in order:
the defaults below, the YAML file (which may name a ``base:`` file to start from), then
``-o key.sub=value`` overrides (values parsed as YAML). Unknown keys are errors that name the file
and the key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from taichi_syncnerf.errors import ConfigError

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
    "offsets": {
        "lr_scale": 0.1,  # offsets lr = lr_scale * train.lr
        "l1": 1.0e-4,
        "freeze_step": 50000,
        "init_mean": -0.001,
        "init_std": 0.001,
        "proposal_grad": True,  # proposal levels' time gradient also drives the offsets
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
        "log_every": 50,
        "checkpoint_every": 2000,
        "eval_every": None,
        "early_stop_transmittance": 1.0e-4,
    },
    "testoptim": {
        "steps": 1000,
        "lr": 1.0e-3,
        "batch_rays": 4096,
    },
    "eval": {
        "max_frames": None,  # evaluate on every frame of the test camera (None) or an even subset
        "lpips": True,
        "chunk_rays": 16384,
    },
}


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
        data = yaml.safe_load(text)
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
        value = yaml.safe_load(raw) if raw.strip() else None
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
    validate(cfg, str(path))
    return cfg


def load_resolved(path: str | os.PathLike) -> dict:
    """Read a run's saved ``config.yaml`` (already resolved: no base, all keys)."""
    path = Path(path)
    data = _read_yaml(path)
    cfg = deep_merge(DEFAULTS, data, str(path))
    validate(cfg, str(path))
    return cfg


def _require(cond: bool, where: str, msg: str):
    if not cond:
        raise ConfigError(f"{where}: {msg}")


def validate(cfg: dict, where: str) -> None:
    m, t, o = cfg["model"], cfg["train"], cfg["offsets"]
    _require(m["decoder"] in ("hybrid", "explicit"), where, "model.decoder must be hybrid or explicit")
    _require(m["proposal"]["encoder"] in ("planes", "hashgrid"), where,
             "model.proposal.encoder must be planes or hashgrid")
    for key in ("features", "n_samples", "density_hidden", "geo_features"):
        _require(isinstance(m[key], int) and m[key] > 0, where, f"model.{key} must be a positive integer")
    _require(isinstance(m["space_res"], list) and len(m["space_res"]) > 0
             and all(isinstance(r, int) and r >= 2 for r in m["space_res"]), where,
             "model.space_res must be a list of integers >= 2")
    _require(m["time_res"] == "auto" or (isinstance(m["time_res"], int) and m["time_res"] >= 2), where,
             "model.time_res must be 'auto' or an integer >= 2")
    _require(1 <= int(m["sh_degree"]) <= 4, where, "model.sh_degree must be 1..4")
    _require(isinstance(t["steps"], int) and t["steps"] > 0, where, "train.steps must be a positive integer")
    _require(isinstance(t["batch_rays"], int) and t["batch_rays"] > 0, where,
             "train.batch_rays must be a positive integer")
    _require(isinstance(t["lr"], (int, float)) and t["lr"] > 0, where, "train.lr must be a positive number")
    _require(isinstance(o["freeze_step"], int) or o["freeze_step"] is None, where,
             "offsets.freeze_step must be an integer or null")
    _require(isinstance(o["proposal_grad"], bool), where, "offsets.proposal_grad must be true or false")
    _require(cfg["data"]["background"] in ("white", "black"), where, "data.background must be white or black")
    _require(isinstance(cfg["data"]["downsample"], int) and cfg["data"]["downsample"] >= 1, where,
             "data.downsample must be an integer >= 1")


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
