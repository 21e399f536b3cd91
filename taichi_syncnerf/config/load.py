"""Reading configs: the YAML loader, ``base:`` chains, ``-o`` overrides, saved run configs.

A config is plain nested data (dicts, lists, numbers, strings). ``load_config`` merges, in order:
the defaults (:data:`DEFAULTS`, from the schema), the YAML file (which may name a ``base:`` file to
start from), then ``-o key.sub=value`` overrides (values parsed as YAML). Unknown keys are errors
that name the file and the key, so a typo never silently falls back to a default. The dotted keys
that a file or an override sets are tracked, so that an error names where a value came from and a
key of a section that ``model.kind`` does not read is refused.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from taichi_syncnerf.config.schema import (FIELDS, FREE_MAPPINGS, MOVED_KEYS, RETIRED_KEYS, SECTIONS,
                                           SECTIONS_OF_KIND, defaults, moved_to)
from taichi_syncnerf.config.validate import validate
from taichi_syncnerf.errors import ConfigError

DEFAULTS: dict[str, Any] = defaults()


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


def _exists(dotted: str) -> bool:
    return dotted in FIELDS or dotted in SECTIONS


def _unknown(where: str, dotted: str, value=None) -> ConfigError:
    """The error for a key the schema lacks: its new name where it moved, else 'unknown key'."""
    leaf = dotted
    while isinstance(value, dict) and value:  # a moved section: name its first key
        key, value = next(iter(value.items()))
        leaf = f"{leaf}.{key}"
    for old in (leaf, dotted):
        new = moved_to(old)
        if new is not None and _exists(new):
            return ConfigError(f"{where}: {old} is now {new}")
    return ConfigError(f"{where}: unknown key '{dotted}'")


def deep_merge(base: dict, update: dict, where: str, prefix: str = "", explicit: dict | None = None) -> dict:
    """``base`` with ``update``'s keys set; every key must exist in ``base``. ``explicit`` collects
    the dotted keys set (each mapped to ``where``)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in out:
            raise _unknown(where, dotted, value)
        if dotted in FREE_MAPPINGS:
            if isinstance(out[key], dict) and isinstance(value, dict):
                out[key] = deep_merge(out[key], value, where, dotted + ".")
            else:
                out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict):
            if value is None:  # an empty section ("train:" with nothing under it)
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{dotted}' must be a mapping, got {type(value).__name__}")
            out[key] = deep_merge(out[key], value, where, dotted + ".", explicit)
            continue
        else:
            out[key] = copy.deepcopy(value)
        if explicit is not None:
            explicit[dotted] = where
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


def _load_file(path: Path, depth: int = 0, explicit: dict | None = None) -> dict:
    if depth > 8:
        raise ConfigError(f"{path}: 'base:' chain is too deep (a cycle?)")
    data = _read_yaml(path)
    base_name = data.pop("base", None)
    merged = copy.deepcopy(DEFAULTS)
    if base_name is not None:
        base_path = Path(base_name)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        merged = _load_file(base_path, depth + 1, explicit)
    return deep_merge(merged, data, str(path), explicit=explicit)


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


def apply_overrides(cfg: dict, overrides: list[str] | tuple[str, ...], explicit: dict | None = None) -> dict:
    """``cfg`` with each ``KEY=VALUE`` of ``overrides`` set, in order (no validation). ``explicit``
    collects the dotted keys set, each mapped to ``override 'KEY=VALUE'``."""
    cfg = copy.deepcopy(cfg)
    for text in overrides:
        keys, value = parse_override(text)
        where = f"override '{text}'"
        dotted = ".".join(keys)
        node = cfg
        for i, k in enumerate(keys[:-1]):
            if not isinstance(node, dict) or k not in node or not isinstance(node[k], dict):
                raise _unknown(where, dotted) if moved_to(dotted) else \
                    ConfigError(f"{where}: unknown key '{'.'.join(keys[: i + 1])}'")
            node = node[k]
        if keys[-1] not in node:
            raise _unknown(where, dotted)
        if isinstance(node[keys[-1]], dict) and dotted not in FREE_MAPPINGS and not any(
                dotted.startswith(m + ".") for m in FREE_MAPPINGS):
            raise ConfigError(f"{where}: '{dotted}' is a section, set its keys")
        node[keys[-1]] = value
        if explicit is not None:
            explicit[next((m for m in FREE_MAPPINGS if dotted.startswith(m + ".")), dotted)] = where
    return cfg


def load_config(path: str | os.PathLike, overrides=()) -> dict:
    """The validated config of the file (or preset) ``path`` with the ``-o`` ``overrides``."""
    explicit: dict[str, str] = {}
    cfg = _load_file(resolve_config_path(path), explicit=explicit)
    cfg = apply_overrides(cfg, overrides, explicit)
    validate(cfg, str(path), explicit)
    return cfg


_MISSING = object()


def _pop(data: dict, dotted: str):
    *parents, last = dotted.split(".")
    node = data
    for k in parents:
        node = node.get(k) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node:
        return _MISSING
    return node.pop(last)


def _put(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = data
    for k in parents:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    if isinstance(node.get(last), dict) and isinstance(value, dict):
        node[last].update(value)
    else:
        node[last] = value


def migrate(data: dict) -> bool:
    """Move the keys of the previous layout (:data:`MOVED_KEYS`) to their new place, in place.
    Returns whether there were any."""
    moved = False
    for old, new in MOVED_KEYS.items():
        value = _pop(data, old)
        if value is not _MISSING:
            moved = True
            _put(data, new, value)
    if moved and isinstance(data.get("model"), dict) and data["model"].get("kind") == "sync-mixvoxels":
        # the previous Sync-MixVoxels started its offsets at exactly 0, whatever offsets.init_* said
        _put(data, "offsets.init_mean", 0.0)
        _put(data, "offsets.init_std", 0.0)
    return moved


def load_resolved(path: str | os.PathLike) -> dict:
    """Read a run's saved ``config.yaml`` (already resolved: no base).

    A config of the previous layout is migrated, retired keys are dropped, and the sections that
    ``dump_config`` leaves out (those of the other model kinds) take their defaults. A run's config
    may hold keys that do not apply to its kind: they are not refused here.
    """
    path = Path(path)
    data = _read_yaml(path)
    migrate(data)
    for section, keys in RETIRED_KEYS.items():
        if isinstance(data.get(section), dict):
            for key in keys:
                data[section].pop(key, None)
    cfg = deep_merge(DEFAULTS, data, str(path))
    validate(cfg, str(path), applicability=False)
    return cfg


def dump_config(cfg: dict) -> str:
    """YAML of ``cfg`` with the shared sections and those of its model kind (not the other kinds')."""
    kind = cfg.get("model", {}).get("kind")
    own = set(SECTIONS_OF_KIND.get(kind, ()))
    others = {s for names in SECTIONS_OF_KIND.values() for s in names} - own
    return yaml.safe_dump({k: v for k, v in cfg.items() if k not in others}, sort_keys=False,
                          default_flow_style=None)
